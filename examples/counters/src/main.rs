//! `counters`: the example service. `DATABASE_URL` set: counters in PostgreSQL, else in memory.
//! `COUNTERS_LISTEN` (default 127.0.0.1:8090).

use std::sync::Arc;
use std::time::Duration;

use hexkv_example_counters::memory::MemoryCounters;
use hexkv_example_counters::postgres::PostgresCounters;
use hexkv_example_counters::resilient::ResilientCounters;
use hexkv_example_counters::{CounterService, CounterStore, http};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = tracing_subscriber_init();
    let store: Arc<dyn CounterStore> = match std::env::var("DATABASE_URL") {
        Ok(url) => Arc::new(PostgresCounters::connect(&url).await?),
        Err(_) => Arc::new(MemoryCounters::default()),
    };
    let store = Arc::new(ResilientCounters::new(
        store,
        Duration::from_secs(1),
        hexkv_resilience::RetryPolicy::default(),
        hexkv_resilience::BreakerConfig::default(),
    ));
    let listen = std::env::var("COUNTERS_LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, http::router(CounterService::new(store)))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Logs through hexkv-telemetry, as hexkv does: JSON lines, sampled, level from `RUST_LOG`.
fn tracing_subscriber_init() -> Option<hexkv_telemetry::Telemetry> {
    let settings = hexkv_telemetry::LogSettings {
        level: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        json: true,
        sampling: Default::default(),
    };
    hexkv_telemetry::init(&settings, None).ok()
}
