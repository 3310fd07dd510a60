//! Guards for the calls a service makes through a driven port (a store, a remote API): retry →
//! circuit breaker → timeout → bulkhead → the call, each optional, held in one [`Guards`] that
//! the port's decorator calls through.
//!
//! ```text
//!   Guards::call(operation, f)
//!     retry        a transient failure of an operation that may be retried: back off, call again
//!     └ breaker    refused at once while the port keeps failing; every outcome is recorded
//!       └ timeout  gives up on the call (drops its future) after the limit
//!         └ bulkhead  at most N calls in flight; the excess waits up to max_wait, then is refused
//!           └ f()
//! ```
//!
//! The timeout sits inside the breaker, so a port that hangs counts as failing: a timeout outside
//! it would cancel the breaker's call, which counts as nothing, and a port that hangs would never
//! open the breaker. The bulkhead sits inside the timeout, so a call waiting for a slot is bounded
//! by the same limit as one in progress.
//!
//! The guards know nothing of the port: its error type is adapted through [`PortErrors`], which
//! says how to report a refusal and an unknown outcome, and what an error means for the breaker and
//! the retry. A port's decorator is then plain code, one line per method:
//!
//! ```ignore
//! async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
//!     self.guards.call(Operation::Read, || self.inner.get(key)).await
//! }
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::breaker::{CircuitBreaker, Outcome};
use crate::retry::{self, Operation, RetryPolicy, Retryable};

/// How the guards of one port speak its error type. Implemented by a marker type next to the
/// port's decorator, so neither the port nor this crate needs to know the other.
pub trait PortErrors: Send + Sync + 'static {
    /// The port's error.
    type Error;
    /// A guard refused the call before it was made (breaker open, bulkhead full), or gave up on a
    /// read: nothing changed, and a retry after `retry_after` may succeed.
    fn refused(reason: String, retry_after: Option<Duration>) -> Self::Error;
    /// A guard gave up on a call that may change data after it was made: it may have taken effect.
    fn outcome_unknown(reason: String) -> Self::Error;
    /// What `error` says of the port's health, for the breaker: [`Outcome::Failure`] counts
    /// toward opening it, [`Outcome::Success`] proves the port works (a failed precondition),
    /// [`Outcome::Ignored`] says nothing (a bug, bad input).
    fn health(error: &Self::Error) -> Outcome;
    /// A retry may succeed.
    fn is_transient(error: &Self::Error) -> bool;
    /// The failure says the call changed nothing (it was refused before it was applied).
    fn changed_nothing(error: &Self::Error) -> bool;
    /// The least time to wait before a retry, if the failure said.
    fn retry_after(error: &Self::Error) -> Option<Duration>;
}

/// Bounds the calls in flight through one port.
#[derive(Debug)]
pub struct Bulkhead {
    slots: Semaphore,
    max_in_flight: usize,
    max_wait: Duration,
}

impl Bulkhead {
    /// Allows `max_in_flight` calls at once (at least one); a call that finds no slot waits up to
    /// `max_wait` for one (not at all when zero), then is refused.
    pub fn new(max_in_flight: usize, max_wait: Duration) -> Self {
        let max_in_flight = max_in_flight.max(1);
        Self {
            slots: Semaphore::new(max_in_flight),
            max_in_flight,
            max_wait,
        }
    }

    async fn call<P: PortErrors, T>(
        &self,
        call: impl Future<Output = Result<T, P::Error>>,
    ) -> Result<T, P::Error> {
        let slot = if self.max_wait.is_zero() {
            self.slots.try_acquire().ok()
        } else {
            tokio::time::timeout(self.max_wait, self.slots.acquire())
                .await
                .ok()
                .and_then(Result::ok)
        };
        let Some(_slot) = slot else {
            return Err(P::refused(
                format!("{} calls are already in flight", self.max_in_flight),
                Some(Duration::from_secs(1)),
            ));
        };
        call.await
    }
}

