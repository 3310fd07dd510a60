//! hexkv's composition root: reads nothing itself (the binary hands it the [`Config`]), opens
//! the store the configuration names, builds the key-value service over it, and hands the
//! service's REST routes and gRPC services to the platform's
//! [`Application`](hexkv_platform::app::Application), which serves them — configuration
//! reload, TLS, API keys, limits, telemetry, health and the drain are the platform's.
//!
//! This is the only crate that knows every adapter, and it knows them through cargo features:
//! `http` (the REST front end), `grpc` (the gRPC front end), `memory` (the embedded store),
//! `postgres` (the PostgreSQL store) and `cli` (the command-line client, [`cli`]). `main` stays
//! thin: it parses the command line, loads the configuration, starts the telemetry and calls
//! [`Application::build`] and [`Application::run`]; the bound addresses are known before
//! serving ([`Application::addresses`]), so a test can start it on port 0.
//!
//! # Shutdown
//! When shutdown is requested (SIGINT or SIGTERM in the binary):
//! 1. the service starts draining: `/readyz` answers 503 and gRPC health reports NOT_SERVING;
//! 2. it keeps serving for `shutdown.readiness_delay_ms` so load balancers notice;
//! 3. the listeners close and in-flight requests get `shutdown.drain_timeout_ms` to finish;
//! 4. the store is closed: the log's last batch is written and synced.
//!
//! Asked again during steps 2–3 (a second signal: the [`Shutdown`]'s `hurried` token), it skips
//! the rest of the delay and the drain, and still closes the store.

#[cfg(not(any(feature = "http", feature = "grpc")))]
compile_error!("hexkv-server needs a front end: enable the `http` or the `grpc` feature");
#[cfg(not(any(feature = "memory", feature = "postgres")))]
compile_error!("hexkv-server needs a store: enable the `memory` or the `postgres` feature");

#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod guarded;
pub mod instrumented;
pub mod reload;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use hexkv_core::{KeyValueService, KvStore, Limits};
use hexkv_platform::shutdown::Shutdown;

pub use config::Config;

/// The service, built and bound, not yet serving.
pub struct Application {
    config: Config,
    service: Arc<KeyValueService>,
    store: Arc<dyn KvStore>,
    breaker: Option<Arc<hexkv_resilience::CircuitBreaker>>,
    flags: Arc<hexkv_core::FeatureFlags>,
    telemetry: Arc<hexkv_telemetry::Telemetry>,
    reload: Option<config::Overrides>,
    /// The REST listener (feature `http`); it serves gRPC too when `grpc` is `None` in a build
    /// with both front ends (`grpc.listen = http.listen`).
    http: Option<std::net::TcpListener>,
    /// The gRPC listener (feature `grpc`), unless gRPC shares the REST one.
    grpc: Option<std::net::TcpListener>,
}

/// Whether REST and gRPC share one listener: the same address, not port 0.
fn shares_listener(config: &Config) -> bool {
    config.grpc.listen == config.http.listen && config.http.listen.port() != 0
}

fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({key})"))
}

impl Application {
    /// Opens the store and binds the listeners; `telemetry` is the process's (its metrics are
    /// served at `/metrics`, its traces flushed at shutdown).
    pub async fn build(
        config: Config,
        telemetry: Arc<hexkv_telemetry::Telemetry>,
    ) -> anyhow::Result<Self> {
        let (store, breaker) = open_store(&config).await?;
        let limits = Limits {
            max_value_bytes: config.limits.max_value_bytes,
        };
        // `[flags]` over hexkv's defaults; the platform changes them on reload.
        let flags = Arc::new(hexkv_platform::config::feature_flags(
            &config.flags,
            hexkv_core::flags::KNOWN,
        ));
        let service = Arc::new(KeyValueService::with_flags(
            Arc::clone(&store),
            limits,
            Arc::clone(&flags),
        ));
        // Certificates are read before anything listens, so a bad one stops the start.
        #[cfg(feature = "tls")]
        hexkv_platform::tls::TlsSetup::load(&config.tls)?;
        let http = cfg!(feature = "http")
            .then(|| bind(config.http.listen, "http.listen"))
            .transpose()?;
        let grpc = (cfg!(feature = "grpc") && !(http.is_some() && shares_listener(&config)))
            .then(|| bind(config.grpc.listen, "grpc.listen"))
            .transpose()?;
        Ok(Self {
            config,
            service,
            store,
            breaker,
            flags,
            telemetry,
            reload: None,
            http,
            grpc,
        })
    }

    /// Reloads the configuration while serving, from the layers `overrides` names (the same as
    /// at start): on SIGHUP, and when the configuration file changes. See [`reload`].
    pub fn with_reload(mut self, overrides: config::Overrides) -> Self {
        self.reload = Some(overrides);
        self
    }

