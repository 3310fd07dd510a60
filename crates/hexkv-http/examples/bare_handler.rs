//! The ceiling for HTTP benchmarks: a bare axum handler that returns a fixed 5-byte body.
//!
//! hexkv's REST figures in `docs/benchmarks.md` are measured against this in the same run, on the
//! same machine, with the same runtime (tokio multi-thread, default worker count) and the same
//! allocator (mimalloc), so the ratio shows what hexkv's routing, middleware and store cost on top
//! of axum itself.
//!
//! `/v1/kv/{key}` answers like hexkv with fixed responses, for `hexkv bench`: GET a fixed
//! 100-byte value at version 1 (`ETag: "1"`), PUT `201 {"version":1}`. It is the REST twin of
//! `crates/hexkv-grpc/examples/bare_grpc.rs`.
//!
//! ```text
//! cargo run --release -p hexkv-http --example bare_handler -- 127.0.0.1:18081
//! wrk -t2 -c64 -d10s http://127.0.0.1:18081/
//! hexkv bench --protocol http --endpoint http://127.0.0.1:18081 --workload get --no-preload
//! ```

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;

/// The fixed value of every key.
static VALUE: [u8; 100] = [b'v'; 100];

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let app = Router::new().route("/", get(|| async { "hello" })).route(
        "/v1/kv/{*key}",
        get(|| async { ([(header::ETAG, "\"1\"")], &VALUE[..]) }).put(|| async {
            (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"version":1}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
