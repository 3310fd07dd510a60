//! A decorator of the port with hexkv-resilience's patterns: each call under a timeout, reads
//! retried with backoff and jitter, and a circuit breaker in front, so a store in trouble is
//! refused fast instead of piling up requests. It implements the same port, so the service never
//! knows (hexkv's `ResilientStore` does the same for `KvStore`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hexkv_resilience::{BreakerConfig, CircuitBreaker, Outcome, RetryPolicy, retry};

use crate::{CounterName, CounterStore, StoreError};

/// The decorator.
pub struct ResilientCounters {
    inner: Arc<dyn CounterStore>,
    timeout: Duration,
    retry: RetryPolicy,
    breaker: CircuitBreaker,
}

impl ResilientCounters {
    /// Wraps `inner`: `timeout` per attempt, reads retried per `retry`, the breaker's settings.
    pub fn new(
        inner: Arc<dyn CounterStore>,
        timeout: Duration,
        retry: RetryPolicy,
        breaker: BreakerConfig,
    ) -> Self {
        Self {
            inner,
            timeout,
            retry,
            breaker: CircuitBreaker::new(breaker),
        }
    }

    /// One attempt through the breaker and under the timeout.
    async fn attempt<T>(
        &self,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let permit = self.breaker.acquire().map_err(|rejected| {
            StoreError::Unavailable(format!("circuit open; retry in {:?}", rejected.retry_after))
        })?;
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable("the store timed out".into())),
        };
        permit.record(match &result {
            Err(StoreError::Unavailable(_)) => Outcome::Failure,
            Err(StoreError::Overflow) | Ok(_) => Outcome::Success,
        });
        result
    }
}

#[async_trait]
impl CounterStore for ResilientCounters {
    async fn add(&self, name: &CounterName, delta: i64) -> Result<i64, StoreError> {
        // An add is not idempotent: a lost answer may hide an applied add, so it is not retried.
        retry::run(&self.retry, retry::Operation::Write, || {
            self.attempt(self.inner.add(name, delta))
        })
        .await
    }

    async fn get(&self, name: &CounterName) -> Result<Option<i64>, StoreError> {
        retry::run(&self.retry, retry::Operation::Idempotent, || {
            self.attempt(self.inner.get(name))
        })
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
        assert_eq!(err, StoreError::Unavailable("the store timed out".into()));
        assert_eq!(store.calls.load(Ordering::SeqCst), 1);
    }
}
