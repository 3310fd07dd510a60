//! `counters`: the example service, on the platform's shell. Configuration: `--config FILE`
//! and `COUNTERS_*` over the defaults ([`settings`](hexkv_example_counters::settings));
//! `store.postgres_url` set: counters in PostgreSQL, else in memory. SIGHUP or a change of the
//! file reloads it (the log level and sampling apply live).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use hexkv_example_counters::memory::MemoryCounters;
use hexkv_example_counters::postgres::PostgresCounters;
use hexkv_example_counters::resilient::ResilientCounters;
use hexkv_example_counters::settings::Settings;
use hexkv_example_counters::{CounterService, CounterStore, http};
use hexkv_platform::serve::{ConnectionLimits, Connections, Protocols};
use hexkv_platform::{health::Readiness, servers::Servers, shutdown::Shutdown, tls};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let file = std::env::args()
        .skip_while(|a| a != "--config")
        .nth(1)
        .map(PathBuf::from);
    let settings = Settings::load(file.as_deref())?;
    let telemetry = hexkv_telemetry::init(
        &hexkv_telemetry::LogSettings {
            level: settings.log.level.clone(),
            json: true,
            sampling: settings.log.sampling.to_sampling(),
        },
        Some(&hexkv_telemetry::BuildInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            features: String::new(),
        }),
    )?;
    telemetry.spawn_housekeeping();
    let recorder = telemetry
        .metrics()
        .cloned()
        .context("no metrics recorder")?;
    // SIGHUP or a change of the file: the log level and sampling apply live.
    let _reload = hexkv_platform::reload::spawn(file.clone().as_deref(), move || {
        match Settings::load(file.as_deref()) {
            Ok(new) => match telemetry.set_level(&new.log.level) {
                Ok(()) => {
                    telemetry.set_sampling(new.log.sampling.to_sampling());
                    tracing::info!(log_level = %new.log.level, "configuration reloaded");
                }
                Err(e) => tracing::warn!(error = %e, "log.level refused; the running one stays"),
            },
            Err(e) => tracing::warn!(error = %e, "reload refused; the running settings stay"),
        }
    })?;
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
    let service = CounterService::new(store);
    // Ready while a read of the store answers, until the drain begins.
    let readiness = Arc::new(Readiness::new().with_check("store", {
        let service = service.clone();
        move || {
            let service = service.clone();
            async move { service.ready().await.map_err(|e| e.to_string()) }
        }
    }));
    let app = http::router(service, Arc::clone(&readiness))
        .merge(hexkv_platform::health::metrics_route(recorder));
    servers.spawn("http", listener, app, transport, Protocols::Any);
    let requested = shutdown.requested.cancelled_owned();
    let draining = async move { readiness.begin_draining() };
    servers
        .run(requested, draining, &settings.shutdown, shutdown.hurried)
        .await
}
