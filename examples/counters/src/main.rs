//! `counters`: the example service, on the platform's shell. Configuration: `--config FILE`
//! and `COUNTERS_*` over the defaults ([`settings`](hexkv_example_counters::settings));
//! `store.postgres_url` set: counters in PostgreSQL, else in memory. The
//! [`Application`](hexkv_platform::app::Application) does the rest: logs, metrics, reload,
//! TLS, limits, health and drain.

use std::sync::Arc;
use std::time::Duration;

use hexkv_example_counters::memory::MemoryCounters;
use hexkv_example_counters::postgres::PostgresCounters;
use hexkv_example_counters::resilient::ResilientCounters;
use hexkv_example_counters::settings::Settings;
use hexkv_example_counters::{CounterService, CounterStore, grpc, http};
use hexkv_platform::app::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = Application::<Settings>::from_args("counters", env!("CARGO_PKG_VERSION"))?;
    let settings = app.settings().clone();
    let store: Arc<dyn CounterStore> = match settings.store.postgres_url.as_str() {
        "" => Arc::new(MemoryCounters::default()),
        url => Arc::new(PostgresCounters::connect(url).await?),
    };
    let store = Arc::new(ResilientCounters::new(
        store,
        Duration::from_secs(1),
        hexkv_resilience::RetryPolicy::default(),
        hexkv_resilience::BreakerConfig::default(),
    ));
    let service = CounterService::new(store);
    // Ready while a read of the store answers (and until the drain begins).
    let ready = service.clone();
    app.readiness_check("store", move || {
        let service = ready.clone();
        async move { service.ready().await.map_err(|e| e.to_string()) }
    })
    .http(
        "http",
        "http.listen",
        settings.http.listen,
        http::routes(service.clone()),
    )?
    .grpc(
        "grpc",
        "grpc.listen",
        settings.grpc.listen,
        grpc::services(service),
    )?
    .run()
    .await
}
