#!/usr/bin/env bash
# Soak (issue 18): cycles DELIVERIES deliveries through a steady backlog of 10k beside hostile
# receivers (10% of subscriptions hang or drip), printing RSS, store disk size and healthy
# latency every 100k deliveries; exits 1 when a bound breaks (RSS, disk growth, probe p99),
# 2 when the run fails. The run stops itself at --time-limit-s (default 120 s + 1 s per 1000).
# Usage: scripts/soak.sh [DELIVERIES] [FLAGS...]   (default 300000; flags: examples/soak.rs)
#   e.g. scripts/soak.sh 2000000 --max-rss-mb 64 --max-disk-growth 1.2 --max-p99-ms 1000
set -uo pipefail
deliveries="${1:-300000}"
shift $(($# > 0 ? 1 : 0))
cd "$(dirname "$0")/.." || exit 2
cargo build -q --release --example soak || exit 2
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/examples/soak" --deliveries "$deliveries" "$@"
