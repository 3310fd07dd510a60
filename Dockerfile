# syntax=docker/dockerfile:1
# The hexkv image: a multi-stage build whose dependency layer is cached (cargo-chef), and a small
# non-root runtime (distroless, with glibc) holding the one binary. Configured by environment
# only (HEXKV_*; docs/configuration.md).
#
#   docker build -t hexkv .
#   docker run -p 8080:8080 -p 50051:50051 -e HEXKV_AUTH__KEYS='[{...}]' -v hexkv:/var/lib/hexkv hexkv

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

# The dependency recipe: changes only when Cargo.toml/Cargo.lock do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --profile dist --locked -p hexkv-server --recipe-path recipe.json
COPY . .
RUN cargo build --profile dist --locked -p hexkv-server --bin hexkv \
    && install -D -m 0755 target/dist/hexkv /out/hexkv \
    && install -d -m 0755 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/hexkv /usr/local/bin/hexkv
COPY --from=builder --chown=65532:65532 /out/data /var/lib/hexkv
# Listen on every interface (a container's loopback is its own). Beyond loopback hexkv requires
# API keys (HEXKV_AUTH__KEYS) or an explicit HEXKV_AUTH__ALLOW_UNAUTHENTICATED=true.
ENV HEXKV_HTTP__LISTEN=0.0.0.0:8080 \
    HEXKV_GRPC__LISTEN=0.0.0.0:50051 \
    HEXKV_STORE__MEMORY__DATA_DIR=/var/lib/hexkv \
    HEXKV_LOG__FORMAT=json
VOLUME ["/var/lib/hexkv"]
EXPOSE 8080 50051
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/hexkv", "probe", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/hexkv"]
CMD ["serve"]
