//! The ceiling for HTTP benchmarks: a bare axum handler that returns a fixed 5-byte body.
//!
//! hexkv's REST figures in `docs/benchmarks.md` are measured against this in the same run, on the
//! same machine, with the same runtime (tokio multi-thread, default worker count) and the same
//! allocator (mimalloc), so the ratio shows what hexkv's routing, middleware and store cost on top
//! of axum itself.
//!
//! ```text
//! cargo run --release -p hexkv-http --example bare_handler -- 127.0.0.1:18081
//! wrk -t2 -c64 -d10s http://127.0.0.1:18081/
//! ```

use axum::Router;
use axum::routing::get;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let app = Router::new().route("/", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
