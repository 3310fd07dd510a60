//! A decorator of the port with hexkv-resilience's guards: each call under a timeout, reads
//! retried with backoff and jitter, and a circuit breaker in front, so a store in trouble is
//! refused fast instead of piling up requests. It implements the same port, so the service never
//! knows. The guards are generic over any port; what a port adds is [`CounterErrors`], which
//! says what its errors mean.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hexkv_resilience::{
    BreakerConfig, CircuitBreaker, Guards, Operation, Outcome, PortErrors, RetryPolicy,
};

use crate::{CounterName, CounterStore, StoreError};

/// What the port's errors mean to the guards.
pub struct CounterErrors;

impl PortErrors for CounterErrors {
    type Error = StoreError;

    fn refused(reason: String, _retry_after: Option<Duration>) -> StoreError {
        StoreError::Unavailable(reason)
    }

    /// `Unavailable` covers an add whose answer was lost.
    fn outcome_unknown(reason: String) -> StoreError {
        StoreError::Unavailable(reason)
    }

    /// An overflow is the store answering: it works.
    fn health(error: &StoreError) -> Outcome {
        match error {
            StoreError::Unavailable(_) => Outcome::Failure,
            StoreError::Overflow => Outcome::Success,
        }
    }

    fn is_transient(error: &StoreError) -> bool {
        matches!(error, StoreError::Unavailable(_))
    }

    /// The port cannot tell a refused add from a lost one.
    fn changed_nothing(_: &StoreError) -> bool {
        false
    }

    fn retry_after(_: &StoreError) -> Option<Duration> {
        None
    }
}

/// The decorator.
pub struct ResilientCounters {
    inner: Arc<dyn CounterStore>,
    guards: Guards<CounterErrors>,
}

impl ResilientCounters {
    /// Wraps `inner`: `timeout` per attempt, reads retried per `retry`, the breaker's settings.
    pub fn new(
        inner: Arc<dyn CounterStore>,
        timeout: Duration,
        retry: RetryPolicy,
        breaker: BreakerConfig,
    ) -> Self {
        let guards = Guards::new()
            .with_retry(retry)
            .with_breaker(Arc::new(
                CircuitBreaker::new(breaker)
                    .on_transition(hexkv_platform::resilience::observe_breaker),
            ))
            .with_timeout(timeout);
        Self { inner, guards }
    }
}

#[async_trait]
impl CounterStore for ResilientCounters {
    /// An add is not idempotent: a lost answer may hide an applied add, so it is not retried.
    async fn add(&self, name: &CounterName, delta: i64) -> Result<i64, StoreError> {
        self.guards
            .call(Operation::Write, || self.inner.add(name, delta))
            .await
    }

    async fn get(&self, name: &CounterName) -> Result<Option<i64>, StoreError> {
        self.guards
            .call(Operation::Read, || self.inner.get(name))
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A store that never answers, counting the calls that reach it.
    #[derive(Default)]
    struct Hung {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl CounterStore for Hung {
        async fn add(&self, _: &CounterName, _: i64) -> Result<i64, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
        async fn get(&self, _: &CounterName) -> Result<Option<i64>, StoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            std::future::pending().await
        }
    }

    fn decorated(store: Arc<Hung>) -> ResilientCounters {
        ResilientCounters::new(
            store,
            Duration::from_millis(100),
            RetryPolicy::default(),
            BreakerConfig {
                consecutive_failures: 2,
                ..BreakerConfig::default()
            },
        )
    }

    /// Paused tokio time: the timeouts and backoff elapse without the test waiting.
    #[tokio::test(start_paused = true)]
    async fn a_hung_store_times_out_reads_retry_and_the_breaker_opens() {
        let store = Arc::new(Hung::default());
        let counters = decorated(Arc::clone(&store));
        let name = CounterName::new("hits").unwrap();
        let started = tokio::time::Instant::now();
        let err = counters.get(&name).await.unwrap_err();
        // Two attempts timed out; the breaker then refused the retries without calling the store.
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
        assert!(
            matches!(&err, StoreError::Unavailable(why) if why.contains("circuit open")),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        // Open: refused at once.
        let err = counters.get(&name).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert_eq!(store.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_add_is_never_retried() {
        let store = Arc::new(Hung::default());
        let counters = decorated(Arc::clone(&store));
        let err = counters
            .add(&CounterName::new("hits").unwrap(), 1)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable(why) if why.contains("within 100 ms")),
            "{err:?}"
        );
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    }
}
