//! `counters`: the example service, on the platform's shell. Configuration: `--config FILE`
//! and `COUNTERS_*` over the defaults ([`settings`](hexkv_example_counters::settings));
//! `store.postgres_url` set: counters in PostgreSQL, else in memory.

use std::sync::Arc;
use std::time::Duration;

use hexkv_example_counters::memory::MemoryCounters;
use hexkv_example_counters::postgres::PostgresCounters;
use hexkv_example_counters::resilient::ResilientCounters;
use hexkv_example_counters::settings::Settings;
use hexkv_example_counters::{CounterService, CounterStore, http};
use hexkv_platform::serve::{ConnectionLimits, Connections, Protocols};
use hexkv_platform::{servers::Servers, shutdown::Shutdown, tls};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::args().skip_while(|a| a != "--config").nth(1);
    let settings = Settings::load(file.as_deref().map(std::path::Path::new))?;
    let _telemetry = hexkv_telemetry::init(
        &hexkv_telemetry::LogSettings {
            level: settings.log.level.clone(),
            json: true,
            sampling: settings.log.sampling.to_sampling(),
        },
        None,
    )?;
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
    let tls = tls::TlsSetup::load(&settings.tls)?;
    let _cert_watcher = tls
        .as_ref()
        .map(|t| tls::watch(Arc::clone(&t.certs)))
        .transpose()?;
    let transport = tls::transport(tls.as_ref(), &[b"h2", b"http/1.1"])?;
    let listener = tokio::net::TcpListener::bind(settings.http.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let shutdown = Shutdown::on_signals()?;
    let mut servers = Servers::new(ConnectionLimits::default(), Connections::new(4_096, 512));
    let app = http::router(CounterService::new(store));
    servers.spawn("http", listener, app, transport, Protocols::Any);
    let requested = shutdown.requested.cancelled_owned();
    servers
        .run(requested, async {}, &settings.shutdown, shutdown.hurried)
        .await
}
