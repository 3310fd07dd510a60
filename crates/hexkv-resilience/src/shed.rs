//! Load shedding: a tower layer that bounds the requests in flight and answers the excess at
//! once, without queueing it.
//!
//! Under overload a queue only adds latency to every request and memory to the process; refusing
//! the excess immediately (503 with `Retry-After`, gRPC `UNAVAILABLE` with `RetryInfo`) keeps the
//! admitted requests fast and lets clients back off or go to another replica. The layer is
//! generic over the request and response types, so REST (axum) and gRPC (tonic) share it; each
//! front end supplies its own refusal. The bound is an [`InFlightLimit`] that can change while
//! running (a configuration reload).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// The bound of a [`LoadShedLayer`] and its count of requests in flight.
#[derive(Debug)]
pub struct InFlightLimit {
    max: AtomicUsize,
    in_flight: AtomicUsize,
}

impl InFlightLimit {
    /// A bound of `max` requests in flight (0: no bound).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: AtomicUsize::new(max),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Changes the bound. Lowering it below the requests in flight refuses new ones until
    /// enough have finished; none is cut.
    pub fn set(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    /// The bound (0: none).
    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let max = self.max.load(Ordering::Relaxed);
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if max != 0 && before >= max {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(Arc::clone(self)))
    }
}

/// One admitted request; gives its place back when dropped.
/// A request's place under the bound, given back when dropped.
pub struct Slot(Arc<InFlightLimit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits at most the limit's requests at a time; the rest get `reject()` at once.
#[derive(Clone)]
pub struct LoadShedLayer<F> {
    limit: Arc<InFlightLimit>,
    reject: F,
}

impl<F> LoadShedLayer<F> {
    /// A layer admitting `max_in_flight` concurrent requests (0: no bound).
    pub fn new(max_in_flight: usize, reject: F) -> Self {
        Self::with_limit(InFlightLimit::new(max_in_flight), reject)
    }

    /// A layer over a shared, changeable limit.
    pub fn with_limit(limit: Arc<InFlightLimit>, reject: F) -> Self {
        Self { limit, reject }
    }

    /// The limit, to change it later.
    pub fn limit(&self) -> &Arc<InFlightLimit> {
        &self.limit
    }
}

impl<S, F: Clone> Layer<S> for LoadShedLayer<F> {
    type Service = LoadShed<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            limit: Arc::clone(&self.limit),
            reject: self.reject.clone(),
        }
    }
}

/// The service of [`LoadShedLayer`].
#[derive(Clone)]
pub struct LoadShed<S, F> {
    inner: S,
    limit: Arc<InFlightLimit>,
    reject: F,
}

impl<S, F, Req> Service<Req> for LoadShed<S, F>
where
    S: Service<Req>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
    F: Fn() -> S::Response + Clone + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ShedFuture<S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match self.limit.try_acquire() {
            Some(slot) => ShedFuture::Admitted {
                inner: self.inner.call(request),
                slot: Some(slot),
            },
            None => ShedFuture::Refused {
                reject: Some(self.reject.clone()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`LoadShed`] (no allocation per request): the inner service's,
    /// holding its slot until it finishes or is dropped, or the refusal.
    #[allow(missing_docs)]
    #[project = ShedProj]
    pub enum ShedFuture<Fut, F> {
        /// Admitted: the inner service answers.
        Admitted {
            #[pin]
            inner: Fut,
            slot: Option<Slot>,
        },
        /// Refused: `reject()` answers.
        Refused {
            reject: Option<F>,
        },
    }
}

impl<Fut, F, R, E> Future for ShedFuture<Fut, F>
where
    Fut: Future<Output = Result<R, E>>,
    F: Fn() -> R,
{
    type Output = Result<R, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ShedProj::Admitted { inner, slot } => {
                let response = std::task::ready!(inner.poll(cx));
                // The slot is free as soon as the answer is, not when the future is dropped.
                slot.take();
                Poll::Ready(response)
            }
            ShedProj::Refused { reject } => {
                let reject = reject.take().expect("ShedFuture polled after completion");
                Poll::Ready(Ok(reject()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Duration;

    use tower::ServiceExt;

    use super::*;

    /// A service that answers "done" after 1 s.
    fn slow() -> impl Service<(), Response = &'static str, Error = Infallible, Future: Send> + Clone
    {
        tower::service_fn(|()| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Infallible>("done")
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_excess_is_refused_at_once_and_the_admitted_complete() {
        let service = LoadShedLayer::new(3, || "overloaded").layer(slow());
        let started = tokio::time::Instant::now();
        let calls: Vec<_> = (0..5)
            .map(|_| tokio::spawn(service.clone().oneshot(())))
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            let answer = call.await.unwrap().unwrap();
            answers.push((answer, started.elapsed()));
        }
        let refused: Vec<_> = answers.iter().filter(|(a, _)| *a == "overloaded").collect();
        let done: Vec<_> = answers.iter().filter(|(a, _)| *a == "done").collect();
        assert_eq!((refused.len(), done.len()), (2, 3));
        // Refusals did not wait for the slow calls: they were answered before any completed.
        assert!(done.iter().all(|(_, t)| *t == Duration::from_secs(1)));

        // The slots are free again.
        assert_eq!(service.clone().oneshot(()).await.unwrap(), "done");
    }

    #[tokio::test(start_paused = true)]
    async fn the_bound_changes_while_running() {
        let layer = LoadShedLayer::new(1, || "overloaded");
        let service = layer.layer(slow());
        let first = tokio::spawn(service.clone().oneshot(()));
        tokio::task::yield_now().await;
        assert_eq!(layer.limit().in_flight(), 1);
        assert_eq!(service.clone().oneshot(()).await.unwrap(), "overloaded");
        // Raised: a second request gets in beside the first.
        layer.limit().set(2);
        let second = tokio::spawn(service.clone().oneshot(()));
        tokio::task::yield_now().await;
        assert_eq!(layer.limit().in_flight(), 2);
        // 0: no bound at all.
        layer.limit().set(0);
        let third = tokio::spawn(service.clone().oneshot(()));
        for call in [first, second, third] {
            assert_eq!(call.await.unwrap().unwrap(), "done");
        }
        assert_eq!(layer.limit().in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_request_gives_its_slot_back() {
        let layer = LoadShedLayer::new(1, || "overloaded");
        let service = layer.layer(slow());
        let first = tokio::spawn(service.clone().oneshot(()));
        tokio::task::yield_now().await;
        assert_eq!(layer.limit().in_flight(), 1);
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(layer.limit().in_flight(), 0);
        assert_eq!(service.clone().oneshot(()).await.unwrap(), "done");
        // A future polled to its answer frees its slot then, even if kept (called directly:
        // `oneshot` would drop the inner future as soon as it is done).
        let mut direct = service.clone();
        let mut kept = std::pin::pin!(direct.call(()));
        assert_eq!((&mut kept).await.unwrap(), "done");
        assert_eq!(layer.limit().in_flight(), 0);
    }
}
