#!/usr/bin/env bash
# Memory and start-up of the embedded store with many keys, measured on this machine:
# the resident memory after writing KEYS keys (16-byte keys, 100-byte values, over gRPC with
# `hexkv bench`'s preload), then the time to replay the log at start-up and the memory after it,
# then the same from a snapshot (`hexkv compact`, offline).
#
#   scripts/bench-memory.sh             # or: just bench-memory
#   KEYS=100000 scripts/bench-memory.sh
#
# Prints a Markdown table; with JSON_OUT=FILE, also writes the figures there (scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# The build profile measured: `dist` (fat LTO) is what the container image ships.
PROFILE=${PROFILE:-dist}

KEYS=${KEYS:-1000000}
HTTP=127.0.0.1:18480
GRPC=127.0.0.1:18481

cargo build --profile "$PROFILE" --quiet -p hexkv-server --bin hexkv
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
work="$target/bench-memory"
rm -rf "$work" && mkdir -p "$work"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

start() { # LOG
  "$target/$PROFILE/hexkv" serve --http-listen "$HTTP" --grpc-listen "$GRPC" \
    --data-dir "$work/data" --fsync never --log-format json --ready-file "$work/ready.json" \
    > "$1" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    [ -s "$work/ready.json" ] && return 0
    kill -0 "$pid" 2>/dev/null || { echo "hexkv exited: $(cat "$1")" >&2; exit 1; }
    sleep 0.1
  done
  echo "hexkv did not start" >&2; exit 1
}
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; rm -f "$work/ready.json"; }

start "$work/first.log"
base=$(rss_mib)
t0=$(date +%s.%N)
"$target/$PROFILE/hexkv" bench --endpoint "http://$GRPC" --workload get --keys "$KEYS" \
  --key-size 16 --value-size 100 --requests 1 --warmup 0 -c 64 -o json > "$work/bench.json"
t1=$(date +%s.%N)
loaded=$(rss_mib)
stop

start "$work/second.log"
replayed=$(rss_mib)
opened=$(grep '"store opened"' "$work/second.log" | head -1)
stop

c0=$(date +%s.%N)
"$target/$PROFILE/hexkv" compact --data-dir "$work/data" --log-level warn > "$work/compact.log"
c1=$(date +%s.%N)
start "$work/third.log"
from_snapshot=$(rss_mib)
snapshot_opened=$(grep '"store opened"' "$work/third.log" | head -1)
stop

raw_mib=$(awk -v k="$KEYS" 'BEGIN {printf "%.0f", k * 116 / 1048576}')
python3 - "$opened" "$snapshot_opened" <<EOF
import json, sys
opened = json.loads(sys.argv[1])
records, ms = opened["records"], opened["elapsed_ms"]
snap = json.loads(sys.argv[2])
keys, snap_ms = snap["snapshot_keys"], snap["elapsed_ms"]
if "${JSON_OUT:-}":  # the figures for scripts/bench.py
    json.dump({"keys": $KEYS, "raw_mib": $raw_mib, "rss_empty_mib": $base,
               "rss_loaded_mib": $loaded, "write_s": round($t1 - $t0, 2),
               "replay_records": records, "replay_ms": ms, "rss_replayed_mib": $replayed,
               "compact_s": round($c1 - $c0, 2), "snapshot_keys": keys,
               "snapshot_ms": snap_ms, "rss_snapshot_mib": $from_snapshot},
              open("${JSON_OUT:-}", "w"), indent=1)
print()
print("$(nproc) cores, $(uname -m), $(date -u +%Y-%m-%d), $KEYS keys of 16 B with 100-byte values ($raw_mib MiB raw)")
print()
print("| measure | value |")
print("|---|---|")
print(f"| RSS at start (empty) | $base MiB |")
print(f"| RSS after writing every key over gRPC | $loaded MiB ({$loaded / $raw_mib:.2f}× raw) |")
print(f"| writing them ({$KEYS} puts, 64 in flight, fsync never) | {$t1 - $t0:.1f} s |")
print(f"| start-up: replaying {records} log records | {ms} ms ({records / max(ms, 1) * 1000:,.0f} records/s) |")
print(f"| RSS after the replay | $replayed MiB ({$replayed / $raw_mib:.2f}× raw) |")
print(f"| \`hexkv compact\` (offline: open, snapshot, close) | {$c1 - $c0:.1f} s |")
print(f"| start-up: loading a snapshot of {keys} keys | {snap_ms} ms ({keys / max(snap_ms, 1) * 1000:,.0f} keys/s) |")
print(f"| RSS after loading the snapshot | $from_snapshot MiB ({$from_snapshot / $raw_mib:.2f}× raw) |")
EOF
