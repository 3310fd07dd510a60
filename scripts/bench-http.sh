#!/usr/bin/env bash
# REST throughput of hexkv against a bare axum handler, measured in one run on this machine.
#
#   scripts/bench-http.sh            # or: just bench
#   DURATION=30s CONNS=128 scripts/bench-http.sh
#
# Needs wrk (Debian: apt-get install wrk). Prints a Markdown table for docs/benchmarks.md.
# The data directory is on the workspace's disk (target/), not /tmp, so fsync is real.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BARE_ADDR=127.0.0.1:18081
HEXKV_ADDR=127.0.0.1:18080

command -v wrk >/dev/null || { echo "wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet -p hexkv-server --bin hexkv -p hexkv-http --example bare_handler
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
work="$target/bench-http"
rm -rf "$work" && mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_for() { # URL
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "server at $1 did not come up" >&2; exit 1
}

# wrk output -> "rps p50 p99"
measure() { # ARGS...
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" > "$work/wrk.out"
  awk '/Requests\/sec/ {rps=$2} $1=="50%" {p50=$2} $1=="99%" {p99=$2}
       /Non-2xx/ {bad=$NF} END {print rps, p50, p99, (bad == "" ? 0 : bad)}' "$work/wrk.out"
}

start_hexkv() { # FSYNC
  rm -rf "$work/data" "$work/ready.json"
  "$target/release/hexkv" serve --http-listen "$HEXKV_ADDR" --data-dir "$work/data" \
    --fsync "$1" --log-level warn --ready-file "$work/ready.json" > "$work/hexkv.log" 2>&1 &
  pids+=($!)
  wait_for "http://$HEXKV_ADDR/healthz"
}

stop_last() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

# The ceiling: a bare axum handler, measured before and after hexkv (this machine's throughput
# drifts by several percent between minutes); the ratios use the mean of the two.
measure_bare() {
  "$target/release/examples/bare_handler" "$BARE_ADDR" > /dev/null 2>&1 &
  pids+=($!)
  wait_for "http://$BARE_ADDR/"
  measure "http://$BARE_ADDR/"
  stop_last
}
read -r bare1_rps bare1_p50 bare1_p99 bare1_bad < <(measure_bare)

rows=()
row() { # NAME RPS P50 P99 BAD
  rows+=("$1|$2|$3|$4|$5")
}

start_hexkv always
curl -fs -X PUT --data-binary "hello" "http://$HEXKV_ADDR/v1/kv/bench-key" > /dev/null
read -r rps p50 p99 bad < <(measure "http://$HEXKV_ADDR/v1/kv/bench-key")
row "GET existing key (5 B)" "$rps" "$p50" "$p99" "$bad"
read -r rps p50 p99 bad < <(measure -s scripts/wrk/put.lua "http://$HEXKV_ADDR/")
row "PUT 100 B, fsync always" "$rps" "$p50" "$p99" "$bad"
stop_last

for policy in interval never; do
  start_hexkv "$policy"
  read -r rps p50 p99 bad < <(measure -s scripts/wrk/put.lua "http://$HEXKV_ADDR/")
  row "PUT 100 B, fsync $policy" "$rps" "$p50" "$p99" "$bad"
  stop_last
done

read -r bare2_rps bare2_p50 bare2_p99 bare2_bad < <(measure_bare)
bare_rps=$(awk -v a="$bare1_rps" -v b="$bare2_rps" 'BEGIN {printf "%.2f", (a + b) / 2}')

echo
echo "wrk -t$THREADS -c$CONNS -d$DURATION, $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
echo
echo "| workload | requests/s | p50 | p99 | non-2xx | vs bare (mean) |"
echo "|---|---|---|---|---|---|"
echo "| bare axum handler (5 B), before | $bare1_rps | $bare1_p50 | $bare1_p99 | $bare1_bad | |"
echo "| bare axum handler (5 B), after | $bare2_rps | $bare2_p50 | $bare2_p99 | $bare2_bad | |"
for r in "${rows[@]}"; do
  IFS='|' read -r name rps p50 p99 bad <<< "$r"
  ratio=$(awk -v a="$rps" -v b="$bare_rps" 'BEGIN {printf "%.0f%%", 100 * a / b}')
  echo "| $name | $rps | $p50 | $p99 | $bad | $ratio |"
done
