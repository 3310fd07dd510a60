//! `counters`: the example service, on the platform's shell. Configuration: `--config FILE`
//! and `COUNTERS_*` over the defaults ([`settings`](hexkv_example_counters::settings)); the
//! store by `store.backend` ([`store`](hexkv_example_counters::store)). The
//! [`Application`](hexkv_platform::app::Application) does the rest: logs, metrics, reload,
//! TLS, API keys, limits, health and drain.

use hexkv_example_counters::settings::Settings;
use hexkv_example_counters::{CounterService, NAME, grpc, http, store};
use hexkv_platform::app::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = Application::<Settings>::from_args(NAME, env!("CARGO_PKG_VERSION"))?;
    let settings = app.settings().clone();
    let service = CounterService::new(store::open(&settings.store).await?);
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
