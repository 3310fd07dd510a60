//! Which adapter of the store port serves, by configuration (`store.backend`) among those the
//! binary was built with (cargo features `memory`, `postgres`), behind the resilience decorator.

use std::sync::Arc;
use std::time::Duration;

use crate::CounterStore;
use crate::resilient::ResilientCounters;
use crate::settings::{Backend, StoreSettings};

/// Opens the configured adapter and puts it behind its guards: a one-second timeout per
/// attempt, retries of reads, a circuit breaker.
///
/// # Errors
/// When the adapter cannot be opened, or was not built (the settings' validation refuses that
/// first, naming `store.backend`).
pub async fn open(settings: &StoreSettings) -> anyhow::Result<Arc<dyn CounterStore>> {
    let store: Arc<dyn CounterStore> = match settings.backend {
        #[cfg(feature = "memory")]
        Backend::Memory => Arc::new(crate::memory::MemoryCounters::default()),
        #[cfg(feature = "postgres")]
        Backend::Postgres => Arc::new(
            crate::postgres::PostgresCounters::connect(settings.postgres_url.expose()).await?,
        ),
        #[allow(unreachable_patterns)]
        backend => anyhow::bail!("store.backend = {backend:?}: not built into this binary"),
    };
    Ok(Arc::new(ResilientCounters::new(
        store,
        Duration::from_secs(1),
        hexkv_resilience::RetryPolicy::default(),
        hexkv_resilience::BreakerConfig::default(),
    )))
}
