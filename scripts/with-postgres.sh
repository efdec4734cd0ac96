#!/usr/bin/env bash
# Runs CMD... beside a throwaway PostgreSQL cluster: initdb in a temporary directory, a server on
# 127.0.0.1 at a free port, one database, its URL exported as CALLOUT_TEST_POSTGRES; on exit the
# server is stopped and the directory removed. Exits with CMD's status.
# Usage: scripts/with-postgres.sh cargo test --workspace
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user
# (Debian's package creates it); as anyone else it is the caller's own.
set -euo pipefail
if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

bin=""
for candidate in /usr/lib/postgresql/*/bin; do
    [[ -x $candidate/initdb ]] && bin=$candidate
done
if [[ -z $bin ]]; then
    if command -v initdb >/dev/null 2>&1; then
        bin=$(dirname "$(command -v initdb)")
    else
        echo "with-postgres: no PostgreSQL found; install it (Debian: apt-get install -y postgresql)" >&2
        exit 2
    fi
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/callout-pg.XXXXXX")
as_owner=()
if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$dir"
    as_owner=(runuser -u postgres --)
fi
data="$dir/data"
log="$dir/server.log"
superuser=callout
database=callout_test

stop() {
    "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

"${as_owner[@]}" "$bin/initdb" -D "$data" -U "$superuser" --auth=trust --no-sync \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2
    exit 2
}

# A port nobody listens on: a few random tries, each checked by the server's own start (bind
# fails at once when the port is taken).
port=""
for _ in $(seq 1 20); do
    candidate=$((20000 + RANDOM % 40000))
    if "${as_owner[@]}" "$bin/pg_ctl" -D "$data" -l "$log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -c port=$candidate -c unix_socket_directories=$dir -c max_connections=300" \
        start >/dev/null 2>&1; then
        port=$candidate
        break
    fi
done
if [[ -z $port ]]; then
    echo "with-postgres: the server did not start; its log:" >&2
    cat "$log" >&2 || true
    exit 2
fi

"$bin/createdb" -h 127.0.0.1 -p "$port" -U "$superuser" "$database"

export CALLOUT_TEST_POSTGRES="postgres://$superuser@127.0.0.1:$port/$database"
# For tests that stop and start the server under load.
export CALLOUT_TEST_POSTGRES_BIN="$bin"
export CALLOUT_TEST_POSTGRES_DATA="$data"
echo "with-postgres: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') at $CALLOUT_TEST_POSTGRES" >&2

status=0
"$@" || status=$?
exit "$status"
