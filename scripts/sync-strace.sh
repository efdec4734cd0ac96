#!/usr/bin/env bash
# Counts the sync and open system calls of N single-event publishes on a Durability::Sync store
# (default 3000): the goal is one fdatasync per group commit and no file opened per commit.
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-3000}"
cargo build --release -q -p callout-store --example sync_publishes
strace -f -c -e trace=fsync,fdatasync,openat,sync_file_range \
    target/release/examples/sync_publishes "$count"