/// The guards of one port; see the module documentation for their order. With none set, a call
/// passes straight through.
pub struct Guards<P> {
    retry: Option<RetryPolicy>,
    breaker: Option<Arc<CircuitBreaker>>,
    timeout: Option<Duration>,
    bulkhead: Option<Bulkhead>,
    errors: PhantomData<fn() -> P>,
}

impl<P> Default for Guards<P> {
    fn default() -> Self {
        Self {
            retry: None,
            breaker: None,
            timeout: None,
            bulkhead: None,
            errors: PhantomData,
        }
    }
}

impl<P: PortErrors> Guards<P> {
    /// No guards.
    pub fn new() -> Self {
        Self::default()
    }

    /// Retries transient failures with `policy` (writes only as the policy and the [`Operation`]
    /// allow).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Refuses calls while `breaker` is open, and records every outcome in it. Share the breaker
    /// to observe it or change its settings while running.
    pub fn with_breaker(mut self, breaker: Arc<CircuitBreaker>) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Gives up on a call after `limit` and drops it, so no work is left running: a read fails as
    /// refused, a call that may change data with an unknown outcome.
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Bounds the calls in flight.
    pub fn with_bulkhead(mut self, bulkhead: Bulkhead) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// The breaker, if one is set.
    pub fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.breaker.as_ref()
    }

    /// Calls `f` through the guards; `f` is called again for each retry.
    pub async fn call<T, F, Fut>(&self, operation: Operation, mut f: F) -> Result<T, P::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, P::Error>>,
    {
        match &self.retry {
            None => self.attempt(operation, f()).await,
            Some(policy) => retry::run(policy, operation, || {
                let call = f();
                async move { self.attempt(operation, call).await.map_err(Judged::<P>) }
            })
            .await
            .map_err(|judged| judged.0),
        }
    }

    /// One attempt: breaker → timeout → bulkhead → the call.
    async fn attempt<T>(
        &self,
        operation: Operation,
        call: impl Future<Output = Result<T, P::Error>>,
    ) -> Result<T, P::Error> {
        let permit = match &self.breaker {
            None => None,
            Some(breaker) => Some(breaker.acquire().map_err(|rejected| {
                P::refused(
                    "calls are paused after repeated failures (circuit open)".into(),
                    Some(rejected.retry_after.max(Duration::from_millis(1))),
                )
            })?),
        };
        let bounded = async {
            match &self.bulkhead {
                None => call.await,
                Some(bulkhead) => bulkhead.call::<P, T>(call).await,
            }
        };
        let result = match self.timeout {
            None => bounded.await,
            Some(limit) => match tokio::time::timeout(limit, bounded).await {
                Ok(result) => result,
                Err(_) => {
                    let reason = format!("no answer within {} ms", limit.as_millis());
                    Err(if operation.changes_data() {
                        P::outcome_unknown(reason)
                    } else {
                        P::refused(reason, Some(Duration::from_secs(1)))
                    })
                }
            },
        };
        if let Some(permit) = permit {
            permit.record(match &result {
                Ok(_) => Outcome::Success,
                Err(error) => P::health(error),
            });
        }
        result
    }
}

/// A port's error as the retry sees it.
struct Judged<P: PortErrors>(P::Error);

