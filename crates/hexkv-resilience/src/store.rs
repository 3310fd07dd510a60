//! Decorators of the driven port: each is a `KvStore` around a `KvStore`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hexkv_core::{
    DeleteOutcome, Entry, Key, KvStore, ListQuery, Page, Precondition, PutOutcome, StoreError,
    Value,
};
use tokio::sync::Semaphore;

use crate::breaker::{BreakerConfig, CircuitBreaker, Outcome};
use crate::debounce::First;
use crate::retry::{self, Operation, RetryPolicy, Retryable};

impl Retryable for StoreError {
    /// `Unavailable` promises the operation did not take effect. (`OutcomeUnknown` is not
    /// retried here at all: the service reports it as it is.)
    fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    fn changed_nothing(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            StoreError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Whether a guarded call can change the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Read,
    Write,
}

/// Forwards every operation through `$self.guard(...)`, and `close` straight to the inner store.
macro_rules! decorate {
    ($ty:ty) => {
        #[async_trait]
        impl KvStore for $ty {
            async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
                self.guard(Call::Read, self.inner.get(key)).await
            }
            async fn put(
                &self,
                key: Key,
                value: Value,
                precondition: Precondition,
            ) -> Result<PutOutcome, StoreError> {
                self.guard(Call::Write, self.inner.put(key, value, precondition))
                    .await
            }
            async fn delete(
                &self,
                key: &Key,
                precondition: Precondition,
            ) -> Result<DeleteOutcome, StoreError> {
                self.guard(Call::Write, self.inner.delete(key, precondition))
                    .await
            }
            async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
                self.guard(Call::Read, self.inner.list(query)).await
            }
            async fn check(&self) -> Result<(), StoreError> {
                self.guard(Call::Read, self.inner.check()).await
            }
            async fn close(&self) -> Result<(), StoreError> {
                self.inner.close().await
            }
        }
    };
}

/// Fails a call that takes longer than `limit`, and cancels it: the inner future is dropped, so
/// no work is left running. A read fails with `Unavailable`; a write with `OutcomeUnknown`, since
/// the store may have applied it before the answer was given up on.
pub struct TimeoutStore {
    inner: Arc<dyn KvStore>,
    limit: Duration,
}

impl TimeoutStore {
    /// Wraps `inner` with a per-call time limit.
    pub fn new(inner: Arc<dyn KvStore>, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn guard<T>(
        &self,
        kind: Call,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.limit, call).await {
            Ok(result) => result,
            Err(_) => {
                let reason = format!(
                    "the store did not answer within {} ms",
                    self.limit.as_millis()
                );
                Err(match kind {
                    Call::Read => StoreError::Unavailable {
                        reason,
                        retry_after: Some(Duration::from_secs(1)),
                    },
                    Call::Write => StoreError::OutcomeUnknown { reason },
                })
            }
        }
    }
}

decorate!(TimeoutStore);

/// Retries transient failures (`Unavailable`) of idempotent operations — `get`, `list`, `check`,
/// and `delete` without a precondition — with backoff and jitter (see [`crate::retry`]); writes
/// only if the policy says `retry_writes`. A write whose outcome is unknown is never retried. A refusal of an open breaker below carries the time
/// until its probe, which the retry honours or, past `max_elapsed`, gives up on at once.
pub struct RetryStore {
    inner: Arc<dyn KvStore>,
    policy: RetryPolicy,
}

/// A put's kind, for retries.
fn operation(precondition: Precondition) -> Operation {
    match precondition {
        Precondition::None => Operation::Write,
        _ => Operation::Conditional,
    }
}

