#!/usr/bin/env bash
# REST throughput of hexkv on PostgreSQL beside pgbench running the equivalent single-row select
# and upsert against the same server, in one run on this machine.
#
#   scripts/bench-postgres.sh            # or: just bench-pg
#   DURATION=30s CONNS=64 scripts/bench-postgres.sh
#
# Needs wrk (Debian: apt-get install wrk) and the PostgreSQL server binaries (pgbench included).
# Starts the development server of scripts/pg.sh (fsync on, default settings), fills 100 000 keys,
# then measures GET and PUT of 100-byte values over REST at $CONNS connections (hexkv's pool at
# $CONNS too) and pgbench at $CONNS clients, then GET and PUT once more with batching off.
# Prints a Markdown table; with JSON_OUT=FILE, also writes the figures there (scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# The build profile measured: `dist` (fat LTO) is what the container image ships.
PROFILE=${PROFILE:-dist}

DURATION=${DURATION:-10s}
SECS=${DURATION%s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
HEXKV_ADDR=127.0.0.1:18090
KEYS=100000

command -v wrk >/dev/null || { echo "wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }
cargo build --profile "$PROFILE" --quiet -p hexkv-server --bin hexkv
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
work="$target/bench-postgres"
rm -rf "$work" && mkdir -p "$work"
url=$(scripts/pg.sh start)
# pgbench and psql from the same installation as the server (/usr/bin/pgbench may be Debian's
# version-picking wrapper).
bin=$(dirname "$(readlink -f "$(command -v pg_ctl 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")")
port=${url##*:}; port=${port%%/*}
psql() { "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d hexkv -qtA "$@"; }

pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

start_hexkv() { # BATCH: store.postgres.read_batch and write_batch (0: one statement each)
  HEXKV_STORE__POSTGRES__MAX_CONNECTIONS=$CONNS HEXKV_STORE__POSTGRES__READ_BATCH=$1 \
    HEXKV_STORE__POSTGRES__WRITE_BATCH=$1 \
    "$target/$PROFILE/hexkv" serve \
    --store postgres --postgres-url "$url" --http-listen "$HEXKV_ADDR" --grpc-listen 127.0.0.1:0 \
    --log-level warn > "$work/hexkv.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://$HEXKV_ADDR/readyz" && break; sleep 0.1; done
  curl -fs -o /dev/null "http://$HEXKV_ADDR/readyz" || { cat "$work/hexkv.log" >&2; exit 1; }
}
stop_hexkv() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
start_hexkv 64

# The keys both sides read and overwrite: bench/1 … bench/100000, 100-byte values.
psql -c "TRUNCATE hexkv_entries" \
     -c "INSERT INTO hexkv_entries (key, value, version)
         SELECT 'bench/' || i, convert_to(repeat('v', 100), 'UTF8'), nextval('hexkv_version')
         FROM generate_series(1, $KEYS) AS i" -c "VACUUM ANALYZE hexkv_entries"

# Requests formatted once at start and used in turn, as in scripts/wrk/put.lua.
cat > "$work/get.lua" <<LUA
math.randomseed(os.time())
local requests, n, i = {}, 20000, 0
for j = 1, n do
  requests[j] = wrk.format("GET", "/v1/kv/bench/" .. math.random(1, $KEYS))
end
request = function()
  i = i % n + 1
  return requests[i]
end
LUA
cat > "$work/select.sql" <<SQL
\set k random(1, $KEYS)
SELECT value, version FROM hexkv_entries WHERE key = 'bench/' || :k;
SQL
cat > "$work/upsert.sql" <<SQL
\set k random(1, $KEYS)
INSERT INTO hexkv_entries (key, value, version)
VALUES ('bench/' || :k, convert_to(repeat('v', 100), 'UTF8'), nextval('hexkv_version'))
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = nextval('hexkv_version');
SQL

wrk_rps() { # SCRIPT
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$1" "http://$HEXKV_ADDR" > "$work/wrk.out"
  awk '/Requests\/sec/ {rps=$2} $1=="99%" {p99=$2} /Non-2xx/ {bad=$NF}
       END {printf "%.0f %s %s\n", rps, p99, (bad == "" ? 0 : bad)}' "$work/wrk.out"
}
pgbench_tps() { # SCRIPT
  "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M prepared -c "$CONNS" -j "$THREADS" \
    -T "$SECS" -f "$1" hexkv > "$work/pgbench.out" 2>&1
  awk '/^tps/ {printf "%.0f\n", $3}' "$work/pgbench.out"
}

read -r get_rps get_p99 get_bad < <(wrk_rps "$work/get.lua")
select_tps=$(pgbench_tps "$work/select.sql")
read -r put_rps put_p99 put_bad < <(wrk_rps scripts/wrk/put.lua)
upsert_tps=$(pgbench_tps "$work/upsert.sql")
stop_hexkv
start_hexkv 0
read -r single_rps single_p99 single_bad < <(wrk_rps "$work/get.lua")
read -r single_put_rps single_put_p99 single_put_bad < <(wrk_rps scripts/wrk/put.lua)

if [ -n "${JSON_OUT:-}" ]; then # the figures for scripts/bench.py
  python3 - "$JSON_OUT" "$CONNS" "$DURATION" "$("$bin/postgres" --version | awk '{print $3}')" \
    "get|$get_rps|$get_p99|$get_bad|$select_tps" "get_unbatched|$single_rps|$single_p99|$single_bad|$select_tps" \
    "put|$put_rps|$put_p99|$put_bad|$upsert_tps" "put_unbatched|$single_put_rps|$single_put_p99|$single_put_bad|$upsert_tps" <<'PY'
import json, sys
def ms(text):  # wrk's "565.00us", "2.23ms", "1.01s"
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)
out, conns, duration, version, *rows = sys.argv[1:]
runs = {}
for row in rows:
    name, rps, p99, bad, tps = row.split("|")
    runs[name] = {"rps": float(rps), "p99_ms": ms(p99), "non_2xx": int(bad), "pgbench_tps": float(tps)}
json.dump({"connections": int(conns), "duration": duration, "postgres": version, "runs": runs},
          open(out, "w"), indent=1)
PY
fi

echo
echo "| operation | hexkv REST req/s | p99 | non-2xx | pgbench tps | hexkv / pgbench |"
echo "|---|---|---|---|---|---|"
awk -v a="$get_rps" -v b="$select_tps" -v p="$get_p99" -v x="$get_bad" \
  'BEGIN {printf "| GET / select | %d | %s | %s | %d | %.0f%% |\n", a, p, x, b, 100 * a / b}'
awk -v a="$single_rps" -v b="$select_tps" -v p="$single_p99" -v x="$single_bad" \
  'BEGIN {printf "| GET / select, read batching off | %d | %s | %s | %d | %.0f%% |\n", a, p, x, b, 100 * a / b}'
awk -v a="$put_rps" -v b="$upsert_tps" -v p="$put_p99" -v x="$put_bad" \
  'BEGIN {printf "| PUT / upsert | %d | %s | %s | %d | %.0f%% |\n", a, p, x, b, 100 * a / b}'
awk -v a="$single_put_rps" -v b="$upsert_tps" -v p="$single_put_p99" -v x="$single_put_bad" \
  'BEGIN {printf "| PUT / upsert, write batching off | %d | %s | %s | %d | %.0f%% |\n", a, p, x, b, 100 * a / b}'
echo
echo "($CONNS connections, $DURATION each, $(nproc) cores, PostgreSQL $("$bin/postgres" --version | awk '{print $3}'))"