impl<P: PortErrors> Retryable for Judged<P> {
    fn is_transient(&self) -> bool {
        P::is_transient(&self.0)
    }
    fn changed_nothing(&self) -> bool {
        P::changed_nothing(&self.0)
    }
    fn retry_after(&self) -> Option<Duration> {
        P::retry_after(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;
    use crate::BreakerConfig;

    /// The errors of a port made up for these tests.
    #[derive(Debug, PartialEq)]
    enum Error {
        Refused(String, Option<Duration>),
        Unknown(String),
        /// The port answered "no" (it works).
        No,
        /// The port is down.
        Down,
    }

    struct Errors;

    impl PortErrors for Errors {
        type Error = Error;
        fn refused(reason: String, retry_after: Option<Duration>) -> Error {
            Error::Refused(reason, retry_after)
        }
        fn outcome_unknown(reason: String) -> Error {
            Error::Unknown(reason)
        }
        fn health(error: &Error) -> Outcome {
            match error {
                Error::No => Outcome::Success,
                Error::Down | Error::Unknown(_) | Error::Refused(..) => Outcome::Failure,
            }
        }
        fn is_transient(error: &Error) -> bool {
            matches!(error, Error::Down | Error::Refused(..))
        }
        fn changed_nothing(error: &Error) -> bool {
            matches!(error, Error::Down | Error::Refused(..))
        }
        fn retry_after(error: &Error) -> Option<Duration> {
            match error {
                Error::Refused(_, after) => *after,
                _ => None,
            }
        }
    }

    /// A call that never finishes and notes when it is dropped.
    async fn stuck(started: &AtomicUsize, dropped: &Arc<AtomicBool>) -> Result<(), Error> {
        struct DropFlag(Arc<AtomicBool>);
        impl Drop for DropFlag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        started.fetch_add(1, Ordering::SeqCst);
        let _flag = DropFlag(Arc::clone(dropped));
        std::future::pending().await
    }

    fn timeout(ms: u64) -> Guards<Errors> {
        Guards::new().with_timeout(Duration::from_millis(ms))
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_fails_a_read_as_refused_and_cancels_the_call() {
        let (started, dropped) = (AtomicUsize::new(0), Arc::new(AtomicBool::new(false)));
        let clock = tokio::time::Instant::now();
        let err = timeout(250)
            .call(Operation::Read, || stuck(&started, &dropped))
            .await
            .unwrap_err();
        assert_eq!(clock.elapsed(), Duration::from_millis(250));
        assert!(
            matches!(&err, Error::Refused(reason, Some(_)) if reason.contains("250 ms")),
            "{err:?}"
        );
        assert!(dropped.load(Ordering::SeqCst), "the call was cancelled");
    }

    /// A write given up on may still be applied below: it is not reported as refused.
    #[tokio::test(start_paused = true)]
    async fn a_write_past_the_timeout_has_an_unknown_outcome() {
        let (started, dropped) = (AtomicUsize::new(0), Arc::new(AtomicBool::new(false)));
        for operation in [
            Operation::Write,
            Operation::Conditional,
            Operation::Idempotent,
        ] {
            let err = timeout(250)
                .call(operation, || stuck(&started, &dropped))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::Unknown(reason) if reason.contains("250 ms")),
                "{operation:?}: {err:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn answers_within_the_limit_pass_untouched() {
        let guards = timeout(250);
        assert_eq!(
            guards
                .call(Operation::Conditional, || async { Err::<(), _>(Error::No) })
                .await,
            Err(Error::No)
        );
        assert_eq!(
            guards.call(Operation::Read, || async { Ok(7) }).await,
            Ok(7)
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
    async fn an_open_breaker_fails_fast_without_calling_and_recovers_by_a_probe() {
        let guards = Guards::<Errors>::new().with_breaker(breaker());
        let calls = AtomicUsize::new(0);
        let down = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(Error::Down)
        };
        for _ in 0..3 {
            assert_eq!(guards.call(Operation::Read, down).await, Err(Error::Down));
        }
        for _ in 0..10 {
            match guards.call(Operation::Read, down).await {
                Err(Error::Refused(reason, Some(after))) => {
                    assert!(reason.contains("circuit open"), "{reason}");
                    assert!(after <= Duration::from_secs(2));
                }
                other => panic!("expected a fast refusal, got {other:?}"),
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "not called while open");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            guards.call(Operation::Read, || async { Ok(()) }).await,
            Ok(()),
            "the probe"
        );
        assert_eq!(
            guards.breaker().unwrap().state(),
            crate::BreakerState::Closed
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_prove_the_port_works_do_not_trip_it() {
        let guards = Guards::<Errors>::new().with_breaker(breaker());
        for _ in 0..10 {
            let no = guards
                .call(Operation::Conditional, || async { Err::<(), _>(Error::No) })
                .await;
            assert_eq!(no, Err(Error::No));
        }
        assert_eq!(
            guards.breaker().unwrap().state(),
            crate::BreakerState::Closed
        );
    }

    /// The timeout is inside the breaker: a port that hangs opens it.
    #[tokio::test(start_paused = true)]
    async fn calls_that_hang_open_the_breaker() {
        let guards = timeout(100).with_breaker(breaker());
        let (started, dropped) = (AtomicUsize::new(0), Arc::new(AtomicBool::new(false)));
        for _ in 0..3 {
            guards
                .call(Operation::Read, || stuck(&started, &dropped))
                .await
                .unwrap_err();
        }
        assert_eq!(guards.breaker().unwrap().state(), crate::BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn reads_are_retried_and_writes_are_not() {
        let guards = Guards::<Errors>::new().with_retry(RetryPolicy::default());
        let calls = AtomicUsize::new(0);
        let read = guards
            .call(Operation::Read, || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0 | 1 => Err(Error::Down),
                    _ => Ok("value"),
                }
            })
            .await;
        assert_eq!(read, Ok("value"), "third attempt");
        assert_eq!(calls.swap(0, Ordering::SeqCst), 3);

        let write = guards
            .call(Operation::Write, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::Down)
            })
            .await;
        assert_eq!(write, Err(Error::Down));
        assert_eq!(calls.swap(0, Ordering::SeqCst), 1, "a write is not retried");

        let no = guards
            .call(Operation::Read, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::No)
            })
            .await;
        assert_eq!(no, Err(Error::No));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not transient: one call");
    }

    /// An unknown outcome is never retried, even with `retry_writes`.
    #[tokio::test(start_paused = true)]
    async fn a_conditional_write_that_timed_out_is_not_retried() {
        let guards = timeout(100).with_retry(RetryPolicy {
            retry_writes: true,
            ..RetryPolicy::default()
        });
        let (started, dropped) = (AtomicUsize::new(0), Arc::new(AtomicBool::new(false)));
        let err = guards
            .call(Operation::Conditional, || stuck(&started, &dropped))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unknown(_)), "{err:?}");
        assert_eq!(started.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bulkhead_refuses_at_once_or_after_the_wait() {
        let (started, dropped) = (AtomicUsize::new(0), Arc::new(AtomicBool::new(false)));
        let guards = Guards::<Errors>::new().with_bulkhead(Bulkhead::new(2, Duration::ZERO));
        let busy = async {
            tokio::join!(
                guards.call(Operation::Read, || stuck(&started, &dropped)),
                guards.call(Operation::Read, || stuck(&started, &dropped)),
            )
        };
        let third = async {
            while started.load(Ordering::SeqCst) < 2 {
                tokio::task::yield_now().await;
            }
            let clock = tokio::time::Instant::now();
            let err = guards
                .call(Operation::Read, || stuck(&started, &dropped))
                .await
                .unwrap_err();
            assert_eq!(clock.elapsed(), Duration::ZERO, "refused at once");
            err
        };
        tokio::select! {
            _ = busy => panic!("the stuck calls finished"),
            err = third => assert!(
                matches!(&err, Error::Refused(reason, Some(_)) if reason.contains("2 calls")),
                "{err:?}"
            ),
        }
        assert_eq!(started.load(Ordering::SeqCst), 2, "the third never ran");

        let waiting =
            Guards::<Errors>::new().with_bulkhead(Bulkhead::new(1, Duration::from_millis(300)));
        let first = waiting.call(Operation::Read, || stuck(&started, &dropped));
        let second = async {
            tokio::task::yield_now().await;
            let clock = tokio::time::Instant::now();
            let err = waiting
                .call(Operation::Read, || stuck(&started, &dropped))
                .await
                .unwrap_err();
            assert_eq!(
                clock.elapsed(),
                Duration::from_millis(300),
                "waited, then refused"
            );
            err
        };
        tokio::select! {
            _ = first => panic!("the stuck call finished"),
            err = second => assert!(matches!(err, Error::Refused(..)), "{err:?}"),
        }
    }
}