impl RetryStore {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: Arc<dyn KvStore>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

#[async_trait]
impl KvStore for RetryStore {
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        retry::run(&self.policy, Operation::Idempotent, || self.inner.get(key)).await
    }
    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        retry::run(&self.policy, operation(precondition), || {
            self.inner.put(key.clone(), value.clone(), precondition)
        })
        .await
    }
    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError> {
        let operation = match precondition {
            Precondition::None => Operation::Idempotent,
            _ => Operation::Conditional,
        };
        retry::run(&self.policy, operation, || {
            self.inner.delete(key, precondition)
        })
        .await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        retry::run(&self.policy, Operation::Idempotent, || {
            self.inner.list(query)
        })
        .await
    }
    async fn check(&self) -> Result<(), StoreError> {
        retry::run(&self.policy, Operation::Idempotent, || self.inner.check()).await
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

/// Refuses calls at once while the store keeps failing (see [`crate::breaker`]). Counted
/// failures: `Unavailable` (which includes timeouts from an inner [`TimeoutStore`]). A failed
/// precondition or a missing key proves the store works; an internal error says nothing about
/// its availability.
pub struct BreakerStore {
    inner: Arc<dyn KvStore>,
    breaker: Arc<CircuitBreaker>,
}

impl BreakerStore {
    /// Wraps `inner` with a new breaker.
    pub fn new(inner: Arc<dyn KvStore>, config: BreakerConfig) -> Self {
        Self::with_breaker(inner, Arc::new(CircuitBreaker::new(config)))
    }

    /// Wraps `inner` with `breaker` (to observe its transitions, or share it).
    pub fn with_breaker(inner: Arc<dyn KvStore>, breaker: Arc<CircuitBreaker>) -> Self {
        Self { inner, breaker }
    }

    /// The breaker.
    pub fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    async fn guard<T>(
        &self,
        _: Call,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let permit = self
            .breaker
            .acquire()
            .map_err(|rejected| StoreError::Unavailable {
                reason: "the store failed repeatedly; calls are paused (circuit open)".into(),
                retry_after: Some(rejected.retry_after.max(Duration::from_millis(1))),
            })?;
        let result = call.await;
        permit.record(match &result {
            Ok(_) | Err(StoreError::PreconditionFailed { .. }) => Outcome::Success,
            Err(StoreError::Unavailable { .. } | StoreError::OutcomeUnknown { .. }) => {
                Outcome::Failure
            }
            Err(StoreError::Internal(_)) => Outcome::Ignored,
        });
        result
    }
}

decorate!(BreakerStore);

/// Bounds the calls in flight to the store; a call that cannot get a slot within `max_wait`
/// (at once when zero) fails with `Unavailable`, so a slow store cannot tie up every task and
/// socket of the service.
pub struct BulkheadStore {
    inner: Arc<dyn KvStore>,
    slots: Semaphore,
    max_in_flight: usize,
    max_wait: Duration,
}

impl BulkheadStore {
    /// Wraps `inner`, allowing `max_in_flight` concurrent calls.
    pub fn new(inner: Arc<dyn KvStore>, max_in_flight: usize, max_wait: Duration) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            inner,
            slots: Semaphore::new(max_in_flight),
            max_in_flight,
            max_wait,
        }
    }

    async fn guard<T>(
        &self,
        _: Call,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let slot = if self.max_wait.is_zero() {
            self.slots.try_acquire().ok()
        } else {
            tokio::time::timeout(self.max_wait, self.slots.acquire())
                .await
                .ok()
                .and_then(Result::ok)
        };
        let Some(_slot) = slot else {
            return Err(StoreError::Unavailable {
                reason: format!(
                    "the store already has {} calls in flight",
                    self.max_in_flight
                ),
                retry_after: Some(Duration::from_secs(1)),
            });
        };
        call.await
    }
}

decorate!(BulkheadStore);

/// Serves the result of the store's readiness `check` for `window` after each real check
/// ([`First`]), so a storm of readiness probes costs the store one check per window. Every other
/// operation passes through. A failure is kept as long as a success: the store was unready a
/// moment ago, which is what a probe should report.
pub struct CheckCacheStore {
    inner: Arc<dyn KvStore>,
    checks: First<Result<(), String>>,
    timeout: Option<Duration>,
}

impl CheckCacheStore {
    /// Wraps `inner`, caching its `check` for `window`.
    pub fn new(inner: Arc<dyn KvStore>, window: Duration) -> Self {
        Self {
            inner,
            checks: First::new(window),
            timeout: None,
        }
    }

