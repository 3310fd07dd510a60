//! Circuit breaker: stop calling a dependency that keeps failing, and probe it before trusting it
//! again.
//!
//! ```text
//!   Closed ──(threshold of counted failures)──▶ Open ──(open delay passes)──▶ HalfOpen
//!     ▲                                          ▲                               │
//!     └──────(every probe succeeded)─────────────┼───────(a probe failed)────────┘
//! ```
//!
//! - **Closed**: calls pass. It opens after `consecutive_failures` counted failures in a row, or
//!   when the failure rate over the last `window` calls reaches `failure_rate` (once at least
//!   `min_calls` calls are in the window).
//! - **Open**: calls are refused at once with the time left ([`Rejected::retry_after`]). The
//!   delay is `open_delay × 2^(n−1)` for the n-th opening in a row, capped at `max_open_delay`
//!   (computed without overflow), so a dependency that stays down is probed less and less often.
//! - **HalfOpen**: at most `half_open_probes` calls are admitted; the breaker closes when all of
//!   them succeed and opens again (with a longer delay) on the first failure. Other calls are
//!   refused meanwhile.
//!
//! Only what the caller classifies as a failure counts ([`Outcome`]): for a store, `Unavailable`
//! and timeouts, not `NotFound` or a failed precondition, which prove the dependency works. A
//! permit dropped without an outcome (the call was cancelled) counts as neither. Every state
//! change is reported to the `on_transition` callback, for logs and metrics.
//!
//! The book's breaker has no half-open probes: after its delay it lets every call through at
//! once, and its backoff grows without a cap. Both are fixed here.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Settings of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Open after this many counted failures in a row (0: never on this rule).
    pub consecutive_failures: u32,
    /// The number of recent calls the failure rate is computed over (0: no rate rule).
    pub window: usize,
    /// The fewest calls in the window before the rate rule applies.
    pub min_calls: usize,
    /// Open when the failure rate over the window reaches this (0.0–1.0).
    pub failure_rate: f64,
    /// How long the first opening lasts.
    pub open_delay: Duration,
    /// The longest an opening lasts, however often it reopened.
    pub max_open_delay: Duration,
    /// Calls admitted in half-open; all must succeed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            window: 20,
            min_calls: 10,
            failure_rate: 0.5,
            open_delay: Duration::from_secs(1),
            max_open_delay: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// The breaker's state, as reported to observers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls are refused until the delay passes.
    Open,
    /// A few probes are admitted.
    HalfOpen,
}

/// A state change: from, to.
pub type Transition = (BreakerState, BreakerState);

/// What a call's result means for the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The dependency worked (also when the answer was "not found").
    Success,
    /// The dependency failed in a way that counts (unavailable, timed out).
    Failure,
    /// Says nothing about the dependency (e.g. bad input rejected before it).
    Ignored,
}

/// The call was refused because the breaker is open (or half-open and out of probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open; retry in {retry_after:?}")]
pub struct Rejected {
    /// When a call may be admitted again.
    pub retry_after: Duration,
}

enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

struct Inner {
    /// The settings (under the lock, so they can change while running).
    config: BreakerConfig,
    state: State,
    /// Consecutive counted failures while closed.
    failures_in_row: u32,
    /// Recent outcomes while closed: true = failure.
    window: VecDeque<bool>,
    /// Openings since the breaker last closed.
    reopenings: u32,
}

type Observer = Arc<dyn Fn(Transition) + Send + Sync>;

/// A circuit breaker; share it (`Arc`) among the callers of one dependency.
pub struct CircuitBreaker {
    inner: Mutex<Inner>,
    on_transition: Option<Observer>,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config())
            .field("state", &self.state())
            .finish()
    }
}

