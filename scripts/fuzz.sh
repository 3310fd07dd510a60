#!/usr/bin/env bash
# Runs every fuzz target in fuzz/: first over its committed corpus (fuzz/corpus/TARGET, the
# regression corpus: every input there must still pass), then for FUZZ_SECONDS more seconds of
# new inputs (default 20), which go to a scratch directory so the committed corpus stays as is.
#
#   scripts/fuzz.sh                 # all targets, 20 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh log_record
#
# Needs cargo-fuzz (installed here if missing) and a nightly toolchain; without nightly, the
# stable one is used with RUSTC_BOOTSTRAP=1 (cargo fuzz passes nightly-only compiler flags).
# A crash leaves its input in fuzz/artifacts/TARGET/; once fixed, copy it into the corpus.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"

if ! command -v cargo-fuzz > /dev/null; then
  cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2> /dev/null | grep -q '^nightly'; then
  toolchain=+nightly
else
  toolchain=+stable
  export RUSTC_BOOTSTRAP=1
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "$toolchain" fuzz list)
fi
cargo "$toolchain" fuzz build -O
for target in "${targets[@]}"; do
  scratch="$(mktemp -d)"
  mkdir -p "corpus/$target"
  echo "-- fuzz $target: $(ls "corpus/$target" | wc -l) corpus inputs, then ${seconds}s"
  if cargo "$toolchain" fuzz run -O "$target" "$scratch" "corpus/$target" -- \
    -max_total_time="$seconds" > "$scratch.log" 2>&1; then
    status=0
  else
    status=$?
  fi
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$scratch.log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$scratch.log" >&2
    echo "fuzz target $target failed (input in fuzz/artifacts/$target/)" >&2
    rm -rf "$scratch" "$scratch.log"
    exit "$status"
  fi
  rm -rf "$scratch" "$scratch.log"
done
