//! [`InstrumentedApi`]: a span around every call of the driving port, the "service" step of a
//! trace (request → service → store).

use std::sync::Arc;

use async_trait::async_trait;
use hexkv_core::{
    DeleteOutcome, Entry, Identity, Key, KeyValueApi, KvError, ListQuery, Page, Precondition,
    PutOutcome, Readiness, Value,
};
use tracing::Instrument;

/// Wraps a [`KeyValueApi`]: each call runs in a `service` span (at DEBUG: for traces, which
/// record it whatever `log.level` is, and for debug logs) named after the operation, with the
/// error kind recorded when it fails. Keys and values are not recorded.
pub struct InstrumentedApi {
    inner: Arc<dyn KeyValueApi>,
}

impl InstrumentedApi {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KeyValueApi>) -> Self {
        Self { inner }
    }
}

fn span(operation: &'static str) -> tracing::Span {
    tracing::debug_span!(
        target: hexkv_telemetry::PORT_SPANS,
        "service",
        otel.name = operation,
        operation,
        error = tracing::field::Empty,
    )
}

fn record<T>(span: &tracing::Span, result: &Result<T, KvError>) {
    if let Err(e) = result {
        let kind = match e {
            KvError::NotFound => "not_found",
            KvError::PreconditionFailed { .. } => "precondition_failed",
            KvError::InvalidKey(_) | KvError::InvalidValue(_) | KvError::InvalidQuery(_) => {
                "invalid"
            }
            KvError::Unavailable { .. } => "unavailable",
            KvError::OutcomeUnknown { .. } => "outcome_unknown",
            KvError::ReadOnly => "read_only",
            KvError::FeatureDisabled(_) => "feature_disabled",
            KvError::Internal(_) => "internal",
        };
        span.record("error", kind);
    }
}

#[async_trait]
impl KeyValueApi for InstrumentedApi {
    async fn get(&self, key: &Key) -> Result<Entry, KvError> {
        let span = span("service get");
        let result = self.inner.get(key).instrument(span.clone()).await;
        record(&span, &result);
        result
    }

    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, KvError> {
        let span = span("service put");
        let result = self
            .inner
            .put(key, value, precondition)
            .instrument(span.clone())
            .await;
        record(&span, &result);
        result
    }

    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, KvError> {
        let span = span("service delete");
        let result = self
            .inner
            .delete(key, precondition)
            .instrument(span.clone())
            .await;
        record(&span, &result);
        result
    }

    async fn list(&self, query: &ListQuery, client: &Identity) -> Result<Page, KvError> {
        let span = span("service list");
        let result = self
            .inner
            .list(query, client)
            .instrument(span.clone())
            .await;
        record(&span, &result);
        result
    }

    async fn readiness(&self) -> Readiness {
        self.inner.readiness().await
    }
}