    /// The bound addresses by front end, e.g. `{"http": "127.0.0.1:8080"}`.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        let http = self.http.as_ref().and_then(|l| l.local_addr().ok());
        let grpc = match &self.grpc {
            Some(listener) => listener.local_addr().ok(),
            // Served on the REST listener.
            None if cfg!(feature = "grpc") => http,
            None => None,
        };
        [("http", http), ("grpc", grpc)]
            .into_iter()
            .filter_map(|(front_end, addr)| Some((front_end, addr?)))
            .collect()
    }

    /// Serves until `shutdown` is requested, then shuts down gracefully (see the module docs),
    /// and closes the store.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Self {
            config,
            service,
            store,
            breaker,
            flags,
            telemetry,
            reload,
            http,
            grpc,
        } = self;
        // With traces on, the front ends call the service through a span per call (the
        // "service" step of a trace); without, they call it directly.
        // (Whether traces are exported was logged when the telemetry started.)
        let traces = config.telemetry.exports_from_env();
        let api: Arc<dyn hexkv_core::KeyValueApi> = if traces.is_on() && cfg!(feature = "otlp") {
            Arc::new(instrumented::InstrumentedApi::new(
                Arc::clone(&service) as Arc<dyn hexkv_core::KeyValueApi>
            ))
        } else {
            Arc::clone(&service) as Arc<dyn hexkv_core::KeyValueApi>
        };
        let mut app =
            hexkv_platform::app::Application::with_telemetry("hexkv", config.clone(), telemetry)?
                .with_feature_flags(flags)
                // Ready while the store answers its check (through its guards, cached).
                .readiness_check("store", {
                    let store = Arc::clone(&store);
                    move || {
                        let store = Arc::clone(&store);
                        async move { store.check().await.map_err(|e| e.to_string()) }
                    }
                });
        if let Some(overrides) = reload {
            // The store breaker's thresholds change live too, when the breaker exists
            // (configured off at start, it needs a restart); the flags are the platform's.
            let live: &[&str] = if breaker.is_some() { reload::LIVE } else { &[] };
            let file = overrides.config.clone();
            app = app
                .reload_from(file, move || Config::load(&overrides))
                .live(live)
                .on_reload(move |new: &Config| reload::apply(new, breaker.as_deref()));
        }
        #[cfg(feature = "http")]
        let routes = {
            app = app.openapi(hexkv_http::openapi::document());
            Some(hexkv_http::routes(Arc::clone(&api)))
        };
        #[cfg(not(feature = "http"))]
        let routes = None;
        #[cfg(feature = "grpc")]
        let mut services = Some(hexkv_grpc::services(
            Arc::clone(&api),
            config.limits.max_value_bytes,
        ));
        #[cfg(not(feature = "grpc"))]
        let mut services = None;
        if let (Some(listener), Some(routes)) = (http, routes) {
            app = match (&grpc, services.take()) {
                // `grpc.listen = http.listen`: one listener, by content type.
                (None, Some(both)) => app.http_and_grpc_on("http", listener, routes, both)?,
                (_, kept) => {
                    services = kept;
                    app.http_on("http", listener, routes)?
                }
            };
        }
        if let (Some(listener), Some(services)) = (grpc, services) {
            app = app.grpc_on("grpc", listener, services)?;
        }
        let served = app.run_until(shutdown).await;

        let closed = store.close().await;
        match &closed {
            Ok(()) => tracing::info!("store closed; shutdown complete"),
            Err(e) => tracing::error!(error = %e, "closing the store failed"),
        }
        served?;
        closed.context("closing the store failed")
    }
}

/// The store, wrapped in its instrumentation and resilience decorators, and its breaker.
type Protected = (
    Arc<dyn KvStore>,
    Option<Arc<hexkv_resilience::CircuitBreaker>>,
);

async fn open_store(config: &Config) -> anyhow::Result<Protected> {
    let store = open_backend(config).await?;
    let backend = match config.store.backend {
        crate::config::Backend::Memory => "memory",
        crate::config::Backend::Postgres => "postgresql",
    };
    let store = Arc::new(instrumented::InstrumentedStore::new(store, backend));
    let resilience = &config.resilience.store;
    if !resilience.apply.wraps(config.store.backend) {
        return Ok((store, None));
    }
    Ok(protect(store, resilience))
}

