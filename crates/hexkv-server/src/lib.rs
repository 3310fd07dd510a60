//! hexkv's composition root: builds the adapters from [`Config`], wires them to the core, and
//! runs them until shutdown.
//!
//! This is the only crate that knows every adapter, and it knows them through cargo features:
//! `http` (the REST front end), `grpc` (the gRPC front end), `memory` (the embedded store),
//! `postgres` (the PostgreSQL store) and `cli` (the command-line client, [`cli`]). `main` stays thin: it parses the command line, loads the configuration and calls [`Application::build`] and
//! [`Application::run`]; tests do the same with port 0 and read the bound address back.
//!
//! # Shutdown
//! When the shutdown future resolves (SIGINT or SIGTERM in the binary):
//! 1. the service starts draining: `/readyz` answers 503 and gRPC health reports NOT_SERVING;
//! 2. it keeps serving for `shutdown.readiness_delay_ms` so load balancers notice;
//! 3. the listeners close and in-flight requests get `shutdown.drain_timeout_ms` to finish;
//! 4. the store is closed: the log's last batch is written and synced.
//!
//! Asked again during steps 2–3 (a second signal; [`Application::run_with`]), it skips the rest
//! of the delay and the drain, and still closes the store.

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

use hexkv_platform::serve;
#[cfg(feature = "tls")]
use hexkv_platform::tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use hexkv_core::{KeyValueService, KvStore, Limits};
use tokio::net::TcpListener;

pub use config::Config;

/// The service, built and bound, not yet serving.
pub struct Application {
    config: Config,
    service: Arc<KeyValueService>,
    store: Arc<dyn KvStore>,
    breaker: Option<Arc<hexkv_resilience::CircuitBreaker>>,
    flags: Arc<hexkv_core::FeatureFlags>,
    telemetry: Option<Arc<hexkv_telemetry::Telemetry>>,
    reload: Option<config::Overrides>,
    #[cfg(feature = "http")]
    http: (TcpListener, SocketAddr),
    #[cfg(feature = "grpc")]
    grpc: (TcpListener, SocketAddr),
    #[cfg(feature = "tls")]
    tls: Option<tls::TlsSetup>,
}

async fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

