# Recipes for working on hexkv. Nothing here is required: each recipe is one plain command
# you can copy. `just --list` shows them.

# Run the service on its embedded store (data in ./data), with extra flags: just run --fsync never
run *ARGS:
    cargo run --release --bin hexkv -- {{ARGS}}

# Run the whole test suite (the same command as the README's Quick start).
test:
    cargo test --workspace

# Formatting check and clippy with warnings as errors, on every target and feature.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --all-features -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# Build every supported feature combination of the binary.
check-features:
    cargo check -p hexkv-server --no-default-features --features http,memory
    cargo check -p hexkv-server --no-default-features --features grpc,memory
    cargo check -p hexkv-server --no-default-features --features http,postgres
    cargo check -p hexkv-server --no-default-features --features grpc,postgres
    cargo check -p hexkv-server --no-default-features --features http,grpc,memory
    cargo check -p hexkv-server --no-default-features --features http,grpc,memory,postgres
    cargo check -p hexkv-server --no-default-features --features http,memory,cli
    cargo check -p hexkv-server --no-default-features --features grpc,memory,otlp
    cargo check -p hexkv-server --no-default-features --features http,memory,tls
    cargo check -p hexkv-server --no-default-features --features grpc,memory,tls
    cargo check -p hexkv-core --no-default-features

# Every benchmark in one run; regenerates docs/benchmarks.md and its plots (needs wrk). About 15 min after the build.
bench:
    scripts/bench.py

# REST throughput against a bare axum handler and a bare durable PUT, in one run (needs wrk). Part of `just bench`.
bench-http:
    scripts/bench-http.sh

# Resident memory with a million keys, and start-up from the log and from a snapshot. Part of `just bench`.
bench-memory:
    scripts/bench-memory.sh

# REST on PostgreSQL beside pgbench on the same server (needs wrk). Part of `just bench`.
bench-pg:
    scripts/bench-postgres.sh

# Fuzz every target (or those named) for FUZZ_SECONDS each after its committed corpus: just fuzz log_record
fuzz *TARGETS:
    scripts/fuzz.sh {{TARGETS}}

# Turn this workspace into a new service called NAME (crates, binary, proto package, env prefix, docs).
rename NAME:
    python3 scripts/rename.py {{NAME}}

# Write a new service's workspace in DIR (default ./NAME): the platform crates and a skeleton domain to replace.
new-service NAME *ARGS:
    python3 scripts/new-service.py {{NAME}} {{ARGS}}

# Lint the Dockerfile and validate the Kubernetes manifests offline (tools from PyPI).
validate-deploy:
    scripts/validate-deploy.sh

# Rewrite docs/openapi.json from the code (after changing the REST API).
openapi:
    UPDATE_OPENAPI=1 cargo test -p hexkv-http openapi

# Every cargo-deny check, advisories included (needs the network for the RustSec database).
deny:
    cargo deny check

# A local PostgreSQL for development in target/pg; prints its URL (also: url, stop).
pg ACTION="start":
    scripts/pg.sh {{ACTION}}

# What CI runs.
ci:
    bash .ci/run