    /// Fails a check that takes longer than `limit` (a readiness probe must answer quickly
    /// even when the store hangs; the failure is cached like any other result).
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

#[async_trait]
impl KvStore for CheckCacheStore {
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        self.inner.put(key, value, precondition).await
    }
    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError> {
        self.inner.delete(key, precondition).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.inner.list(query).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.checks
            .call(|| async {
                let check = self.inner.check();
                let result = match self.timeout {
                    None => check.await,
                    Some(limit) => tokio::time::timeout(limit, check)
                        .await
                        .unwrap_or_else(|_| {
                            Err(StoreError::unavailable(format!(
                                "the store check did not answer within {} ms",
                                limit.as_millis()
                            )))
                        }),
                };
                result.map_err(|e| match e {
                    StoreError::Unavailable { reason, .. } => reason,
                    other => other.to_string(),
                })
            })
            .await
            .map_err(|reason| StoreError::Unavailable {
                reason,
                retry_after: None,
            })
    }
    async fn close(&self) -> Result<(), StoreError> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use hexkv_core::{MockKvStore, Version};

    use super::*;

    fn key() -> Key {
        Key::new("k").unwrap()
    }

    fn unavailable() -> StoreError {
        StoreError::Unavailable {
            reason: "down".into(),
            retry_after: None,
        }
    }

    /// A store whose calls never finish; it notes when a call's future is dropped.
    struct Stuck {
        started: AtomicUsize,
        dropped: Arc<AtomicBool>,
    }