impl Application {
    /// Opens the store and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (store, breaker) = open_store(&config).await?;
        let limits = Limits {
            max_value_bytes: config.limits.max_value_bytes,
        };
        let flags = Arc::new(hexkv_core::FeatureFlags::default());
        flags.replace(
            config
                .flags
                .iter()
                .map(|(name, setting)| (name.clone(), setting.rollout())),
        );
        let service = Arc::new(KeyValueService::with_flags(
            Arc::clone(&store),
            limits,
            Arc::clone(&flags),
        ));
        // Certificates are read before anything listens, so a bad one stops the start.
        #[cfg(feature = "tls")]
        let tls = tls::TlsSetup::load(&config.tls)?;
        #[cfg(feature = "http")]
        let http = bind(config.http.listen, "http.listen").await?;
        #[cfg(feature = "grpc")]
        let grpc = bind(config.grpc.listen, "grpc.listen").await?;
        Ok(Self {
            config,
            service,
            store,
            breaker,
            flags,
            telemetry: None,
            reload: None,
            #[cfg(feature = "http")]
            http,
            #[cfg(feature = "grpc")]
            grpc,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    /// Hands the application the process's telemetry: its metrics are served at `/metrics`
    /// and its periodic work (the sampler's report, the exporter's upkeep) runs while serving.
    pub fn with_telemetry(mut self, telemetry: Arc<hexkv_telemetry::Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Reloads the configuration while serving, from the layers `overrides` names (the same as
    /// at start): on SIGHUP, and when the configuration file changes. See [`reload`].
    pub fn with_reload(mut self, overrides: config::Overrides) -> Self {
        self.reload = Some(overrides);
        self
    }

    /// The address the REST API is bound to (useful with port 0).
    #[cfg(feature = "http")]
    pub fn http_addr(&self) -> SocketAddr {
        self.http.1
    }

    /// The address the gRPC API is bound to (useful with port 0).
    #[cfg(feature = "grpc")]
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.1
    }

    /// The bound addresses by front end, e.g. `{"http": "127.0.0.1:8080"}`.
    pub fn addresses(&self) -> Vec<(&'static str, SocketAddr)> {
        vec![
            #[cfg(feature = "http")]
            ("http", self.http_addr()),
            #[cfg(feature = "grpc")]
            ("grpc", self.grpc_addr()),
        ]
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully (see the module docs).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.run_with(shutdown, std::future::pending()).await
    }

    /// As [`Application::run`]; when `hurry` resolves during the shutdown (a second SIGTERM or
    /// Ctrl-C in the binary), the readiness delay and the drain are cut short: the listeners close
    /// at once, in-flight requests are cut, and the store is still closed properly.
    pub async fn run_with(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        hurry: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // The platform's `Servers` serve the listeners and drain them in order (readiness fails,
        // the delay, the listeners close, the drain); `hurried` cuts the delay and the drain short.
        let hurried = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let hurried = hurried.clone();
            async move {
                hurry.await;
                hurried.cancel();
            }
        });
        let addresses = self.addresses();
        #[cfg(feature = "tls")]
        let tls = self.tls.clone();
        let Self {
            config,
            service,
            store,
            breaker,
            flags,
            telemetry,
            reload,
            ..
        } = self;
        // The certificate is reloaded when its files change, for as long as this runs.
        #[cfg(feature = "tls")]
        let _cert_watcher = match &tls {
            Some(tls) => Some(tls::watch(Arc::clone(&tls.certs))?),
            None => None,
        };
        if let Some(telemetry) = &telemetry {
            telemetry.spawn_housekeeping();
        }
        // With traces on, the front ends call the service through a span per call (the
        // "service" step of a trace); without, they call it directly.
        let traces = config.telemetry.exports_from_env();
        match &traces {
            config::TraceExport::On(why) => tracing::info!(reason = why, "exporting traces"),
            config::TraceExport::Off(why) => tracing::debug!(reason = why, "not exporting traces"),
            config::TraceExport::Unsupported(names) => tracing::warn!(
                OTEL_TRACES_EXPORTER = %names,
                "OTEL_TRACES_EXPORTER names no exporter this binary has (only otlp); not exporting traces"
            ),
        }
        let api: Arc<dyn hexkv_core::KeyValueApi> = if traces.is_on() && cfg!(feature = "otlp") {
            Arc::new(instrumented::InstrumentedApi::new(
                Arc::clone(&service) as Arc<dyn hexkv_core::KeyValueApi>
            ))
        } else {
            Arc::clone(&service) as Arc<dyn hexkv_core::KeyValueApi>
        };
        // One throttle for both front ends: a client's rate counts its REST and gRPC requests.
        // It always exists (off while `throttle_per_minute` is 0) so a reload can turn it on.
        let limits = &config.limits;
        let throttle = Arc::new(hexkv_resilience::Throttle::<hexkv_core::Identity>::new(
            limits.throttle_per_minute,
            limits.throttle_burst,
            limits.throttle_max_clients,
        ));
        // API keys, when configured: one authenticator for both front ends, whose keys a
        // reload can rotate.
        let auth = config.auth.policy()?;
        // Each front end's load-shedding bound, changeable by a reload.
        let http_in_flight = hexkv_resilience::InFlightLimit::new(limits.max_in_flight);
        let grpc_in_flight = hexkv_resilience::InFlightLimit::new(limits.max_in_flight);
        // The caps on open connections, over both listeners.
        let connections =
            serve::Connections::new(limits.max_connections, limits.max_connections_per_client);
        let descriptors = serve::raise_open_file_limit(limits.max_connections as u64 + 1_024);
        if let Some(available) = descriptors
            && available < limits.max_connections as u64 + 256
        {
            tracing::warn!(
                max_connections = limits.max_connections,
                open_file_limit = available,
                "limits.max_connections does not fit the open-file limit (RLIMIT_NOFILE): \
                 connections past it will fail; lower the cap or raise the limit"
            );
        }
        let mut servers = hexkv_platform::servers::Servers::new(
            limits.connection_limits(),
            Arc::clone(&connections),
        );

        #[cfg(feature = "http")]
        {
            let app = hexkv_http::router_with(
                Arc::clone(&api),
                hexkv_http::HttpOptions {
                    max_body_bytes: config.limits.max_value_bytes,
                    max_in_flight: config.limits.max_in_flight,
                    request_timeout: config.limits.request_timeout(),
                },
                hexkv_http::Extras {
                    throttle: Some(Arc::clone(&throttle)),
                    metrics: telemetry.as_ref().and_then(|t| t.metrics().cloned()),
                    in_flight: Some(Arc::clone(&http_in_flight)),
                    auth: auth.clone(),
                },
            );
            #[cfg(feature = "tls")]
            let transport = tls::transport(tls.as_ref(), &[b"h2", b"http/1.1"])?;
            #[cfg(not(feature = "tls"))]
            let transport = serve::Transport::Plain;
            servers.spawn("http", self.http.0, app, transport, serve::Protocols::Any);
        }
        #[cfg(feature = "grpc")]
        let grpc_health = {
            let services = hexkv_grpc::GrpcServices::new(
                Arc::clone(&api),
                hexkv_grpc::GrpcOptions {
                    max_value_bytes: config.limits.max_value_bytes,
                    max_in_flight: config.limits.max_in_flight,
                    request_timeout: config.limits.request_timeout(),
                    in_flight: Some(Arc::clone(&grpc_in_flight)),
                    auth: auth.clone(),
                    throttle: Some(Arc::clone(&throttle)),
                },
            )
            .await;
            let health = services.health();
            let observe = services.observe();
            let app = services
                .into_routes()
                .into_axum_router()
                .layer(hexkv_telemetry::ObserveLayer::new(observe));
            #[cfg(feature = "tls")]
            let transport = tls::transport(tls.as_ref(), &[b"h2"])?;
            #[cfg(not(feature = "tls"))]
            let transport = serve::Transport::Plain;
            servers.spawn("grpc", self.grpc.0, app, transport, serve::Protocols::Http2);
            health
        };
        for (front_end, addr) in &addresses {
            tracing::info!(front_end, %addr, "listening");
        }
        // Reloads start once the servers listen; the triggers stop with this scope.
        let _reload_triggers = match reload {
            None => None,
            Some(overrides) => {
                let live = reload::Live {
                    telemetry: telemetry.clone(),
                    throttle: Arc::clone(&throttle),
                    in_flight: vec![http_in_flight, grpc_in_flight],
                    breaker: breaker.clone(),
                    flags: Arc::clone(&flags),
                    authenticator: auth.as_ref().map(|a| Arc::clone(&a.authenticator)),
                };
                let reloader = Arc::new(reload::Reloader::new(overrides, config.clone(), live));
                Some(reload::spawn_triggers(reloader)?)
            }
        };

        // Readiness fails first (REST `/readyz`, gRPC health), then the listeners drain.
        let draining = async {
            service.begin_draining();
            #[cfg(feature = "grpc")]
            grpc_health.set_serving(false).await;
        };
        let served = servers
            .run(shutdown, draining, &config.shutdown, hurried)
            .await;

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

/// Follows the store breaker's state changes in the log and in the metrics
/// `hexkv_store_breaker_state` and `hexkv_store_breaker_transitions_total`.
fn observe_breaker((from, to): hexkv_resilience::breaker::Transition) {
    use hexkv_resilience::breaker::BreakerState;
    use hexkv_telemetry::metrics::{BREAKER_STATE, BREAKER_TRANSITIONS};

    let name = |state: BreakerState| match state {
        BreakerState::Closed => "closed",
        BreakerState::HalfOpen => "half_open",
        BreakerState::Open => "open",
    };
    let level = match to {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    metrics::gauge!(BREAKER_STATE).set(level);
    metrics::counter!(BREAKER_TRANSITIONS, "from" => name(from), "to" => name(to)).increment(1);
    if to == BreakerState::Open {
        tracing::warn!(
            from = name(from),
            to = name(to),
            "store circuit breaker opened"
        );
    } else {
        tracing::info!(
            from = name(from),
            to = name(to),
            "store circuit breaker changed state"
        );
    }
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
        let shared =
            Arc::new(CircuitBreaker::new(reload::breaker_config(r)).on_transition(observe_breaker));
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
