//! The ceiling for durable PUT benchmarks: a bare axum handler that appends each request's body
//! to a file and answers once an `fdatasync` covers it, with group commit and nothing else.
//!
//! `bare_handler.rs` is the ceiling of a request; this is the ceiling of a request that must be
//! on disk before it is answered. Its log is [`hexkv_bench::group_commit`]: one thread takes
//! every body queued since its last sync, writes them with one `pwrite`, syncs with one
//! `fdatasync` and wakes their requests, the same shape as hexkv's log under `fsync = always`
//! (no record format, no checksum, no map, no versions, no middleware). hexkv's PUT does all of
//! this and more, so it should not be expected to beat this handler: what separates this handler
//! from `bare_handler.rs` is the price of the sync itself on the machine at hand. Its gRPC twin is
//! `crates/hexkv-grpc/examples/bare_grpc.rs` given a log path.
//!
//! `PUT /v1/kv/{key}` answers `201 {"version":1}` like `bare_handler.rs`; a failed write or sync
//! answers 500 to every request of its batch, and the handler stops syncing from then on.
//!
//! ```text
//! cargo run --release -p hexkv-http --example bare_durable -- 127.0.0.1:18082 target/bare-durable.log
//! wrk -t2 -c64 -d10s -s scripts/wrk/put.lua http://127.0.0.1:18082
//! ```

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use hexkv_bench::group_commit::GroupCommitLog;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn put_value(State(log): State<GroupCommitLog>, body: Bytes) -> impl IntoResponse {
    match log.append(&body).await {
        Ok(()) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"version":1}"#,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "the log failed",
        ),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18082".to_owned());
    let path = args.next().unwrap_or_else(|| "bare-durable.log".to_owned());
    let log = GroupCommitLog::create(path)?;
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/v1/kv/{*key}", put(put_value))
        .with_state(log);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
