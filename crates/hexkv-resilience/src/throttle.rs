//! Per-client throttling: a token bucket per client key (governor's keyed GCRA), as a tower
//! layer both front ends share.
//!
//! Each key (an API key when the client sends one, else its address) may make `per_minute`
//! requests a minute on average, with bursts of up to `burst`. A request over the rate is refused
//! at once with the time until it would be admitted (REST 429 + `Retry-After`, gRPC
//! `RESOURCE_EXHAUSTED` + `RetryInfo`), and other clients are not affected.
//!
//! Memory is bounded: when the limiter holds `max_clients` keys it forgets the fully replenished
//! ones, and if that is not enough it refuses requests (for a second) until keys replenish, so a
//! flood of fresh keys cannot grow the map.
//!
//! The book's throttle refills on a timer owned by one caller and keeps a plain map keyed by
//! port without synchronisation; here the refill is computed from time on each check (GCRA) and
//! the map is sharded and concurrent.

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tower::{Layer, Service};

/// A client's identity, for throttling and feature-flag rollouts alike: its API key when it
/// sends one (`key:…`), else its IP address (`addr:…`), else `addr:unknown`.
pub fn client_identity(api_key: Option<&str>, ip: Option<std::net::IpAddr>) -> String {
    match (api_key, ip) {
        (Some(key), _) => format!("key:{key}"),
        (None, Some(ip)) => format!("addr:{ip}"),
        (None, None) => "addr:unknown".to_owned(),
    }
}

type Keyed<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiter of one set of settings.
struct Limits<C: Clock> {
    limiter: Keyed<C>,
    settings: (u32, u32, usize),
}

/// A keyed rate limiter with a bound on the keys it remembers. Its settings can change while
/// running ([`Throttle::set`]); a change starts every client's bucket afresh.
pub struct Throttle<C: Clock = DefaultClock> {
    /// `None`: throttling is off.
    limits: RwLock<Option<Limits<C>>>,
    clock: C,
}

impl Throttle {
    /// `per_minute` requests a minute per key on average, bursts of `burst`, at most
    /// `max_clients` keys remembered. `per_minute` 0: off (every request admitted).
    pub fn new(per_minute: u32, burst: u32, max_clients: usize) -> Self {
        Self::with_clock(per_minute, burst, max_clients, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Throttle<C> {
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
    pub fn check(&self, key: &str) -> Result<(), Duration> {
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
            .check_key(&key.to_owned())
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

/// Throttles requests by the key `key(&request)` returns; refused ones get `reject(wait)`.
pub struct ThrottleLayer<K, F> {
    throttle: Arc<Throttle>,
    key: K,
    reject: F,
}

impl<K: Clone, F: Clone> Clone for ThrottleLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            throttle: Arc::clone(&self.throttle),
            key: self.key.clone(),
            reject: self.reject.clone(),
        }
    }
}

impl<K, F> ThrottleLayer<K, F> {
    /// A layer over `throttle`.
    pub fn new(throttle: Arc<Throttle>, key: K, reject: F) -> Self {
        Self {
            throttle,
            key,
            reject,
        }
    }
}

impl<S, K: Clone, F: Clone> Layer<S> for ThrottleLayer<K, F> {
    type Service = Throttled<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttled {
            inner,
            throttle: Arc::clone(&self.throttle),
            key: self.key.clone(),
            reject: self.reject.clone(),
        }
    }
}

/// The service of [`ThrottleLayer`].
pub struct Throttled<S, K, F> {
    inner: S,
    throttle: Arc<Throttle>,
    key: K,
    reject: F,
}

impl<S: Clone, K: Clone, F: Clone> Clone for Throttled<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            throttle: Arc::clone(&self.throttle),
            key: self.key.clone(),
            reject: self.reject.clone(),
        }
    }
}

impl<S, K, F, Req> Service<Req> for Throttled<S, K, F>
where
    S: Service<Req>,
    K: Fn(&Req) -> String,
    F: Fn(Duration) -> S::Response + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ThrottledFuture<S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // Off: no key is computed, nothing is remembered, nothing is allocated.
        if !self.throttle.is_on() {
            return ThrottledFuture::Admitted {
                inner: self.inner.call(request),
            };
        }
        match self.throttle.check(&(self.key)(&request)) {
            Ok(()) => ThrottledFuture::Admitted {
                inner: self.inner.call(request),
            },
            // The refusal is built when the future is polled, inside whatever context the
            // outer layers set up for the request (the REST request id, for one).
            Err(wait) => ThrottledFuture::Refused {
                reject: Some(self.reject.clone()),
                wait,
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Throttled`]: the inner service's (`inner`), or the refusal
    /// (`reject(wait)`, made when first polled).
    #[allow(missing_docs)]
    #[project = ThrottledProj]
    pub enum ThrottledFuture<Fut, F> {
        /// Admitted: the inner service answers.
        Admitted {
            #[pin]
            inner: Fut,
        },
        /// Refused.
        Refused {
            reject: Option<F>,
            wait: Duration,
        },
    }
}

impl<Fut, F, R, E> Future for ThrottledFuture<Fut, F>
where
    Fut: Future<Output = Result<R, E>>,
    F: Fn(Duration) -> R,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ThrottledProj::Admitted { inner } => inner.poll(cx),
            ThrottledProj::Refused { reject, wait } => {
                let reject = reject.take().expect("polled after completion");
                Poll::Ready(Ok(reject(*wait)))
            }
        }
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
            throttle.check("alice").unwrap(); // the burst
        }
        let wait = throttle.check("alice").unwrap_err();
        assert_eq!(wait, Duration::from_millis(500), "one token per 500 ms");
        throttle.check("bob").unwrap();
        clock.advance(Duration::from_millis(500));
        throttle.check("alice").unwrap();
        assert!(throttle.check("alice").is_err());
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
        assert!(throttle.check("newcomer").is_err());
        assert_eq!(throttle.clients(), 10);
        // Once they are replenished they are forgotten, and newcomers get in.
        clock.advance(Duration::from_secs(2));
        throttle.check("newcomer").unwrap();
        assert!(throttle.clients() <= 10);
    }

    #[test]
    fn settings_change_while_running_and_zero_turns_it_off() {
        let clock = FakeRelativeClock::default();
        let throttle = Throttle::with_clock(0, 1, 10, clock.clone());
        assert!(!throttle.is_on());
        assert!((0..100).all(|_| throttle.check("alice").is_ok()));
        throttle.set(60, 1, 10);
        assert!(throttle.is_on());
        throttle.check("alice").unwrap();
        assert!(throttle.check("alice").is_err());
        // The same settings again keep the buckets.
        throttle.set(60, 1, 10);
        assert!(throttle.check("alice").is_err());
        // A larger burst starts them afresh.
        throttle.set(60, 3, 10);
        assert!((0..3).all(|_| throttle.check("alice").is_ok()));
        assert!(throttle.check("alice").is_err());
        throttle.set(0, 3, 10);
        assert!(throttle.check("alice").is_ok());
    }
}
