//! Request timeout: a tower layer that answers a request still running after a limit, and
//! cancels it (its future is dropped, so the work stops).
//!
//! Generic over request and response types like [`crate::shed`]: REST answers 504 and gRPC
//! `DEADLINE_EXCEEDED`, each front end supplying its answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

/// Answers `expired()` for requests that take longer than `limit`.
#[derive(Clone)]
pub struct DeadlineLayer<F> {
    limit: Duration,
    expired: F,
}

impl<F> DeadlineLayer<F> {
    /// A layer with a per-request `limit`.
    pub fn new(limit: Duration, expired: F) -> Self {
        Self { limit, expired }
    }
}

impl<S, F: Clone> Layer<S> for DeadlineLayer<F> {
    type Service = Deadline<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.limit,
            expired: self.expired.clone(),
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Clone)]
pub struct Deadline<S, F> {
    inner: S,
    limit: Duration,
    expired: F,
}

impl<S, F, Req> Service<Req> for Deadline<S, F>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    F: Fn() -> S::Response + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        DeadlineFuture {
            inner: self.inner.call(request),
            timer: None,
            limit: self.limit,
            expired: Some(self.expired.clone()),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Deadline`]. No allocation per request, and no timer for a
    /// request answered when first polled (most of them, on the memory store): the timer starts
    /// when the inner future first has to wait, `limit` from then.
    pub struct DeadlineFuture<Fut, F> {
        #[pin]
        inner: Fut,
        #[pin]
        timer: Option<tokio::time::Sleep>,
        limit: Duration,
        expired: Option<F>,
    }
}

impl<Fut, F, R, E> Future for DeadlineFuture<Fut, F>
where
    Fut: Future<Output = Result<R, E>>,
    F: Fn() -> R,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep(*this.limit)));
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