/// Puts the store behind its guards: check cache → retry → circuit breaker → timeout → bulkhead
/// → store, each as configured ([`guarded`]).
///
/// The timeout sits inside the breaker, so a hung store counts as failing: a timeout outside it
/// would cancel the breaker's call, which counts as nothing, and a store that hangs would never
/// open the breaker. See `docs/resilience.md`.
fn protect(store: Arc<dyn KvStore>, r: &crate::config::StoreResilienceConfig) -> Protected {
    use hexkv_resilience::{Bulkhead, CircuitBreaker, Guards, RetryPolicy};
    use std::time::Duration;

    let ms = Duration::from_millis;
    let mut guards = Guards::new();
    if r.bulkhead_max_in_flight > 0 {
        guards = guards.with_bulkhead(Bulkhead::new(
            r.bulkhead_max_in_flight as usize,
            ms(r.bulkhead_max_wait_ms),
        ));
    }
    if r.timeout_ms > 0 {
        guards = guards.with_timeout(ms(r.timeout_ms));
    }
    let mut breaker = None;
    if r.breaker_consecutive_failures > 0 || r.breaker_window > 0 {
        metrics::gauge!(hexkv_telemetry::metrics::BREAKER_STATE).set(0.0);
        let shared = Arc::new(
            CircuitBreaker::new(reload::breaker_config(r))
                .on_transition(hexkv_platform::resilience::observe_breaker),
        );
        guards = guards.with_breaker(Arc::clone(&shared));
        breaker = Some(shared);
    }
    if r.retry_attempts > 1 {
        guards = guards.with_retry(RetryPolicy {
            max_attempts: r.retry_attempts,
            base_delay: ms(r.retry_base_delay_ms),
            max_delay: ms(r.retry_max_delay_ms),
            // No new attempt starts later than one timeout after the first.
            max_elapsed: ms(r.timeout_ms.max(r.retry_max_delay_ms)),
            ..RetryPolicy::default()
        });
    }
    let mut store = guarded::GuardedStore::new(store, guards);
    if r.check_cache_ms > 0 || r.check_timeout_ms > 0 {
        let timeout = (r.check_timeout_ms > 0).then(|| ms(r.check_timeout_ms));
        store = store.with_check_cache(ms(r.check_cache_ms), timeout);
    }
    (Arc::new(store), breaker)
}

async fn open_backend(config: &Config) -> anyhow::Result<Arc<dyn KvStore>> {
    use crate::config::Backend;

    match config.store.backend {
        #[cfg(feature = "memory")]
        Backend::Memory => open_memory(config).await,
        #[cfg(feature = "postgres")]
        Backend::Postgres => open_postgres(config).await,
        #[allow(unreachable_patterns)]
        backend => anyhow::bail!(
            "store.backend = {backend:?}: this binary was built without that store's cargo feature"
        ),
    }
}

#[cfg(feature = "postgres")]
async fn open_postgres(config: &Config) -> anyhow::Result<Arc<dyn KvStore>> {
    use hexkv_store_postgres::{PostgresOptions, PostgresStore};
    use std::time::Duration;

    let pg = &config.store.postgres;
    let options = PostgresOptions {
        url: pg.url.expose().to_owned(),
        max_connections: pg.max_connections,
        min_connections: pg.min_connections,
        acquire_timeout: Duration::from_millis(pg.acquire_timeout_ms),
        statement_timeout: Duration::from_millis(pg.statement_timeout_ms),
        migrate: pg.migrate,
        migrate_lock: pg.migrate_lock,
        connect_wait: Duration::from_millis(pg.connect_wait_ms),
        read_batch: pg.read_batch,
        read_batch_queries: pg.read_batch_queries,
        write_batch: pg.write_batch,
        write_batch_queries: pg.write_batch_queries,
    };
    let started = Instant::now();
    let store = PostgresStore::connect(&options)
        .await
        .context("cannot open the PostgreSQL store")?;
    tracing::info!(
        target_db = %options.target(),
        max_connections = pg.max_connections,
        read_batch = pg.read_batch,
        write_batch = pg.write_batch,
        migrate = pg.migrate,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "store opened (PostgreSQL)"
    );
    Ok(Arc::new(store))
}

/// `hexkv compact`: opens the memory store's data directory (the service must be stopped, the
/// directory is locked while open), compacts its log into a snapshot, and closes it.
#[cfg(feature = "memory")]
pub fn compact_offline(config: &Config) -> anyhow::Result<hexkv_store_memory::CompactionReport> {
    use hexkv_store_memory::MemoryStore;

    let memory = &config.store.memory;
    anyhow::ensure!(
        !memory.ephemeral,
        "store.memory.ephemeral = true: there is no log to compact"
    );
    let options = memory.durable_options();
    let (store, _) = MemoryStore::open(&options)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    runtime.block_on(async {
        let report = store
            .compact()
            .await?
            .context("a durable store always compacts")?;
        store.close().await?;
        Ok(report)
    })
}

#[cfg(feature = "memory")]
async fn open_memory(config: &Config) -> anyhow::Result<Arc<dyn KvStore>> {
    use hexkv_store_memory::MemoryStore;

    let memory = &config.store.memory;
    if memory.ephemeral {
        tracing::warn!("store.memory.ephemeral = true: nothing is kept across restarts");
        return Ok(Arc::new(MemoryStore::ephemeral(memory.shards)));
    }
    let options = memory.durable_options();
    let started = Instant::now();
    let (store, report) = tokio::task::spawn_blocking(move || MemoryStore::open(&options))
        .await
        .context("opening the store panicked")??;
    tracing::info!(
        path = %report.path.display(),
        snapshot = report.snapshot.as_ref().map(|s| s.path.display().to_string()),
        snapshot_keys = report.snapshot.as_ref().map(|s| s.entries),
        segments = report.segments,
        records = report.records,
        keys = report.keys,
        last_version = report.last_version.get(),
        truncated_bytes = report.truncated_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        fsync = ?memory.fsync,
        "store opened"
    );
    Ok(Arc::new(store))
}
