#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time and print one line per target (inputs run,
# corpus size, outcome). Not part of scripts/test.sh: fuzzing is open-ended; this is the
# command behind the figures in docs/development.md, "Fuzzing".
#
#   scripts/fuzz.sh                 # 60 s per target
#   SECONDS_PER_TARGET=10 scripts/fuzz.sh socks5_codec proxy_protocol
#
# Installs cargo-fuzz when missing. Runs on the stable toolchain with `--sanitizer none`
# (the sanitizers need nightly); the targets are coverage-guided libFuzzer either way, and every
# parser is written in safe Rust, so panics and hangs are what there is to find.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${SECONDS_PER_TARGET:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

cd fuzz
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    log=$(mktemp)
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb bounds memory.
    if cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        outcome="ok"
    else
        outcome="FAILED (artifacts in fuzz/artifacts/$target)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    corpus=$(find "corpus/$target" -type f | wc -l)
    printf '%-18s %12s inputs in %ss, corpus %5s files: %s\n' \
        "$target" "$runs" "$SECONDS_PER_TARGET" "$corpus" "$outcome"
    if [ "$outcome" != ok ]; then tail -30 "$log"; fi
    rm -f "$log"
done
exit $status
