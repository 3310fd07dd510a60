//! Request timeout: a tower layer that answers a request still running after a limit, and
//! cancels it (its future is dropped, so the work stops).
//!
//! Generic over request and response types like [`crate::shed`]: REST answers 504 and gRPC
//! `DEADLINE_EXCEEDED`, each front end supplying its answer — one for every request (a closure),
//! or one chosen by the request when it starts ([`ByRequest`]: a write past its deadline may
//! have been applied, a read changed nothing). A request may also carry a shorter limit of its
//! own (gRPC's `grpc-timeout`), read by [`DeadlineLayer::with_caller_limit`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

/// Answers `expired()` for requests that take longer than `limit`, or than the limit the
/// request itself carries (`caller`), whichever is shorter.
#[derive(Clone)]
pub struct DeadlineLayer<F, C = NoCallerLimit> {
    limit: Option<Duration>,
    expired: F,
    caller: C,
}

/// What a request that ran out of time is answered, chosen when the request starts (it is gone
/// by the time the deadline passes). Any `Fn() -> Response` closure answers every request alike.
pub trait Expired<Req, Resp> {
    /// The answer, made at most once.
    type Answer: FnOnce() -> Resp;
    /// The answer for `request`.
    fn answer(&self, request: &Req) -> Self::Answer;
}

impl<Req, Resp, F: Fn() -> Resp + Clone> Expired<Req, Resp> for F {
    type Answer = F;

    fn answer(&self, _: &Req) -> F {
        self.clone()
    }
}

/// The answer chosen by the request: `ByRequest(|request| …)` returns the closure that makes it.
#[derive(Debug, Clone, Copy)]
pub struct ByRequest<G>(pub G);

impl<Req, Resp, G, A> Expired<Req, Resp> for ByRequest<G>
where
    G: Fn(&Req) -> A,
    A: FnOnce() -> Resp,
{
    type Answer = A;

    fn answer(&self, request: &Req) -> A {
        (self.0)(request)
    }
}

/// Reads the limit a request carries of its own, if any.
pub trait CallerLimit<Req> {
    /// The request's own limit.
    fn limit(&self, request: &Req) -> Option<Duration>;
}

/// Requests carry no limit of their own.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCallerLimit;

impl<Req> CallerLimit<Req> for NoCallerLimit {
    fn limit(&self, _: &Req) -> Option<Duration> {
        None
    }
}

impl<Req, G: Fn(&Req) -> Option<Duration>> CallerLimit<Req> for G {
    fn limit(&self, request: &Req) -> Option<Duration> {
        self(request)
    }
}

impl<F> DeadlineLayer<F> {
    /// A layer with a per-request `limit`.
    pub fn new(limit: Duration, expired: F) -> Self {
        Self::optional(Some(limit), expired)
    }

    /// A layer with a per-request `limit`, or none (then only a request's own limit applies).
    pub fn optional(limit: Option<Duration>, expired: F) -> Self {
        Self {
            limit,
            expired,
            caller: NoCallerLimit,
        }
    }
}

impl<F, C> DeadlineLayer<F, C> {
    /// Also honours the limit `caller` reads from each request, when shorter.
    pub fn with_caller_limit<D>(self, caller: D) -> DeadlineLayer<F, D> {
        DeadlineLayer {
            limit: self.limit,
            expired: self.expired,
            caller,
        }
    }
}

impl<S, F: Clone, C: Clone> Layer<S> for DeadlineLayer<F, C> {
    type Service = Deadline<S, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.limit,
            expired: self.expired.clone(),
            caller: self.caller.clone(),
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Clone)]
pub struct Deadline<S, F, C = NoCallerLimit> {
    inner: S,
    limit: Option<Duration>,
    expired: F,
    caller: C,
}

