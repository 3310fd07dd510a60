//! The store behind its guards: the one decorator of the driven port, in plain code.
//!
//! [`GuardedStore`] calls each operation of the store through [`hexkv_resilience::Guards`]
//! (retry → circuit breaker → timeout → bulkhead → the store), naming what the operation does to
//! the data, and serves readiness checks from a short cache ([`First`]) so a storm of probes costs
//! the store one check per window. [`StoreErrors`] tells the generic guards what each
//! [`StoreError`] means. See `docs/resilience.md`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hexkv_core::{
    DeleteOutcome, Entry, Key, KvStore, ListQuery, Page, Precondition, PutOutcome, StoreError,
    Value,
};
use hexkv_resilience::debounce::First;
use hexkv_resilience::{Guards, Operation, Outcome, PortErrors};

/// What a [`StoreError`] means to the guards.
pub struct StoreErrors;

impl PortErrors for StoreErrors {
    type Error = StoreError;

    fn refused(reason: String, retry_after: Option<Duration>) -> StoreError {
        StoreError::Unavailable {
            reason,
            retry_after,
        }
    }

    fn outcome_unknown(reason: String) -> StoreError {
        StoreError::OutcomeUnknown { reason }
    }

    /// A failed precondition proves the store works; an internal error (a bug) says nothing of
    /// its availability.
    fn health(error: &StoreError) -> Outcome {
        match error {
            StoreError::PreconditionFailed { .. } => Outcome::Success,
            StoreError::Unavailable { .. } | StoreError::OutcomeUnknown { .. } => Outcome::Failure,
            StoreError::Internal(_) => Outcome::Ignored,
        }
    }

    /// `Unavailable` promises the call did not take effect. `OutcomeUnknown` is never retried:
    /// the service reports it as it is.
    fn is_transient(error: &StoreError) -> bool {
        matches!(error, StoreError::Unavailable { .. })
    }

    fn changed_nothing(error: &StoreError) -> bool {
        matches!(error, StoreError::Unavailable { .. })
    }

