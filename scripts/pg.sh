#!/usr/bin/env bash
# A local PostgreSQL for development and benchmarks, in target/pg (not for tests: they start their
# own, see docs/testing.md).
#
#   scripts/pg.sh start    # initdb on first use, start on 127.0.0.1:${PGPORT:-55432}, print the URL
#   scripts/pg.sh url      # print DATABASE_URL
#   scripts/pg.sh stop
#
# Uses initdb/pg_ctl from PATH or the newest /usr/lib/postgresql/*/bin. As root it runs them as
# `nobody` (PostgreSQL refuses to run as root). Default settings: fsync and synchronous_commit on.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PGPORT:-55432}
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
dir="$target/pg"
# The real directory of pg_ctl (PATH may hold symlinks to it), where psql and createdb live too.
bin=$(dirname "$(readlink -f "$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")")
[ -x "$bin/pg_ctl" ] || { echo "no PostgreSQL server binaries found" >&2; exit 1; }

as_owner() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; else "$@"; fi
}
url="postgres://postgres@127.0.0.1:$PORT/hexkv"

case "${1:-}" in
  start)
    if [ ! -d "$dir/data" ]; then
      mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown nobody:nogroup "$dir"
      as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-locale >/dev/null
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 ||
      as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    as_owner "$bin/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qtAc \
      "SELECT 1 FROM pg_database WHERE datname = 'hexkv'" | grep -q 1 ||
      as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U postgres hexkv
    echo "$url"
    ;;
  url) echo "$url" ;;
  stop) as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop ;;
  *) echo "usage: $0 start|url|stop" >&2; exit 2 ;;
esac
