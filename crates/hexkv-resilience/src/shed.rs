//! Load shedding: a tower layer that bounds the requests in flight and answers the excess at
//! once, without queueing it.
//!
//! Under overload a queue only adds latency to every request and memory to the process; refusing
//! the excess immediately (503 with `Retry-After`, gRPC `UNAVAILABLE` with `RetryInfo`) keeps the
//! admitted requests fast and lets clients back off or go to another replica. The layer is
//! generic over the request and response types, so REST (axum) and gRPC (tonic) share it; each
//! front end supplies its own refusal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;
use tower::{Layer, Service};

/// Admits at most `max_in_flight` requests at a time; the rest get `reject()` at once.
#[derive(Clone)]
pub struct LoadShedLayer<F> {
    slots: Arc<Semaphore>,
    reject: F,
}

impl<F> LoadShedLayer<F> {
    /// A layer admitting `max_in_flight` concurrent requests (at least one).
    pub fn new(max_in_flight: usize, reject: F) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
            reject,
        }
    }
}

impl<S, F: Clone> Layer<S> for LoadShedLayer<F> {
    type Service = LoadShed<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShed {
            inner,
            slots: Arc::clone(&self.slots),
            reject: self.reject.clone(),
        }
    }
}

/// The service of [`LoadShedLayer`].
#[derive(Clone)]
pub struct LoadShed<S, F> {
    inner: S,
    slots: Arc<Semaphore>,
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
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => {
                let response = self.inner.call(request);
                Box::pin(async move {
                    let response = response.await;
                    drop(slot);
                    response
                })
            }
            // Built inside the future, where the request's task-locals (its request id) are set.
            Err(_) => {
                let reject = self.reject.clone();
                Box::pin(async move { Ok(reject()) })
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
}
