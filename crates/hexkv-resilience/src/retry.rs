//! Retry with exponential backoff and jitter.
//!
//! Before retry `n` (1 for the first retry) the caller sleeps:
//! - with [`Jitter::Full`] (the default), a uniformly random time in
//!   `[0, min(max_delay, base_delay × 2^(n−1))]`: callers that failed together do not retry
//!   together;
//! - with [`Jitter::Decorrelated`], a random time in `[base_delay, 3 × previous sleep]`, capped at
//!   `max_delay`: the same spreading, with delays that grow from the previous one rather than from
//!   the attempt number;
//!
//! but never less than the hint the failure carried (a server's `RetryInfo` or `Retry-After`).
//! It gives up after `max_attempts` attempts, or when the next sleep would pass `max_elapsed`
//! since the first attempt. What is worth retrying is the error's to say ([`Retryable`]), and
//! what the operation is ([`Operation`]): a write is retried only when `retry_writes` is set, and
//! a conditional write only after a failure that says it changed nothing.
//!
//! The book's version sleeps `base × 2^n` with no cap (and overflows), and no jitter, so every
//! client of a recovering server comes back at the same instant.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// An error that knows whether a retry may succeed.
pub trait Retryable {
    /// A retry may succeed: the failure was transient.
    fn is_transient(&self) -> bool;
    /// The failure says the operation changed nothing (it was refused before it was applied).
    /// `false` when that is not known: a timeout, a connection lost mid-call.
    fn changed_nothing(&self) -> bool {
        false
    }
    /// The least time to wait before retrying, if the failure said.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// What an operation does to the data, for whether a failure of it may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Changes nothing (a read, a listing, a health check). Retried after any transient failure.
    Read,
    /// A write that applying twice is applying once (an unconditional delete). Retried after
    /// any transient failure.
    Idempotent,
    /// An unconditional write. Retried only with [`RetryPolicy::retry_writes`]: a retry of one
    /// that was applied writes the value again, under a new version.
    Write,
    /// A write with a precondition (compare-and-swap, create-only). Retried only with
    /// [`RetryPolicy::retry_writes`], and only after a failure that says it changed nothing: a
    /// retry of one whose outcome is unknown could fail its precondition against its own first
    /// attempt.
    Conditional,
}

impl Operation {
    /// The operation may change data: given up on after it started, its outcome is unknown.
    pub fn changes_data(self) -> bool {
        !matches!(self, Operation::Read)
    }
}

/// How retry delays are randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform in `[0, exponential ceiling]`.
    #[default]
    Full,
    /// Uniform in `[base_delay, 3 × previous delay]`, capped.
    Decorrelated,
}

/// When and how often to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 disables retries).
    pub max_attempts: u32,
    /// The ceiling of the first retry's delay.
    pub base_delay: Duration,
    /// The largest ceiling of any delay.
    pub max_delay: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_elapsed: Duration,
    /// Retry operations that are not idempotent too. A retried write may have taken effect the
    /// first time; with a precondition the retry then fails with a precondition error, without
    /// one it writes the value again under a new version.
    pub retry_writes: bool,
    /// How delays are randomised.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(10),
            retry_writes: false,
            jitter: Jitter::Full,
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The ceiling of the delay before retry `retry` (1-based), capped without overflow.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The delay before retry `retry`, for a uniform `random` in `[0, 1)`, the previous delay
    /// (for decorrelated jitter) and the failure's hint.
    pub fn delay(
        &self,
        retry: u32,
        previous: Duration,
        hint: Option<Duration>,
        random: f64,
    ) -> Duration {
        let random = random.clamp(0.0, 1.0);
        let jittered = match self.jitter {
            Jitter::Full => self.ceiling(retry).mul_f64(random),
            Jitter::Decorrelated => {
                let low = self.base_delay;
                // Capped before the arithmetic, so no product can overflow.
                let high = previous
                    .max(self.base_delay)
                    .saturating_mul(3)
                    .min(self.max_delay)
                    .max(low);
                (low + (high - low).mul_f64(random)).min(self.max_delay)
            }
        };
        jittered.max(hint.unwrap_or_default())
    }
}

