#!/usr/bin/env bash
# Instructions (callgrind) and heap allocations (DHAT) per delivery on the publish path and on
# the lease -> send -> settle path, each the difference between a run of 2N and one of N
# deliveries, so that opening and closing the engine drops out. Default N = 2000.
# "scoped" instructions are callgrind's inclusive count of the functions the work runs under
# (`Engine::publish` on the caller's thread; the workers' and the dispatcher's `run`), so
# background work that grows with run time (sled's flusher, the receiver) drops out too.
# A binary to measure other than this checkout's: HOT_PATH_BIN=path.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-2000}"
if [ -z "${HOT_PATH_BIN:-}" ]; then
    cargo build --release -q --example hot_path
fi
bin=${HOT_PATH_BIN:-target/release/examples/hot_path}
work=$(mktemp -d)
trap 'kill "$receiver_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkfifo "$work/hold"
"$bin" receive <"$work/hold" >"$work/url" &
receiver_pid=$!
exec 3>"$work/hold"
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(head -1 "$work/url")

# The functions a phase's own work runs under.
scope() {
    if [ "$1" = deliver ]; then
        echo 'callout::worker::run|callout::dispatcher::run'
    else
        echo 'callout::engine::Engine::publish'
    fi
}

# $1 tool, $2 phase, $3 count: prints the tool's total (instructions or blocks).
measure() {
    local tool=$1 phase=$2 count=$3 dir="$work/store-$2-$3" out="$work/$1-$2-$3"
    if [ "$phase" = deliver ]; then
        rm -rf "$dir" && "$bin" publish "$dir" "$url" "$count"
        set -- "$bin" deliver "$dir" "$count"
    else
        rm -rf "$dir"
        set -- "$bin" publish "$dir" "$url" "$count"
    fi
    case $tool in
        callgrind)
            valgrind --tool=callgrind --callgrind-out-file="$out" "$@" 2>"$out.log"
            grep -m1 '^summary:' "$out" | awk '{print $2}' ;;
        scoped)
            valgrind --tool=callgrind --callgrind-out-file="$out" "$@" 2>"$out.log"
            callgrind_annotate --inclusive=yes --threshold=100 "$out" |
                grep -E "\?\?\?:($(scope "$phase")) \[" |
                awk '{gsub(",", "", $1); sum += $1} END {print sum + 0}' ;;
        dhat)
            valgrind --tool=dhat --dhat-out-file="$out" "$@" 2>"$out.log"
            grep -m1 'Total:' "$out.log" | sed -E 's/.* in ([0-9,]+) blocks.*/\1/' | tr -d , ;;
    esac
}

for phase in publish deliver; do
    for tool in scoped callgrind dhat; do
        one=$(measure "$tool" "$phase" "$n")
        two=$(measure "$tool" "$phase" $((2 * n)))
        per=$(( (two - one) / n ))
        case $tool in
            scoped) unit="scoped instructions" ;;
            callgrind) unit=instructions ;;
            *) unit=allocations ;;
        esac
        echo "$phase: $per $unit per delivery ($tool, N=$n: $one, 2N: $two)"
    done
done