impl<S, F, C, Req> Service<Req> for Deadline<S, F, C>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    F: Expired<Req, S::Response>,
    C: CallerLimit<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future, F::Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let limit = match (self.limit, self.caller.limit(&request)) {
            (Some(ours), Some(theirs)) => Some(ours.min(theirs)),
            (ours, theirs) => ours.or(theirs),
        };
        let expired = self.expired.answer(&request);
        DeadlineFuture {
            inner: self.inner.call(request),
            timer: None,
            limit,
            expired: Some(expired),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Deadline`]. No allocation per request, and no timer for a
    /// request answered when first polled (most of them, on the memory store): the timer starts
    /// when the inner future first has to wait, `limit` from then (`None`: no limit).
    pub struct DeadlineFuture<Fut, F> {
        #[pin]
        inner: Fut,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Option<Duration>,
        expired: Option<F>,
    }
}

impl<Fut, F, R, E> Future for DeadlineFuture<Fut, F>
where
    Fut: Future<Output = Result<R, E>>,
    F: FnOnce() -> R,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        let Some(limit) = *this.limit else {
            return Poll::Pending;
        };
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(limit)));
        }
        let timer = this.timer.as_pin_mut().expect("the timer was just set");
        std::task::ready!(timer.poll(cx));
        let expired = this
            .expired
            .take()
            .expect("DeadlineFuture polled after completion");
        Poll::Ready(Ok(expired()))
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tower::ServiceExt;

    use super::*;

    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_gets_the_expired_answer_and_is_cancelled() {
        let dropped = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&dropped);
        let slow = tower::service_fn(move |delay: Duration| {
            let flag = Flag(Arc::clone(&seen));
            async move {
                tokio::time::sleep(delay).await;
                drop(flag);
                Ok::<_, Infallible>("done")
            }
        });
        let service = DeadlineLayer::new(Duration::from_millis(500), || "expired").layer(slow);

        let started = tokio::time::Instant::now();
        let answer = service
            .clone()
            .oneshot(Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(answer, "expired");
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        assert!(
            dropped.load(Ordering::SeqCst),
            "the slow request was cancelled"
        );

        let answer = service.oneshot(Duration::from_millis(100)).await.unwrap();
        assert_eq!(answer, "done");
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_limit_of_the_request_s_own_wins() {
        let slow = tower::service_fn(|own: Option<Duration>| async move {
            let _ = own;
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, Infallible>("done")
        });
        let service = DeadlineLayer::new(Duration::from_secs(2), || "expired")
            .with_caller_limit(|own: &Option<Duration>| *own)
            .layer(slow);
        for (own, took) in [
            (Some(Duration::from_millis(300)), Duration::from_millis(300)),
            (Some(Duration::from_secs(5)), Duration::from_secs(2)),
            (None, Duration::from_secs(2)),
        ] {
            let started = tokio::time::Instant::now();
            assert_eq!(service.clone().oneshot(own).await.unwrap(), "expired");
            assert_eq!(started.elapsed(), took, "{own:?}");
        }
        // Without a limit of the service's own, only the request's applies.
        let slow = tower::service_fn(|_: Option<Duration>| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Infallible>("done")
        });
        let service = DeadlineLayer::optional(None, || "expired")
            .with_caller_limit(|own: &Option<Duration>| *own)
            .layer(slow);
        assert_eq!(service.clone().oneshot(None).await.unwrap(), "done");
        let own = Some(Duration::from_millis(10));
        assert_eq!(service.oneshot(own).await.unwrap(), "expired");
    }

    /// The answer can depend on the request: here a write past its deadline is told apart from
    /// a read.
    #[tokio::test(start_paused = true)]
    async fn the_answer_is_chosen_by_the_request() {
        let slow = tower::service_fn(|_: &'static str| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Infallible>("done")
        });
        let service = DeadlineLayer::new(
            Duration::from_millis(10),
            ByRequest(|method: &&'static str| {
                let write = *method != "GET";
                move || if write { "outcome unknown" } else { "expired" }
            }),
        )
        .layer(slow);
        assert_eq!(service.clone().oneshot("GET").await.unwrap(), "expired");
        assert_eq!(service.oneshot("PUT").await.unwrap(), "outcome unknown");
    }

    /// A request answered at its first poll never starts a timer: this polls one outside any
    /// runtime, where starting a timer would panic.
    #[test]
    fn an_immediate_answer_starts_no_timer() {
        let ready = tower::service_fn(|()| async { Ok::<_, Infallible>("done") });
        let mut service = DeadlineLayer::new(Duration::from_millis(500), || "expired").layer(ready);
        let mut future = std::pin::pin!(service.call(()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(matches!(
            future.as_mut().poll(&mut cx),
            Poll::Ready(Ok("done"))
        ));
    }
}