/// Runs `op` (an `operation`) until it succeeds, fails for good, or the policy gives up; returns
/// the last error.
pub async fn run<T, E, F, Fut>(
    policy: &RetryPolicy,
    operation: Operation,
    mut op: F,
) -> Result<T, E>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut attempt = 1;
    let mut previous = Duration::ZERO;
    loop {
        let err = match op().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let allowed = match operation {
            Operation::Read | Operation::Idempotent => true,
            Operation::Write => policy.retry_writes,
            Operation::Conditional => policy.retry_writes && err.changed_nothing(),
        };
        let may_retry = err.is_transient() && allowed && attempt < policy.max_attempts;
        if !may_retry {
            return Err(err);
        }
        let delay = policy.delay(attempt, previous, err.retry_after(), fastrand::f64());
        if started.elapsed() + delay > policy.max_elapsed {
            return Err(err);
        }
        tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, "retrying");
        tokio::time::sleep(delay).await;
        previous = delay;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug)]
    enum TestError {
        Transient(Option<Duration>),
        /// Transient, and the operation may have been applied.
        Unknown,
        Permanent,
    }

    impl Retryable for TestError {
        fn is_transient(&self) -> bool {
            matches!(self, Self::Transient(_) | Self::Unknown)
        }
        fn changed_nothing(&self) -> bool {
            matches!(self, Self::Transient(_))
        }
        fn retry_after(&self) -> Option<Duration> {
            match self {
                Self::Transient(hint) => *hint,
                Self::Unknown | Self::Permanent => None,
            }
        }
    }

    /// When each attempt started.
    type Calls = Arc<Mutex<Vec<Instant>>>;

    /// An operation that fails `failures` times with `error`, then succeeds; records when each
    /// attempt started.
    fn flaky(
        failures: usize,
        error: fn() -> TestError,
    ) -> (
        impl FnMut() -> std::future::Ready<Result<u32, TestError>>,
        Calls,
    ) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&calls);
        let op = move || {
            let mut calls = seen.lock().unwrap();
            calls.push(Instant::now());
            std::future::ready(if calls.len() <= failures {
                Err(error())
            } else {
                Ok(calls.len() as u32)
            })
        };
        (op, calls)
    }

    fn gaps(calls: &[Instant]) -> Vec<Duration> {
        calls.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn transient() -> TestError {
        TestError::Transient(None)
    }

    #[test]
    fn ceilings_grow_exponentially_to_the_cap_without_overflow() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(50));
        assert_eq!(p.ceiling(2), Duration::from_millis(100));
        assert_eq!(p.ceiling(6), Duration::from_millis(1600));
        assert_eq!(p.ceiling(7), Duration::from_secs(2));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(2));
        assert_eq!(p.delay(3, Duration::ZERO, None, 0.0), Duration::ZERO);
        assert_eq!(
            p.delay(3, Duration::ZERO, Some(Duration::from_secs(1)), 0.5),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn decorrelated_delays_stay_between_the_base_and_three_times_the_last_within_the_cap() {
        let p = RetryPolicy {
            jitter: Jitter::Decorrelated,
            ..RetryPolicy::default()
        };
        let last = Duration::from_millis(200);
        assert_eq!(p.delay(2, last, None, 0.0), Duration::from_millis(50));
        assert_eq!(p.delay(2, last, None, 1.0), Duration::from_millis(600));
        assert_eq!(
            p.delay(9, Duration::from_secs(5), None, 1.0),
            Duration::from_secs(2)
        );
        assert_eq!(
            p.delay(9, Duration::MAX, None, 1.0),
            Duration::from_secs(2),
            "no overflow"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_within_the_jitter_bounds() {
        let policy = RetryPolicy::default();
        let (op, calls) = flaky(3, transient);
        assert_eq!(run(&policy, Operation::Idempotent, op).await.unwrap(), 4);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 4);
        for (i, gap) in gaps(&calls).into_iter().enumerate() {
            let ceiling = policy.ceiling(i as u32 + 1);
            assert!(
                gap <= ceiling,
                "retry {}: slept {gap:?} > {ceiling:?}",
                i + 1
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn decorrelated_retries_stay_within_their_bounds() {
        let policy = RetryPolicy {
            jitter: Jitter::Decorrelated,
            max_attempts: 8,
            max_elapsed: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let (op, calls) = flaky(7, transient);
        run(&policy, Operation::Idempotent, op).await.unwrap();
        let mut previous = Duration::ZERO;
        for gap in gaps(&calls.lock().unwrap()) {
            assert!(gap >= policy.base_delay, "{gap:?}");
            assert!(gap <= policy.max_delay, "{gap:?}");
            assert!(
                gap <= previous.max(policy.base_delay) * 3,
                "{gap:?} after {previous:?}"
            );
            previous = gap;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_hint_is_honoured() {
        let policy = RetryPolicy::default();
        let (op, calls) = flaky(2, || TestError::Transient(Some(Duration::from_secs(3))));
        run(&policy, Operation::Idempotent, op).await.unwrap();
        for gap in gaps(&calls.lock().unwrap()) {
            assert!(gap >= Duration::from_secs(3), "slept only {gap:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_capped() {
        let (op, calls) = flaky(usize::MAX, transient);
        run(&RetryPolicy::default(), Operation::Idempotent, op)
            .await
            .unwrap_err();
        assert_eq!(calls.lock().unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn total_time_is_capped() {
        let policy = RetryPolicy::default(); // max_elapsed 10 s
        let (op, calls) = flaky(usize::MAX, || {
            TestError::Transient(Some(Duration::from_secs(4)))
        });
        run(&policy, Operation::Idempotent, op).await.unwrap_err();
        // Attempts at 0 s, 4 s, 8 s; a fourth would start at 12 s.
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_retried_only_when_asked() {
        let (op, calls) = flaky(1, transient);
        run(&RetryPolicy::default(), Operation::Write, op)
            .await
            .unwrap_err();
        assert_eq!(calls.lock().unwrap().len(), 1);

        let policy = RetryPolicy {
            retry_writes: true,
            ..RetryPolicy::default()
        };
        let (op, calls) = flaky(1, transient);
        run(&policy, Operation::Write, op).await.unwrap();
        assert_eq!(calls.lock().unwrap().len(), 2);
    }

    /// A conditional write is retried after a refusal, never after a failure that may have
    /// applied it (its retry would fail its precondition against itself); an unconditional one
    /// and an idempotent operation are retried after either.
    #[tokio::test(start_paused = true)]
    async fn conditional_writes_are_retried_only_when_nothing_changed() {
        let policy = RetryPolicy {
            retry_writes: true,
            ..RetryPolicy::default()
        };
        let (op, calls) = flaky(1, transient);
        run(&policy, Operation::Conditional, op).await.unwrap();
        assert_eq!(calls.lock().unwrap().len(), 2);

        let (op, calls) = flaky(1, || TestError::Unknown);
        assert!(matches!(
            run(&policy, Operation::Conditional, op).await,
            Err(TestError::Unknown)
        ));
        assert_eq!(calls.lock().unwrap().len(), 1, "not retried");

        for operation in [Operation::Write, Operation::Idempotent] {
            let (op, calls) = flaky(1, || TestError::Unknown);
            run(&policy, operation, op).await.unwrap();
            assert_eq!(calls.lock().unwrap().len(), 2, "{operation:?}");
        }
        // Without `retry_writes`, not even a refused conditional write.
        let (op, calls) = flaky(1, transient);
        run(&RetryPolicy::default(), Operation::Conditional, op)
            .await
            .unwrap_err();
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let (op, calls) = flaky(1, || TestError::Permanent);
        run(&RetryPolicy::default(), Operation::Idempotent, op)
            .await
            .unwrap_err();
        assert_eq!(calls.lock().unwrap().len(), 1);
    }
}
