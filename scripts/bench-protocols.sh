#!/usr/bin/env bash
# gRPC against REST with one load generator (`hexkv bench`), on the embedded durable store:
# the peak throughput of GET and PUT at a fixed concurrency (closed loop), then the latency at
# half that rate (open loop, so queueing is charged to the server).
#
#   scripts/bench-protocols.sh                       # or: just bench-protocols
#   DURATION=20 CONCURRENCY=128 scripts/bench-protocols.sh
#
# Prints a Markdown table for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-64}
FSYNC=${FSYNC:-always}
HTTP=127.0.0.1:18580
GRPC=127.0.0.1:18581

cargo build --release --quiet -p hexkv-server --bin hexkv
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
hexkv="$target/release/hexkv"
work="$target/bench-protocols"
rm -rf "$work" && mkdir -p "$work"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

"$hexkv" serve --http-listen "$HTTP" --grpc-listen "$GRPC" --data-dir "$work/data" \
  --fsync "$FSYNC" --log-level warn --ready-file "$work/ready.json" > "$work/hexkv.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do [ -s "$work/ready.json" ] && break; sleep 0.1; done
[ -s "$work/ready.json" ] || { echo "hexkv did not start" >&2; exit 1; }

bench() { # PROTOCOL WORKLOAD [ARGS...] -> JSON report
  local protocol=$1 workload=$2; shift 2
  local endpoint="http://$GRPC"
  [ "$protocol" = http ] && endpoint="http://$HTTP"
  "$hexkv" bench --endpoint "$endpoint" --protocol "$protocol" --workload "$workload" \
    --keys 100000 --key-size 16 --value-size 100 --connections 8 --duration "$DURATION" \
    --warmup 2 -o json "$@"
}
field() { python3 -c "import json, sys; r = json.load(sys.stdin); print($1)"; }

rows=()
for workload in get put; do
  for protocol in http grpc; do
    peak_json=$(bench "$protocol" "$workload" -c "$CONCURRENCY")
    peak=$(field 'round(r["throughput_rps"])' <<< "$peak_json")
    p99_peak=$(field 'r["latency_us"]["p99"] / 1000' <<< "$peak_json")
    errors=$(field 'sum(r["errors"].values())' <<< "$peak_json")
    half=$((peak / 2))
    half_json=$(bench "$protocol" "$workload" -c "$CONCURRENCY" --rate "$half" --no-preload)
    p50_half=$(field 'r["latency_us"]["p50"] / 1000' <<< "$half_json")
    p99_half=$(field 'r["latency_us"]["p99"] / 1000' <<< "$half_json")
    errors=$((errors + $(field 'sum(r["errors"].values())' <<< "$half_json")))
    rows+=("| $workload | $protocol | $peak | $p99_peak ms | $half | $p50_half ms | $p99_half ms | $errors |")
  done
done

echo
echo "hexkv bench, $CONCURRENCY in flight, ${DURATION} s after 2 s of warm-up, fsync $FSYNC, $(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d)"
echo
echo "| workload | protocol | peak req/s | p99 at peak | half rate | p50 at half | p99 at half | errors |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
