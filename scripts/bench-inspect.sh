#!/usr/bin/env bash
# Speed of `swarmwall inspect` against nDPI's ndpiReader on the same corpus, both pinned to one
# core with taskset, whole process timed by hyperfine (median of RUNS runs after 3 warm-ups),
# as in the corpus README. ndpiReader reads the captures from a playlist file (one process);
# swarmwall gets them as arguments (one process) and writes its --json lines to /dev/null.
#
#   scripts/bench-inspect.sh                  # CORE=1 RUNS=30
#   CORE=0 RUNS=10 scripts/bench-inspect.sh
#   SWARMWALL_BIN=path/to/swarmwall scripts/bench-inspect.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The nDPI corpus is optional and lives outside the repository: SWARMWALL_CORPUS (or CORPUS)
# names the directory holding score.py and ndpi/. Without it this script skips.
CORPUS=${CORPUS:-${SWARMWALL_CORPUS:-}}
if [ -z "$CORPUS" ] || [ ! -d "$CORPUS/ndpi" ]; then
  echo "skipped: set SWARMWALL_CORPUS to the corpus directory (the one holding score.py and ndpi/)"
  exit 0
fi
CORPUS=$(cd "$CORPUS" && pwd)
CORE=${CORE:-1}
RUNS=${RUNS:-30}
BIN=${SWARMWALL_BIN:-target/release/swarmwall}
if [ -z "${SWARMWALL_BIN:-}" ]; then
  cargo build --release -q -p swarmwall
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
out=target/bench
mkdir -p "$out"
playlist="$out/playlist.txt"
find "$CORPUS/ndpi" -maxdepth 1 -type f \( -name '*.pcap' -o -name '*.pcapng' -o -name '*.cap' \) \
  | sort > "$playlist"
files=$(tr '\n' ' ' < "$playlist")
echo "== $(wc -l < "$playlist") captures, core $CORE, $RUNS runs each"
hyperfine -N -w 3 -r "$RUNS" --export-json "$out/inspect.json" \
  -n ndpiReader "taskset -c $CORE ndpiReader -i $playlist -q" \
  -n "swarmwall inspect" "taskset -c $CORE $BIN inspect --json --quiet $files"
python3 - "$out/inspect.json" <<'PY'
import json, sys
results = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
ndpi, sw = results["ndpiReader"], results["swarmwall inspect"]
print("median: ndpiReader %.1f ms, swarmwall inspect %.1f ms: swarmwall is %.1fx faster" % (
    ndpi["median"] * 1e3, sw["median"] * 1e3, ndpi["median"] / sw["median"]))
# CPU time (user + system, mean) is steadier than wall time on a busy machine.
cpu = lambda r: r["user"] + r["system"]
print("cpu:    ndpiReader %.1f ms, swarmwall inspect %.1f ms: %.1fx less CPU" % (
    cpu(ndpi) * 1e3, cpu(sw) * 1e3, cpu(ndpi) / cpu(sw)))
PY