/// Admission to one call; report its [`Outcome`] with [`Permit::record`].
#[must_use = "record the outcome of the call"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    probe: bool,
    recorded: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            inner: Mutex::new(Inner {
                config,
                state: State::Closed,
                failures_in_row: 0,
                window: VecDeque::with_capacity(config.window),
                reopenings: 0,
            }),
            on_transition: None,
        }
    }

    /// Calls `observer` on every state change (from the thread that caused it; keep it quick).
    pub fn on_transition(mut self, observer: impl Fn(Transition) + Send + Sync + 'static) -> Self {
        self.on_transition = Some(Arc::new(observer));
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the counters half-updated in a way that
        // matters more than refusing every call would.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state (an open breaker whose delay passed reports `Open` until the next call).
    pub fn state(&self) -> BreakerState {
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Admits a call, or refuses it with the time to wait.
    pub fn acquire(&self) -> Result<Permit<'_>, Rejected> {
        let now = Instant::now();
        let mut transition = None;
        let result = {
            let mut inner = self.lock();
            let config = inner.config;
            match inner.state {
                State::Closed => Ok(false),
                State::Open { until } if now < until => Err(Rejected {
                    retry_after: until - now,
                }),
                State::Open { .. } => {
                    inner.state = State::HalfOpen {
                        admitted: 1,
                        succeeded: 0,
                    };
                    transition = Some((BreakerState::Open, BreakerState::HalfOpen));
                    Ok(true)
                }
                State::HalfOpen {
                    ref mut admitted, ..
                } => {
                    if *admitted < config.half_open_probes.max(1) {
                        *admitted += 1;
                        Ok(true)
                    } else {
                        Err(Rejected {
                            retry_after: config.open_delay,
                        })
                    }
                }
            }
        };
        self.notify(transition);
        result.map(|probe| Permit {
            breaker: self,
            probe,
            recorded: false,
        })
    }

    fn notify(&self, transition: Option<Transition>) {
        if let (Some(t), Some(observer)) = (transition, &self.on_transition) {
            tracing::info!(from = ?t.0, to = ?t.1, "circuit breaker changed state");
            observer(t);
        }
    }

    /// The delay of the n-th opening in a row (1-based), capped, without overflow.
    pub fn open_delay(&self, opening: u32) -> Duration {
        delay(&self.lock().config, opening)
    }

    /// The current settings.
    pub fn config(&self) -> BreakerConfig {
        self.lock().config
    }

    /// Replaces the settings while running (a configuration reload). The state is kept; the
    /// new thresholds apply from the next outcome, the new delays from the next opening.
    pub fn set_config(&self, config: BreakerConfig) {
        let mut inner = self.lock();
        while inner.window.len() > config.window {
            inner.window.pop_front();
        }
        inner.config = config;
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.reopenings = inner.reopenings.saturating_add(1);
        inner.state = State::Open {
            until: now + delay(&inner.config, inner.reopenings),
        };
        inner.failures_in_row = 0;
        inner.window.clear();
    }

    fn record(&self, probe: bool, outcome: Outcome) {
        let now = Instant::now();
        let mut transition = None;
        {
            let mut inner = self.lock();
            let config = inner.config;
            match (&mut inner.state, probe) {
                (
                    State::HalfOpen {
                        admitted,
                        succeeded,
                    },
                    true,
                ) => match outcome {
                    Outcome::Success => {
                        *succeeded += 1;
                        if *succeeded >= config.half_open_probes.max(1) {
                            inner.state = State::Closed;
                            inner.reopenings = 0;
                            transition = Some((BreakerState::HalfOpen, BreakerState::Closed));
                        }
                    }
                    Outcome::Failure => {
                        self.open(&mut inner, now);
                        transition = Some((BreakerState::HalfOpen, BreakerState::Open));
                    }
                    // The probe proved nothing: give its slot back.
                    Outcome::Ignored => *admitted = admitted.saturating_sub(1),
                },
                (State::Closed, false) => {
                    if outcome == Outcome::Ignored {
                        return;
                    }
                    let failed = outcome == Outcome::Failure;
                    inner.failures_in_row = if failed { inner.failures_in_row + 1 } else { 0 };
                    if config.window > 0 {
                        while inner.window.len() >= config.window {
                            inner.window.pop_front();
                        }
                        inner.window.push_back(failed);
                    }
                    if self.should_open(&inner) {
                        self.open(&mut inner, now);
                        transition = Some((BreakerState::Closed, BreakerState::Open));
                    }
                }
                // An outcome from before the last change of state says nothing about now.
                _ => {}
            }
        }
        self.notify(transition);
    }

    fn should_open(&self, inner: &Inner) -> bool {
        let c = &inner.config;
        if c.consecutive_failures > 0 && inner.failures_in_row >= c.consecutive_failures {
            return true;
        }
        let calls = inner.window.len();
        if c.window == 0 || calls == 0 || calls < c.min_calls.max(1) {
            return false;
        }
        let failures = inner.window.iter().filter(|f| **f).count();
        failures as f64 / calls as f64 >= c.failure_rate
    }
}

/// The delay of the n-th opening in a row (1-based) under `config`, capped, without overflow.
fn delay(config: &BreakerConfig, opening: u32) -> Duration {
    let factor = 1u32
        .checked_shl(opening.saturating_sub(1))
        .unwrap_or(u32::MAX);
    config
        .open_delay
        .checked_mul(factor)
        .unwrap_or(config.max_open_delay)
        .min(config.max_open_delay)
}

