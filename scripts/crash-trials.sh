#!/usr/bin/env bash
# Runs the store's crash test N times (3 kills each: a child process enqueues from 4 threads until SIGKILLed,
# the store reopens and must hold every acknowledged event exactly once). Stops at the first
# failure with a non-zero exit.
# Usage: scripts/crash-trials.sh [N]   (default 10)
set -uo pipefail
runs="${1:-10}"
cd "$(dirname "$0")/.." || exit 2
cargo test -q -p callout-store --test it --no-run || exit 2
for ((i = 1; i <= runs; i++)); do
    output=$(cargo test -q -p callout-store --test it -- \
        --exact crash::killed_writer_loses_no_acknowledged_event --nocapture 2>&1)
    status=$?
    grep -E "crash trial" <<<"$output" | sed "s/^/run $i: /"
    if [[ $status != 0 ]]; then
        echo "$output" >&2
        echo "crash-trials: run $i of $runs failed" >&2
        exit 1
    fi
done
echo "crash-trials: $runs runs ($((runs * 3)) kills) passed"
