#!/usr/bin/env bash
# REST throughput of hexkv against a bare axum handler, measured in one run on this machine, and
# its PUT against a bare handler that syncs each body to disk with group commit (the durable ceiling).
#
#   scripts/bench-http.sh            # or: just bench-http (part of just bench)
#   DURATION=30s CONNS=128 ROUNDS=2 scripts/bench-http.sh
#
# Needs wrk (Debian: apt-get install wrk). Prints a Markdown table; with JSON_OUT=FILE, also
# writes the figures there (scripts/bench.py uses them).
# The data directory is on the workspace's disk (target/), not /tmp, so fsync is real.
set -euo pipefail
cd "$(dirname "$0")/.."

# The build profile measured: `dist` (fat LTO) is what the container image ships.
PROFILE=${PROFILE:-dist}

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-1}
BARE_ADDR=127.0.0.1:18081
DURABLE_ADDR=127.0.0.1:18082
HEXKV_ADDR=127.0.0.1:18080

command -v wrk >/dev/null || { echo "wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }
cargo build --profile "$PROFILE" --quiet -p hexkv-server --bin hexkv -p hexkv-http \
  --example bare_handler --example bare_durable
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
work="$target/bench-http"
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for() { # URL: waits until the server just started (the last pid) answers there
  for _ in $(seq 1 300); do
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "the server for $1 exited (port in use?)" >&2; exit 1; }
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "server at $1 did not come up" >&2; exit 1
}

for addr in "$BARE_ADDR" "$DURABLE_ADDR" "$HEXKV_ADDR"; do
  if curl -s -o /dev/null "http://$addr/"; then
    echo "something already listens on $addr; stop it first" >&2; exit 1
  fi
done

# Runs wrk against the server with pid PID; prints "rps p50 p99 non-2xx cpu_us_per_request".
# CPU per request (user + system time of the server process over the run, divided by the
# requests served) is steadier than requests/s on a machine shared with the load generator.
measure() { # PID ARGS...
  local pid=$1; shift
  local t0 t1
  t0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" > "$work/wrk.out"
  t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" '
       /requests in/ {n=$1} /Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
       /Non-2xx/ {bad=$NF}
       END {printf "%s %s %s %s %.1f\n", rps, p50, p99, (bad == "" ? 0 : bad), (t1 - t0) / hz * 1e6 / n}' \
    "$work/wrk.out"
}

start_hexkv() { # FSYNC
  rm -rf "$work/data" "$work/ready.json"
  "$target/$PROFILE/hexkv" serve --http-listen "$HEXKV_ADDR" --data-dir "$work/data" \
    --fsync "$1" --log-level warn --ready-file "$work/ready.json" > "$work/hexkv.log" 2>&1 &
  pids+=($!)
  wait_for "http://$HEXKV_ADDR/healthz"
}

stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# The ceiling: a bare axum handler, measured at the start of each round and once more at the end
# (this machine's throughput drifts by several percent between minutes).
measure_bare() {
  "$target/$PROFILE/examples/bare_handler" "$BARE_ADDR" > /dev/null 2>&1 &
  pids+=($!)
  wait_for "http://$BARE_ADDR/"
  measure "${pids[-1]}" "http://$BARE_ADDR/"
  stop_last
}

# The ceiling of a durable PUT: a bare handler that appends each body to a file and answers
# once a group-committed fdatasync covers it (crates/hexkv-http/examples/bare_durable.rs).
measure_bare_durable() {
  rm -f "$work/bare-durable.log"
  "$target/$PROFILE/examples/bare_durable" "$DURABLE_ADDR" "$work/bare-durable.log" > /dev/null 2>&1 &
  pids+=($!)
  wait_for "http://$DURABLE_ADDR/"
  measure "${pids[-1]}" -s scripts/wrk/put.lua "http://$DURABLE_ADDR/"
  stop_last
}

rows=()
row() { # ROUND NAME RPS P50 P99 BAD CPU
  rows+=("$1|$2|$3|$4|$5|$6|$7")
}

for round in $(seq 1 "$ROUNDS"); do
  read -r rps p50 p99 bad cpu < <(measure_bare)
  row "$round" "bare axum handler (5 B)" "$rps" "$p50" "$p99" "$bad" "$cpu"

  start_hexkv always
  curl -fs -X PUT --data-binary "hello" "http://$HEXKV_ADDR/v1/kv/bench-key" > /dev/null
  read -r rps p50 p99 bad cpu < <(measure "${pids[-1]}" "http://$HEXKV_ADDR/v1/kv/bench-key")
  row "$round" "GET existing key (5 B)" "$rps" "$p50" "$p99" "$bad" "$cpu"
  read -r rps p50 p99 bad cpu < <(measure "${pids[-1]}" -s scripts/wrk/put.lua "http://$HEXKV_ADDR/")
  row "$round" "PUT 100 B, fsync always" "$rps" "$p50" "$p99" "$bad" "$cpu"
  stop_last
  read -r rps p50 p99 bad cpu < <(measure_bare_durable)
  row "$round" "bare durable PUT (100 B, group commit)" "$rps" "$p50" "$p99" "$bad" "$cpu"

  for policy in interval never; do
    start_hexkv "$policy"
    read -r rps p50 p99 bad cpu < <(measure "${pids[-1]}" -s scripts/wrk/put.lua "http://$HEXKV_ADDR/")
    row "$round" "PUT 100 B, fsync $policy" "$rps" "$p50" "$p99" "$bad" "$cpu"
    stop_last
  done
done
read -r rps p50 p99 bad cpu < <(measure_bare)
row "end" "bare axum handler (5 B)" "$rps" "$p50" "$p99" "$bad" "$cpu"

if [ -n "${JSON_OUT:-}" ]; then # the figures for scripts/bench.py
  python3 - "$JSON_OUT" "$THREADS" "$CONNS" "$DURATION" "$ROUNDS" "${rows[@]}" <<'PY'
import json, sys
def ms(text):  # wrk's "565.00us", "2.23ms", "1.01s"
    for unit, scale in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)
out, threads, conns, duration, rounds, *rows = sys.argv[1:]
runs = []
for row in rows:
    round_, name, rps, p50, p99, bad, cpu = row.split("|")
    runs.append({"round": round_, "name": name, "rps": float(rps), "p50_ms": ms(p50),
                 "p99_ms": ms(p99), "non_2xx": int(bad), "cpu_us": float(cpu)})
json.dump({"wrk": f"wrk -t{threads} -c{conns} -d{duration} --latency", "rounds": int(rounds),
           "runs": runs}, open(out, "w"), indent=1)
PY
fi

# Each workload's best round against the best ceiling run: interference from the rest of the
# machine only ever slows a run down.
best() { printf '%s\n' "${rows[@]}" | awk -F'|' -v n="$1" '$2 == n && $3 > m {m = $3} END {print m}'; }
bare_rps=$(best "bare axum handler (5 B)")

echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS round(s), $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
echo
echo "| round | workload | requests/s | of the best bare run | p50 | p99 | non-2xx | server CPU per request |"
echo "|---|---|---|---|---|---|---|---|"
for r in "${rows[@]}"; do
  IFS='|' read -r round name rps p50 p99 bad cpu <<< "$r"
  ratio=$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN {printf "%.0f%%", 100 * a / b}')
  echo "| $round | $name | $rps | $ratio | $p50 | $p99 | $bad | $cpu µs |"
done
