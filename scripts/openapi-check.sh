#!/usr/bin/env bash
# Checks callout's REST API against its own OpenAPI document with schemathesis (property-based:
# generated requests, every response checked against the document), bounded in examples and
# time. Runs `callout serve` on 127.0.0.1 with a fresh store, and stops it afterwards.
# Usage: scripts/openapi-check.sh [path to the callout binary]
set -euo pipefail
cd "$(dirname "$0")/.."
binary="${1:-${CARGO_TARGET_DIR:-target}/debug/callout}"
max_time="${OPENAPI_CHECK_SECONDS:-60}"
if ! command -v schemathesis >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'schemathesis>=4,<5'
fi
work="$(mktemp -d)"
server=""
cleanup() {
    if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
printf 'schemathesis-token tenant-check\n' > "$work/tokens"
"$binary" --store "$work/store" init >/dev/null
"$binary" --store "$work/store" serve --listen 127.0.0.1:0 --tokens "$work/tokens" --workers 1 \
    > "$work/serve.out" 2> "$work/serve.err" &
server=$!
for _ in $(seq 1 100); do
    grep -q '^listening on ' "$work/serve.out" 2>/dev/null && break
    sleep 0.1
done
base="$(sed -n 's/^listening on //p' "$work/serve.out" | head -n 1)"
if [ -z "$base" ]; then
    echo "openapi-check: callout serve did not start" >&2
    cat "$work/serve.err" >&2
    exit 1
fi
# --max-time bounds the run; timeout is the backstop should schemathesis itself hang.
# --workers 1: schemathesis' workers are threads, and CPython before 3.11.8 / 3.12.2 keeps the
# AST constructor's recursion depth per interpreter, so two threads in ast.parse (hypothesis
# parses lambdas to describe strategies) can fail with "AST constructor recursion depth
# mismatch" (cpython gh-106905), as a CI run did on 3.11.7. One worker thread cannot race.
# positive_data_acceptance is left out: a subscription's validation (event patterns, URLs,
# secrets per profile, filter operators, header rules) is more than JSON Schema says, so a
# schema-valid document may rightly be refused with 400 naming the field. Every other check
# runs: no 5xx, documented statuses, content types and response schemas, schema-invalid
# requests refused, unsupported methods, authentication not ignored.
(cd "$work" && timeout $((max_time + 60)) schemathesis run "$base/v1/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer schemathesis-token" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --generation-with-security-parameters false \
    --max-examples 25 \
    --max-time "$max_time" \
    --request-timeout 10 \
    --workers 1 \
    --generation-database none)
