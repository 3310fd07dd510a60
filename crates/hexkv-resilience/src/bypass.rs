//! Applying a layer to some requests only: [`BypassLayer`] sends the requests its predicate
//! picks straight to the inner service, and the others through the layer.
//!
//! The REST front end uses it to keep its operational routes (`/healthz`, `/readyz`,
//! `/metrics`) out of load shedding, throttling and the request timeout: a liveness probe
//! refused under load would get a busy replica restarted. Doing it in one layer, rather than
//! layering two routers, costs one branch per request instead of a second boxed service.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tower::{Layer, Service};

/// Wraps a service in `layer`, except for requests for which `bypass(&request)` is true.
#[derive(Debug, Clone)]
pub struct BypassLayer<L, P> {
    layer: L,
    bypass: P,
}

impl<L, P> BypassLayer<L, P> {
    /// `layer` for every request but those `bypass` picks.
    pub fn new(layer: L, bypass: P) -> Self {
        Self { layer, bypass }
    }
}

impl<S: Clone, L: Layer<S>, P: Clone> Layer<S> for BypassLayer<L, P> {
    type Service = Bypass<L::Service, S, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Bypass {
            guarded: self.layer.layer(inner.clone()),
            plain: inner,
            bypass: self.bypass.clone(),
        }
    }
}

/// The service of [`BypassLayer`].
#[derive(Debug, Clone)]
pub struct Bypass<G, S, P> {
    guarded: G,
    plain: S,
    bypass: P,
}

impl<G, S, P, Req> Service<Req> for Bypass<G, S, P>
where
    G: Service<Req, Response = S::Response, Error = S::Error>,
    S: Service<Req>,
    P: Fn(&Req) -> bool,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BypassFuture<G::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both paths must be ready, since the request decides which one is called.
        match self.guarded.poll_ready(cx)? {
            Poll::Ready(()) => self.plain.poll_ready(cx),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Req) -> Self::Future {
        if (self.bypass)(&request) {
            BypassFuture::Plain {
                inner: self.plain.call(request),
            }
        } else {
            BypassFuture::Guarded {
                inner: self.guarded.call(request),
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Bypass`]: the layered path's or the plain one's (`inner`).
    #[allow(missing_docs)]
    #[project = BypassProj]
    pub enum BypassFuture<G, S> {
        /// Through the layer.
        Guarded { #[pin] inner: G },
        /// Straight to the inner service.
        Plain { #[pin] inner: S },
    }
}

impl<G, S, T, E> Future for BypassFuture<G, S>
where
    G: Future<Output = Result<T, E>>,
    S: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            BypassProj::Guarded { inner } => inner.poll(cx),
            BypassProj::Plain { inner } => inner.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_picked_requests_skip_the_layer() {
        let echo = tower::service_fn(|n: u32| async move { Ok::<_, Infallible>(n) });
        let plus_1000 = tower::util::MapResponseLayer::new(|n: u32| n + 1000);
        let service = BypassLayer::new(plus_1000, |n: &u32| *n < 10).layer(echo);
        assert_eq!(service.clone().oneshot(3).await.unwrap(), 3);
        assert_eq!(service.clone().oneshot(42).await.unwrap(), 1042);
    }
}