    struct DropFlag(Arc<AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl KvStore for Stuck {
        async fn get(&self, _: &Key) -> Result<Option<Entry>, StoreError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let _flag = DropFlag(Arc::clone(&self.dropped));
            std::future::pending().await
        }
        async fn put(&self, _: Key, _: Value, _: Precondition) -> Result<PutOutcome, StoreError> {
            std::future::pending().await
        }
        async fn delete(&self, _: &Key, _: Precondition) -> Result<DeleteOutcome, StoreError> {
            std::future::pending().await
        }
        async fn list(&self, _: &ListQuery) -> Result<Page, StoreError> {
            std::future::pending().await
        }
        async fn check(&self) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn close(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn stuck() -> (Arc<Stuck>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        let store = Arc::new(Stuck {
            started: AtomicUsize::new(0),
            dropped: Arc::clone(&dropped),
        });
        (store, dropped)
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_fails_the_call_and_cancels_the_inner_future() {
        let (inner, dropped) = stuck();
        let store = TimeoutStore::new(inner, Duration::from_millis(250));
        let started = tokio::time::Instant::now();
        let err = store.get(&key()).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        assert!(
            matches!(&err, StoreError::Unavailable { reason, .. } if reason.contains("250 ms")),
            "{err:?}"
        );
        assert!(
            dropped.load(Ordering::SeqCst),
            "the inner call was cancelled"
        );
    }

    /// A write given up on may still be applied below: it is not reported as refused.
    #[tokio::test(start_paused = true)]
    async fn a_write_past_the_timeout_has_an_unknown_outcome() {
        let (inner, _) = stuck();
        let store = TimeoutStore::new(inner, Duration::from_millis(250));
        let put = store
            .put(
                key(),
                Value::from("v"),
                Precondition::Version(Version::new(3)),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&put, StoreError::OutcomeUnknown { reason } if reason.contains("250 ms")),
            "{put:?}"
        );
        let delete = store.delete(&key(), Precondition::None).await.unwrap_err();
        assert!(
            matches!(delete, StoreError::OutcomeUnknown { .. }),
            "{delete:?}"
        );
        // And the retry decorator does not retry it, unlike a refusal.
        assert!(!crate::Retryable::is_transient(&put));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_within_the_limit_pass_untouched() {
        let mut inner = MockKvStore::new();
        inner
            .expect_delete()
            .returning(|_, _| Err(StoreError::PreconditionFailed { current: None }));
        let store = TimeoutStore::new(Arc::new(inner), Duration::from_millis(250));
        assert!(matches!(
            store.delete(&key(), Precondition::Absent).await,
            Err(StoreError::PreconditionFailed { current: None })
        ));
    }

    fn breaker_config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            window: 0,
            open_delay: Duration::from_secs(2),
            ..BreakerConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_fails_fast_without_touching_the_store_and_recovers_by_a_probe() {
        let mut inner = MockKvStore::new();
        let mut seq = mockall::Sequence::new();
        inner
            .expect_get()
            .times(3)
            .in_sequence(&mut seq)
            .returning(|_| Err(unavailable()));
        // While open, the store is not called at all; then the probe succeeds.
        inner
            .expect_get()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(None));
        let store = BreakerStore::new(Arc::new(inner), breaker_config());
        for _ in 0..3 {
            store.get(&key()).await.unwrap_err();
        }
        for _ in 0..10 {
            match store.get(&key()).await {
                Err(StoreError::Unavailable {
                    retry_after: Some(after),
                    reason,
                }) => {
                    assert!(reason.contains("circuit open"));
                    assert!(after <= Duration::from_secs(2));
                }
                other => panic!("expected a fast refusal, got {other:?}"),
            }
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(store.get(&key()).await.unwrap(), None, "the probe");
        assert_eq!(store.breaker().state(), crate::BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_prove_the_store_works_do_not_trip_it() {
        let mut inner = MockKvStore::new();
        inner
            .expect_put()
            .returning(|_, _, _| Err(StoreError::PreconditionFailed { current: None }));
        inner
            .expect_list()
            .returning(|_| Err(StoreError::internal("a bug")));
        let store = BreakerStore::new(Arc::new(inner), breaker_config());
        for _ in 0..10 {
            store
                .put(
                    key(),
                    Value::new("v"),
                    Precondition::Version(Version::new(1)),
                )
                .await
                .unwrap_err();
            store
                .list(&ListQuery::new("", None, None).unwrap())
                .await
                .unwrap_err();
        }
        assert_eq!(store.breaker().state(), crate::BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_storm_costs_one_check_per_window() {
        let mut inner = MockKvStore::new();
        let mut seq = mockall::Sequence::new();
        inner
            .expect_check()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|| Ok(()));
        inner
            .expect_check()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|| Err(unavailable()));
        let store = CheckCacheStore::new(Arc::new(inner), Duration::from_secs(1));
        for _ in 0..100 {
            store.check().await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..100 {
            let err = store.check().await.unwrap_err();
            assert!(matches!(err, StoreError::Unavailable { .. }));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_check_fails_after_its_timeout() {
        let (inner, _) = stuck();
        let store = CheckCacheStore::new(inner, Duration::from_secs(1))
            .with_timeout(Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        let err = store.check().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert!(err.to_string().contains("within 300 ms"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_retried_and_writes_are_not() {
        let mut inner = MockKvStore::new();
        let mut seq = mockall::Sequence::new();
        inner
            .expect_get()
            .times(2)
            .in_sequence(&mut seq)
            .returning(|_| Err(unavailable()));
        inner
            .expect_get()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(None));
        inner
            .expect_put()
            .times(1)
            .returning(|_, _, _| Err(unavailable()));
        inner
            .expect_delete()
            .times(1)
            .returning(|_, _| Err(StoreError::PreconditionFailed { current: None }));
        let store = RetryStore::new(Arc::new(inner), RetryPolicy::default());
        assert_eq!(store.get(&key()).await.unwrap(), None, "third attempt");
        store
            .put(key(), Value::new("v"), Precondition::None)
            .await
            .unwrap_err();
        // Not transient: one call.
        store
            .delete(&key(), Precondition::Version(Version::new(3)))
            .await
            .unwrap_err();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bulkhead_refuses_at_once_or_after_the_wait() {
        let (inner, _) = stuck();
        let store = Arc::new(BulkheadStore::new(
            Arc::clone(&inner) as Arc<dyn KvStore>,
            2,
            Duration::ZERO,
        ));
        let busy: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.get(&key()).await })
            })
            .collect();
        tokio::task::yield_now().await;
        while inner.started.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        let started = tokio::time::Instant::now();
        let err = store.get(&key()).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::ZERO, "refused at once");
        assert!(
            matches!(&err, StoreError::Unavailable { reason, .. } if reason.contains("2 calls"))
        );
        assert_eq!(
            inner.started.load(Ordering::SeqCst),
            2,
            "the third never reached the store"
        );

        let waiting = BulkheadStore::new(
            Arc::clone(&inner) as Arc<dyn KvStore>,
            1,
            Duration::from_millis(300),
        );
        let first = async { waiting.get(&key()).await };
        let second = async {
            tokio::task::yield_now().await;
            let started = tokio::time::Instant::now();
            let err = waiting.get(&key()).await.unwrap_err();
            assert_eq!(
                started.elapsed(),
                Duration::from_millis(300),
                "waited, then refused"
            );
            err
        };
        tokio::select! {
            _ = first => panic!("the stuck call finished"),
            err = second => assert!(matches!(err, StoreError::Unavailable { .. })),
        }
        for task in busy {
            task.abort();
        }
    }
}
