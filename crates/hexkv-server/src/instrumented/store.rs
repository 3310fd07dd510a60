//! [`InstrumentedStore`]: a span and a latency measurement around every call of the store port.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use hexkv_core::{
    DeleteOutcome, Entry, Key, KvStore, ListQuery, Page, Precondition, PutOutcome, StoreError,
    Value,
};
use tracing::Instrument;

/// Wraps a [`KvStore`]: each call runs in a `store` span (`db.system`, `db.operation`, at DEBUG,
/// so it costs nothing unless traces or debug logs want it) and its latency is recorded in
/// `hexkv_store_operation_duration_seconds{backend, operation, outcome}`, where the outcome is
/// `ok`, `precondition_failed`, `unavailable`, `outcome_unknown` or `internal`.
///
/// Placed directly around the backend, inside the resilience decorators, it measures the store
/// itself: each retry attempt is a call, and a call refused by an open breaker never reaches it.
///
/// Its histograms are registered when it is built (every operation and outcome, so the series
/// exist from the start and a call costs no registry lookup): install the metrics recorder
/// before building it.
pub struct InstrumentedStore {
    inner: Arc<dyn KvStore>,
    backend: &'static str,
    /// By operation, then outcome (the orders of `OPERATIONS` and `OUTCOMES`).
    histograms: Vec<Vec<metrics::Histogram>>,
}

const OPERATIONS: [&str; 5] = ["get", "put", "delete", "list", "check"];
const OUTCOMES: [&str; 5] = [
    "ok",
    "precondition_failed",
    "unavailable",
    "internal",
    "outcome_unknown",
];

impl InstrumentedStore {
    /// Wraps `inner`; `backend` names it in spans (`db.system`) and metrics (`postgresql`,
    /// `memory`).
    pub fn new(inner: Arc<dyn KvStore>, backend: &'static str) -> Self {
        let histograms = OPERATIONS
            .iter()
            .map(|operation| {
                OUTCOMES
                    .iter()
                    .map(|outcome| {
                        metrics::histogram!(
                            hexkv_telemetry::metrics::STORE_DURATION,
                            "backend" => backend,
                            "operation" => *operation,
                            "outcome" => *outcome,
                        )
                    })
                    .collect()
            })
            .collect();
        Self {
            inner,
            backend,
            histograms,
        }
    }

    async fn observe<T>(
        &self,
        op: usize,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let operation = OPERATIONS[op];
        let span = tracing::debug_span!(
            target: hexkv_telemetry::PORT_SPANS,
            "store",
            otel.name = %format_args!("store {operation}"),
            otel.kind = "client",
            db.system = self.backend,
            db.operation = operation,
            outcome = tracing::field::Empty,
        );
        let start = Instant::now();
        let result = call.instrument(span.clone()).await;
        let outcome = match &result {
            Ok(_) => 0,
            Err(StoreError::PreconditionFailed { .. }) => 1,
            Err(StoreError::Unavailable { .. }) => 2,
            Err(StoreError::Internal(_)) => 3,
            Err(StoreError::OutcomeUnknown { .. }) => 4,
        };
        span.record("outcome", OUTCOMES[outcome]);
        self.histograms[op][outcome].record(start.elapsed().as_secs_f64());
        result
    }
}

#[async_trait]
impl KvStore for InstrumentedStore {
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        self.observe(0, self.inner.get(key)).await
    }

    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        self.observe(1, self.inner.put(key, value, precondition))
            .await
    }

    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError> {
        self.observe(2, self.inner.delete(key, precondition)).await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.observe(3, self.inner.list(query)).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.observe(4, self.inner.check()).await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hexkv_core::MockKvStore;

    #[tokio::test]
    async fn records_each_call_with_its_outcome() {
        let mut mock = MockKvStore::new();
        mock.expect_get().times(1).returning(|_| Ok(None));
        mock.expect_check()
            .times(2)
            .returning(|| Err(StoreError::unavailable("down")));
        let (recorder, metrics) = hexkv_telemetry::Metrics::local().unwrap();
        let guard = metrics::set_default_local_recorder(&recorder);
        let store = InstrumentedStore::new(Arc::new(mock), "memory");
        assert!(store.get(&Key::new("k").unwrap()).await.unwrap().is_none());
        assert!(store.check().await.is_err());
        assert!(store.check().await.is_err());
        drop(guard);
        let text = metrics.render();
        let count = |labels: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "hexkv_store_operation_duration_seconds_count{{{labels}}}"
                    ))
                })
                .and_then(|l| l.rsplit(' ').next())
                .map(|n| n.to_owned())
        };
        assert_eq!(
            count(r#"backend="memory",operation="get",outcome="ok""#).as_deref(),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            count(r#"backend="memory",operation="check",outcome="unavailable""#).as_deref(),
            Some("2"),
            "{text}"
        );
    }
}
