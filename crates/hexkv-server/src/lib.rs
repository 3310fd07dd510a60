//! hexkv's composition root: builds the adapters from [`Config`], wires them to the core, and
//! runs them until shutdown.
//!
//! This is the only crate that knows every adapter, and it knows them through cargo features:
//! `http` (the REST front end) and `memory` (the embedded store). `main` stays thin: it parses the
//! command line, loads the configuration and calls [`Application::build`] and
//! [`Application::run`]; tests do the same with port 0 and read the bound address back.
//!
//! # Shutdown
//! When the shutdown future resolves (SIGINT or SIGTERM in the binary):
//! 1. the service starts draining: `/readyz` answers 503;
//! 2. it keeps serving for `shutdown.readiness_delay_ms` so load balancers notice;
//! 3. the listener closes and in-flight requests get `shutdown.drain_timeout_ms` to finish;
//! 4. the store is closed: the log's last batch is written and synced.

#[cfg(not(feature = "http"))]
compile_error!("hexkv-server needs a front end: enable the `http` feature");
#[cfg(not(feature = "memory"))]
compile_error!("hexkv-server needs a store: enable the `memory` feature");

pub mod config;
pub mod telemetry;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use hexkv_core::{KeyValueApi, KeyValueService, KvStore, Limits};
use tokio::net::TcpListener;

pub use config::Config;

/// The service, built and bound, not yet serving.
pub struct Application {
    config: Config,
    service: Arc<KeyValueService>,
    store: Arc<dyn KvStore>,
    http: TcpListener,
    http_addr: SocketAddr,
}

impl Application {
    /// Opens the store and binds the listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        let limits = Limits {
            max_value_bytes: config.limits.max_value_bytes,
        };
        let service = Arc::new(KeyValueService::new(Arc::clone(&store), limits));
        let http = TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
        let http_addr = http.local_addr()?;
        Ok(Self {
            config,
            service,
            store,
            http,
            http_addr,
        })
    }

    /// The address the REST API is bound to (useful with port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully (see the module docs).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            config,
            service,
            store,
            http,
            http_addr,
        } = self;
        let router = hexkv_http::router(
            Arc::clone(&service) as Arc<dyn KeyValueApi>,
            hexkv_http::HttpOptions {
                max_body_bytes: config.limits.max_value_bytes,
            },
        );
        tracing::info!(http = %http_addr, "hexkv is serving");

        let (closing_tx, closing_rx) = tokio::sync::oneshot::channel::<()>();
        let readiness_delay = config.shutdown.readiness_delay();
        let draining = Arc::clone(&service);
        let stop = async move {
            shutdown.await;
            tracing::info!(
                readiness_delay_ms = readiness_delay.as_millis() as u64,
                "shutdown requested: readiness now fails"
            );
            draining.begin_draining();
            tokio::time::sleep(readiness_delay).await;
            tracing::info!("closing the listener; draining in-flight requests");
            let _ = closing_tx.send(());
        };
        let mut server = tokio::spawn(
            axum::serve(http, router)
                .with_graceful_shutdown(stop)
                .into_future(),
        );
        let drain_timeout = config.shutdown.drain_timeout();
        let deadline = async move {
            if closing_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(drain_timeout).await;
        };
        let served = tokio::select! {
            result = &mut server => result.context("the HTTP server task failed")?.context("the HTTP server failed"),
            () = deadline => {
                tracing::warn!(drain_timeout_ms = drain_timeout.as_millis() as u64, "drain deadline passed; cutting the remaining requests");
                server.abort();
                Ok(())
            }
        };

        let closed = store.close().await;
        match &closed {
            Ok(()) => tracing::info!("store closed; shutdown complete"),
            Err(e) => tracing::error!(error = %e, "closing the store failed"),
        }
        served?;
        closed.context("closing the store failed")?;
        Ok(())
    }
}

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn KvStore>> {
    use hexkv_store_memory::{DurableOptions, FsyncPolicy, MemoryStore};

    use crate::config::{Backend, Fsync};

    match config.store.backend {
        Backend::Memory => {
            let memory = &config.store.memory;
            if memory.ephemeral {
                tracing::warn!("store.memory.ephemeral = true: nothing is kept across restarts");
                return Ok(Arc::new(MemoryStore::ephemeral(memory.shards)));
            }
            let options = DurableOptions {
                dir: memory.data_dir.clone(),
                fsync: match memory.fsync {
                    Fsync::Always => FsyncPolicy::Always,
                    Fsync::Interval => FsyncPolicy::Interval(std::time::Duration::from_millis(
                        memory.fsync_interval_ms,
                    )),
                    Fsync::Never => FsyncPolicy::Never,
                },
                repair: memory.repair,
                shards: memory.shards,
            };
            let started = Instant::now();
            let (store, report) = tokio::task::spawn_blocking(move || MemoryStore::open(&options))
                .await
                .context("opening the store panicked")??;
            tracing::info!(
                path = %report.path.display(),
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
    }
}