impl Permit<'_> {
    /// Reports the call's outcome.
    pub fn record(mut self, outcome: Outcome) {
        self.recorded = true;
        self.breaker.record(self.probe, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            // Cancelled: neither success nor failure, but a probe's slot must be given back.
            self.breaker.record(self.probe, Outcome::Ignored);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            window: 0,
            min_calls: 0,
            failure_rate: 1.0,
            open_delay: Duration::from_secs(1),
            max_open_delay: Duration::from_secs(8),
            half_open_probes: 1,
        }
    }

    fn fail(b: &CircuitBreaker, n: usize) {
        for _ in 0..n {
            b.acquire().unwrap().record(Outcome::Failure);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_it_and_successes_reset_the_count() {
        let b = CircuitBreaker::new(config());
        fail(&b, 2);
        b.acquire().unwrap().record(Outcome::Success);
        fail(&b, 2);
        assert_eq!(b.state(), BreakerState::Closed);
        b.acquire().unwrap().record(Outcome::Ignored); // says nothing
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.acquire().err().unwrap();
        assert_eq!(rejected.retry_after, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn settings_change_while_running() {
        let b = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 5,
            ..config()
        });
        fail(&b, 2);
        // A lower threshold applies from the next outcome; the count so far is kept.
        b.set_config(BreakerConfig {
            consecutive_failures: 3,
            open_delay: Duration::from_secs(5),
            max_open_delay: Duration::from_secs(5),
            ..config()
        });
        assert_eq!(b.config().consecutive_failures, 3);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(
            b.acquire().err().unwrap().retry_after,
            Duration::from_secs(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_over_the_window_opens_it_once_enough_calls_were_seen() {
        let b = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 0,
            window: 10,
            min_calls: 6,
            failure_rate: 0.5,
            ..config()
        });
        use Outcome::{Failure as F, Success as S};
        for outcome in [F, S, F, S, S] {
            b.acquire().unwrap().record(outcome);
        }
        assert_eq!(b.state(), BreakerState::Closed, "2 of 5: below min_calls");
        for outcome in [S, F] {
            b.acquire().unwrap().record(outcome);
        }
        assert_eq!(b.state(), BreakerState::Closed, "3 of 7 failed");
        b.acquire().unwrap().record(F); // 4 of 8: 50%
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_admits_one_probe_and_closes_on_its_success() {
        let b = CircuitBreaker::new(config());
        fail(&b, 3);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(b.acquire().is_err(), "still open");
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = b.acquire().expect("the probe is admitted");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.acquire().is_err(), "only one probe at a time");
        probe.record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        b.acquire().unwrap().record(Outcome::Success);
    }

    #[tokio::test(start_paused = true)]
    async fn each_reopening_waits_longer_up_to_the_cap() {
        let b = CircuitBreaker::new(config());
        fail(&b, 3);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let wait = b.acquire().err().unwrap().retry_after;
            waits.push(wait.as_secs());
            tokio::time::advance(wait).await;
            b.acquire().unwrap().record(Outcome::Failure); // the probe fails
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert_eq!(
            b.open_delay(u32::MAX),
            Duration::from_secs(8),
            "no overflow"
        );
        // Once closed again, the next opening starts from the first delay.
        tokio::time::advance(Duration::from_secs(8)).await;
        b.acquire().unwrap().record(Outcome::Success);
        fail(&b, 3);
        assert_eq!(
            b.acquire().err().unwrap().retry_after,
            Duration::from_secs(1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_probe_gives_its_slot_back() {
        let b = CircuitBreaker::new(config());
        fail(&b, 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(b.acquire().unwrap()); // cancelled without an outcome
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.acquire().expect("another probe").record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn several_probes_must_all_succeed() {
        let b = CircuitBreaker::new(BreakerConfig {
            half_open_probes: 2,
            ..config()
        });
        fail(&b, 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        let (p1, p2) = (b.acquire().unwrap(), b.acquire().unwrap());
        assert!(b.acquire().is_err());
        p1.record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        p2.record(Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_reported() {
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let b = CircuitBreaker::new(config()).on_transition(move |t| log.lock().unwrap().push(t));
        fail(&b, 3);
        tokio::time::advance(Duration::from_secs(1)).await;
        b.acquire().unwrap().record(Outcome::Success);
        use BreakerState::*;
        assert_eq!(
            *seen.lock().unwrap(),
            [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
        );
    }
}
