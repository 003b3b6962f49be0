#!/usr/bin/env bash
# Score `swarmwall inspect` on the labelled nDPI corpus, next to nDPI's own ndpiReader.
#
#   scripts/score.sh                 # all labels, then --wire-only
#   CORPUS=/path/to/corpus scripts/score.sh
#   SWARMWALL_BIN=target/debug/swarmwall scripts/score.sh
#   NDPI=0 scripts/score.sh          # skip the ndpiReader column (takes ~40 s)
#   INSPECT_ARGS="--mse-strictness aggressive" scripts/score.sh
#
# Prints score.py's miss/false-positive lists for swarmwall, then one summary line per
# scorer and label set. The swarmwall predictions are kept in target/score/swarmwall.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
# The nDPI corpus is optional and lives outside the repository: SWARMWALL_CORPUS (or CORPUS)
# names the directory holding score.py and ndpi/. Without it this script skips.
CORPUS=${CORPUS:-${SWARMWALL_CORPUS:-}}
if [ -z "$CORPUS" ] || [ ! -d "$CORPUS/ndpi" ]; then
  echo "skipped: set SWARMWALL_CORPUS to the corpus directory (the one holding score.py and ndpi/)"
  exit 0
fi

SCORE="$CORPUS/score.py"
BIN=${SWARMWALL_BIN:-target/release/swarmwall}
NDPI=${NDPI:-1}
if [ -z "${SWARMWALL_BIN:-}" ]; then
  cargo build --release -q -p swarmwall
fi
out=target/score
mkdir -p "$out"
pred="$out/swarmwall.jsonl"
mapfile -t caps < <(find "$CORPUS/ndpi" -maxdepth 1 -type f \
  \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \) | sort)
# Warnings (truncated/malformed captures) go to a log; exit status 1 means a file was unreadable.
status=0
# shellcheck disable=SC2086 # INSPECT_ARGS is a list of options
"$BIN" inspect --json --quiet ${INSPECT_ARGS:-} "${caps[@]}" > "$pred" 2> "$out/inspect.stderr" || status=$?
if [ "$status" -gt 1 ]; then
  cat "$out/inspect.stderr" >&2
  exit "$status"
fi
echo "== swarmwall inspect: ${#caps[@]} captures, $(wc -l < "$pred") flows"
python3 "$SCORE" "$pred"
echo
printf '%-10s %-12s %s\n' scorer labels result
printf '%-10s %-12s %s\n' swarmwall all "$(python3 "$SCORE" --quiet "$pred")"
printf '%-10s %-12s %s\n' swarmwall wire-only "$(python3 "$SCORE" --quiet --wire-only "$pred")"
if [ "$NDPI" != 0 ]; then
  ndpi_pred="$out/ndpi.jsonl"
  python3 "$SCORE" --ndpi --quiet --save "$ndpi_pred" > /dev/null
  printf '%-10s %-12s %s\n' ndpiReader all "$(python3 "$SCORE" --quiet "$ndpi_pred")"
  printf '%-10s %-12s %s\n' ndpiReader wire-only "$(python3 "$SCORE" --quiet --wire-only "$ndpi_pred")"
fi