    fn retry_after(error: &StoreError) -> Option<Duration> {
        match error {
            StoreError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The readiness checks' cache.
struct Checks {
    recent: First<Result<(), String>>,
    timeout: Option<Duration>,
}

/// A store whose calls go through guards; see the module documentation.
pub struct GuardedStore {
    inner: Arc<dyn KvStore>,
    guards: Guards<StoreErrors>,
    checks: Option<Checks>,
}

impl GuardedStore {
    /// Calls `inner` through `guards`; checks are not cached.
    pub fn new(inner: Arc<dyn KvStore>, guards: Guards<StoreErrors>) -> Self {
        Self {
            inner,
            guards,
            checks: None,
        }
    }

    /// Serves the result of a readiness check for `window` after each real one (a failure as
    /// long as a success: the store was unready a moment ago, which is what a probe should
    /// report), and fails a check that takes longer than `timeout`, so a probe answers quickly
    /// even when the store hangs.
    pub fn with_check_cache(mut self, window: Duration, timeout: Option<Duration>) -> Self {
        self.checks = Some(Checks {
            recent: First::new(window),
            timeout,
        });
        self
    }

    /// The guards.
    pub fn guards(&self) -> &Guards<StoreErrors> {
        &self.guards
    }

    async fn guarded_check(&self) -> Result<(), StoreError> {
        self.guards
            .call(Operation::Read, || self.inner.check())
            .await
    }
}

/// A write's kind, for the guards: one with a precondition is conditional.
fn write(precondition: Precondition, unconditional: Operation) -> Operation {
    match precondition {
        Precondition::None => unconditional,
        _ => Operation::Conditional,
    }
}

#[async_trait]
impl KvStore for GuardedStore {
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        self.guards
            .call(Operation::Read, || self.inner.get(key))
            .await
    }

    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        self.guards
            .call(write(precondition, Operation::Write), || {
                self.inner.put(key.clone(), value.clone(), precondition)
            })
            .await
    }

    /// Deleting twice is deleting once, so an unconditional delete is idempotent.
    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError> {
        self.guards
            .call(write(precondition, Operation::Idempotent), || {
                self.inner.delete(key, precondition)
            })
            .await
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        self.guards
            .call(Operation::Read, || self.inner.list(query))
            .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let Some(checks) = &self.checks else {
            return self.guarded_check().await;
        };
        checks
            .recent
            .call(|| async {
                let result = match checks.timeout {
                    None => self.guarded_check().await,
                    Some(limit) => tokio::time::timeout(limit, self.guarded_check())
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
    //! The generic guards are tested in `hexkv-resilience`; these tests show what they do to the
    //! store's errors and operations.

    use hexkv_core::{MockKvStore, Version};
    use hexkv_resilience::{BreakerConfig, BreakerState, CircuitBreaker, RetryPolicy};

    use super::*;

    fn key() -> Key {
        Key::new("k").unwrap()
    }

    fn unavailable() -> StoreError {
        StoreError::unavailable("down")
    }

    fn guarded(inner: MockKvStore, guards: Guards<StoreErrors>) -> GuardedStore {
        GuardedStore::new(Arc::new(inner), guards)
    }

    /// A store whose calls never finish.
    struct Stuck;

    #[async_trait]
    impl KvStore for Stuck {
        async fn get(&self, _: &Key) -> Result<Option<Entry>, StoreError> {
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

    /// A read given up on is refused (nothing changed); a write may have been applied.
    #[tokio::test(start_paused = true)]
    async fn a_timeout_refuses_a_read_and_leaves_a_write_unknown() {
        let store = GuardedStore::new(
            Arc::new(Stuck),
            Guards::new().with_timeout(Duration::from_millis(250)),
        );
        let get = store.get(&key()).await.unwrap_err();
        assert!(
            matches!(&get, StoreError::Unavailable { reason, retry_after: Some(_) }
                if reason.contains("250 ms")),
            "{get:?}"
        );
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
    }

    fn breaker() -> Arc<CircuitBreaker> {
        Arc::new(CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 3,
            window: 0,
            open_delay: Duration::from_secs(2),
            ..BreakerConfig::default()
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_refuses_without_touching_the_store() {
        let mut inner = MockKvStore::new();
        // Three failures open it; while open the store is not called at all.
        inner
            .expect_get()
            .times(3)
            .returning(|_| Err(unavailable()));
        let store = guarded(inner, Guards::new().with_breaker(breaker()));
        for _ in 0..3 {
            store.get(&key()).await.unwrap_err();
        }
        for _ in 0..10 {
            let err = store.get(&key()).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::Unavailable { reason, retry_after: Some(_) }
                    if reason.contains("circuit open")),
                "{err:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_preconditions_and_bugs_do_not_trip_the_breaker() {
        let mut inner = MockKvStore::new();
        inner
            .expect_put()
            .returning(|_, _, _| Err(StoreError::PreconditionFailed { current: None }));
        inner
            .expect_list()
            .returning(|_| Err(StoreError::internal("a bug")));
        let store = guarded(inner, Guards::new().with_breaker(breaker()));
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
        let state = store.guards().breaker().unwrap().state();
        assert_eq!(state, BreakerState::Closed);
    }

    /// Reads and unconditional deletes are retried; puts (unless `retry_writes`) and failed
    /// preconditions are not.
    #[tokio::test(start_paused = true)]
    async fn reads_and_unconditional_deletes_are_retried_and_puts_are_not() {
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
        let mut deletes = 0;
        inner
            .expect_delete()
            .times(3)
            .returning(move |_, precondition| {
                deletes += 1;
                match (precondition, deletes) {
                    (Precondition::None, 1) => Err(unavailable()),
                    (Precondition::None, _) => Ok(DeleteOutcome::Absent),
                    _ => Err(StoreError::PreconditionFailed { current: None }),
                }
            });
        let store = guarded(inner, Guards::new().with_retry(RetryPolicy::default()));
        assert_eq!(store.get(&key()).await.unwrap(), None, "third attempt");
        store
            .put(key(), Value::new("v"), Precondition::None)
            .await
            .unwrap_err();
        assert_eq!(
            store.delete(&key(), Precondition::None).await.unwrap(),
            DeleteOutcome::Absent,
            "second attempt"
        );
        store
            .delete(&key(), Precondition::Version(Version::new(3)))
            .await
            .unwrap_err();
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
        let store = guarded(inner, Guards::new()).with_check_cache(Duration::from_secs(1), None);
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
        let store = GuardedStore::new(Arc::new(Stuck), Guards::new())
            .with_check_cache(Duration::from_secs(1), Some(Duration::from_millis(300)));
        let started = tokio::time::Instant::now();
        let err = store.check().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        assert!(err.to_string().contains("within 300 ms"), "{err}");
    }
}
