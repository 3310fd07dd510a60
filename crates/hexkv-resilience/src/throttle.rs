//! Per-client throttling: a token bucket per client (governor's keyed GCRA).
//!
//! Each client, as the front ends identify it after authentication (an authenticated key's name,
//! else its address; the key type `K`), may make `per_minute` requests a minute on
//! average, with bursts of up to `burst`. A request over the rate is refused at once with the time
//! until it would be admitted (REST 429 + `Retry-After`, gRPC `RESOURCE_EXHAUSTED` +
//! `RetryInfo`), and other clients are not affected. Both front ends check one [`Throttle`], so a
//! client's REST and gRPC requests count together.
//!
//! Memory is bounded: when the limiter holds `max_clients` keys it forgets the fully replenished
//! ones, and if that is not enough it refuses requests (for a second) until keys replenish, so a
//! flood of fresh keys cannot grow the map.
//!
//! The book's throttle refills on a timer owned by one caller and keeps a plain map keyed by
//! port without synchronisation; here the refill is computed from time on each check (GCRA) and
//! the map is sharded and concurrent.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

type Keyed<K, C> =
    RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiter of one set of settings.
struct Limits<K: Hash + Eq + Clone, C: Clock> {
    limiter: Keyed<K, C>,
    settings: (u32, u32, usize),
}

/// A rate limiter keyed by `K`, with a bound on the keys it remembers. Its settings can change
/// while running ([`Throttle::set`]); a change starts every client's bucket afresh.
pub struct Throttle<K: Hash + Eq + Clone, C: Clock = DefaultClock> {
    /// `None`: throttling is off.
    limits: RwLock<Option<Limits<K, C>>>,
    clock: C,
}

impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for Throttle<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let limits = self.limits.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Throttle")
            .field("settings", &limits.as_ref().map(|l| l.settings))
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// `per_minute` requests a minute per key on average, bursts of `burst`, at most
    /// `max_clients` keys remembered. `per_minute` 0: off (every request admitted).
    pub fn new(per_minute: u32, burst: u32, max_clients: usize) -> Self {
        Self::with_clock(per_minute, burst, max_clients, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> Throttle<K, C> {
    /// As [`Throttle::new`], on `clock` (tests use a fake one).
    pub fn with_clock(per_minute: u32, burst: u32, max_clients: usize, clock: C) -> Self {
        let throttle = Self {
            limits: RwLock::new(None),
            clock,
        };
        throttle.set(per_minute, burst, max_clients);
        throttle
    }

    /// Changes the settings (`per_minute` 0 turns throttling off). The same settings again
    /// change nothing; new ones start every client's bucket afresh.
    pub fn set(&self, per_minute: u32, burst: u32, max_clients: usize) {
        let settings = (per_minute, burst, max_clients);
        let mut limits = self.limits.write().unwrap_or_else(|e| e.into_inner());
        if limits.as_ref().map(|l| l.settings) == Some(settings)
            || (per_minute == 0 && limits.is_none())
        {
            return;
        }
        *limits = (per_minute > 0).then(|| {
            let quota = Quota::per_minute(NonZeroU32::new(per_minute).expect("above 0"))
                .allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1"));
            Limits {
                limiter: RateLimiter::dashmap_with_clock(quota, self.clock.clone()),
                settings: (per_minute, burst, max_clients.max(1)),
            }
        });
    }

    /// Whether throttling is on.
    pub fn is_on(&self) -> bool {
        self.limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Admits a request from `key`, or says how long it must wait.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let limits = self.limits.read().unwrap_or_else(|e| e.into_inner());
        let Some(Limits {
            limiter,
            settings: (_, _, max_clients),
        }) = limits.as_ref()
        else {
            return Ok(());
        };
        if limiter.len() >= *max_clients {
            limiter.retain_recent();
            if limiter.len() >= *max_clients {
                // Full of clients that are all still being limited: refuse rather than grow.
                return Err(Duration::from_secs(1));
            }
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Keys remembered now.
    pub fn clients(&self) -> usize {
        self.limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |l| l.limiter.len())
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_client_over_its_rate_waits_and_others_are_unaffected() {
        let clock = FakeRelativeClock::default();
        let throttle = Throttle::with_clock(120, 3, 100, clock.clone());
        for _ in 0..3 {
            throttle.check(&"alice").unwrap(); // the burst
        }
        let wait = throttle.check(&"alice").unwrap_err();
        assert_eq!(wait, Duration::from_millis(500), "one token per 500 ms");
        throttle.check(&"bob").unwrap();
        clock.advance(Duration::from_millis(500));
        throttle.check(&"alice").unwrap();
        assert!(throttle.check(&"alice").is_err());
    }

    #[test]
    fn the_remembered_clients_are_bounded() {
        let clock = FakeRelativeClock::default();
        let throttle = Throttle::with_clock(60, 1, 10, clock.clone());
        for i in 0..10 {
            throttle.check(&format!("client-{i}")).unwrap();
        }
        assert_eq!(throttle.clients(), 10);
        // All ten are still limited: a request is refused rather than a key remembered.
        assert!(throttle.check(&"newcomer".to_owned()).is_err());
        assert_eq!(throttle.clients(), 10);
        // Once they are replenished they are forgotten, and newcomers get in.
        clock.advance(Duration::from_secs(2));
        throttle.check(&"newcomer".to_owned()).unwrap();
        assert!(throttle.clients() <= 10);
    }

    #[test]
    fn settings_change_while_running_and_zero_turns_it_off() {
        let clock = FakeRelativeClock::default();
        let throttle = Throttle::with_clock(0, 1, 10, clock.clone());
        assert!(!throttle.is_on());
        assert!((0..100).all(|_| throttle.check(&"alice").is_ok()));
        throttle.set(60, 1, 10);
        assert!(throttle.is_on());
        throttle.check(&"alice").unwrap();
        assert!(throttle.check(&"alice").is_err());
        // The same settings again keep the buckets.
        throttle.set(60, 1, 10);
        assert!(throttle.check(&"alice").is_err());
        // A larger burst starts them afresh.
        throttle.set(60, 3, 10);
        assert!((0..3).all(|_| throttle.check(&"alice").is_ok()));
        assert!(throttle.check(&"alice").is_err());
        throttle.set(0, 3, 10);
        assert!(throttle.check(&"alice").is_ok());
    }
}
