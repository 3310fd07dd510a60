//! Retry with exponential backoff and full jitter.
//!
//! Before retry `n` (1 for the first retry) the client sleeps a uniformly random time in
//! `[0, min(max_delay, base_delay × 2^(n-1))]` ("full jitter": clients that failed together do not
//! retry together), but never less than the server's hint (`RetryInfo`). It gives up after
//! `max_attempts` attempts, or when the next sleep would pass `max_elapsed` since the first
//! attempt. Only idempotent operations are retried, unless `retry_writes` is set.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::ClientError;

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
    /// Retry writes (`put`, and `delete` with a precondition) too. A retried write may have
    /// taken effect the first time; with a precondition the retry then fails with
    /// `PreconditionFailed`, without one it writes the value again under a new version.
    pub retry_writes: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(10),
            retry_writes: false,
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

    /// The delay before retry `retry`, for a uniform `random` in `[0, 1)` and the server's hint.
    pub fn delay(&self, retry: u32, hint: Option<Duration>, random: f64) -> Duration {
        let jittered = self.ceiling(retry).mul_f64(random.clamp(0.0, 1.0));
        jittered.max(hint.unwrap_or_default())
    }
}

/// Runs `op` until it succeeds, fails for good, or the policy gives up.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    idempotent: bool,
    mut op: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    let mut attempt = 1;
    loop {
        let err = match op().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let may_retry = err.is_transient()
            && (idempotent || policy.retry_writes)
            && attempt < policy.max_attempts;
        if !may_retry {
            return Err(err);
        }
        let delay = policy.delay(attempt, err.retry_after(), fastrand::f64());
        if started.elapsed() + delay > policy.max_elapsed {
            return Err(err);
        }
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn unavailable(hint: Option<Duration>) -> ClientError {
        ClientError::Unavailable {
            message: "down".into(),
            retry_after: hint,
        }
    }

    /// When each attempt started.
    type Calls = Arc<Mutex<Vec<Instant>>>;

    /// An operation that fails `failures` times with `error`, then succeeds; records when each
    /// attempt started.
    fn flaky(
        failures: usize,
        error: fn() -> ClientError,
    ) -> (
        impl FnMut() -> std::future::Ready<Result<u32, ClientError>>,
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

    #[test]
    fn ceilings_grow_exponentially_to_the_cap_without_overflow() {
        let p = RetryPolicy::default();
        assert_eq!(p.ceiling(1), Duration::from_millis(50));
        assert_eq!(p.ceiling(2), Duration::from_millis(100));
        assert_eq!(p.ceiling(6), Duration::from_millis(1600));
        assert_eq!(p.ceiling(7), Duration::from_secs(2));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_secs(2));
        assert_eq!(p.delay(3, None, 0.0), Duration::ZERO);
        assert_eq!(
            p.delay(3, Some(Duration::from_secs(1)), 0.5),
            Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_within_the_jitter_bounds() {
        let policy = RetryPolicy::default();
        let (op, calls) = flaky(3, || unavailable(None));
        assert_eq!(run(&policy, true, op).await.unwrap(), 4);
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
    async fn the_servers_hint_is_honoured() {
        let policy = RetryPolicy::default();
        let (op, calls) = flaky(2, || unavailable(Some(Duration::from_secs(3))));
        run(&policy, true, op).await.unwrap();
        for gap in gaps(&calls.lock().unwrap()) {
            assert!(gap >= Duration::from_secs(3), "slept only {gap:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_capped() {
        let policy = RetryPolicy::default();
        let (op, calls) = flaky(usize::MAX, || unavailable(None));
        let err = run(&policy, true, op).await.unwrap_err();
        assert!(matches!(err, ClientError::Unavailable { .. }));
        assert_eq!(calls.lock().unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn total_time_is_capped() {
        let policy = RetryPolicy::default(); // max_elapsed 10 s
        let (op, calls) = flaky(usize::MAX, || unavailable(Some(Duration::from_secs(4))));
        run(&policy, true, op).await.unwrap_err();
        // Attempts at 0 s, 4 s, 8 s; a fourth would start at 12 s.
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_retried_only_when_asked() {
        let (op, calls) = flaky(1, || unavailable(None));
        run(&RetryPolicy::default(), false, op).await.unwrap_err();
        assert_eq!(calls.lock().unwrap().len(), 1);

        let policy = RetryPolicy {
            retry_writes: true,
            ..RetryPolicy::default()
        };
        let (op, calls) = flaky(1, || unavailable(None));
        run(&policy, false, op).await.unwrap();
        assert_eq!(calls.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        for error in [
            (|| ClientError::NotFound) as fn() -> ClientError,
            || ClientError::TooLarge {
                message: "big".into(),
            },
            || ClientError::PreconditionFailed { current: None },
        ] {
            let (op, calls) = flaky(1, error);
            run(&RetryPolicy::default(), true, op).await.unwrap_err();
            assert_eq!(calls.lock().unwrap().len(), 1);
        }
    }
}
