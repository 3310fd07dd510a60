//! Calls of `hexkv.v1.KeyValue` go straight to its service; the other services (health,
//! reflection, any an application adds) through tonic's [`Routes`].
//!
//! ```mermaid
//! flowchart LR
//!   C[call] --> L[observe → throttle → deadline → shed]
//!   L --> D{path}
//!   D -- "/hexkv.v1.KeyValue/…" --> K[KeyValue service]
//!   D -- anything else --> R[tonic Routes: health, reflection, UNIMPLEMENTED]
//! ```
//!
//! tonic's `Routes` is an axum `Router` with a wildcard route per service: for every call it
//! matches the path, decodes and stores the wildcard parameter, stores the matched path, clones
//! the boxed route and boxes the request and response bodies once more. Key-value calls are
//! nearly all of the traffic, and the path prefix names their service exactly.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::service::Routes;
use tower::Service;
use tower::util::BoxCloneSyncService;

use crate::KeyValueGrpc;
use crate::pb::key_value_server::KeyValueServer;

/// Whether `path` names a method of `hexkv.v1.KeyValue`: `/hexkv.v1.KeyValue/{method}`.
fn is_key_value(path: &str) -> bool {
    use tonic::server::NamedService;
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(KeyValueServer::<KeyValueGrpc>::NAME))
        .is_some_and(|method| method.starts_with('/'))
}

/// `hexkv.v1.KeyValue` as an HTTP service: as generated, or behind the authentication
/// interceptor (boxed, since the interceptor changes the response body's type).
pub(crate) type KeyValueHttp = tower::util::Either<
    KeyValueServer<KeyValueGrpc>,
    BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>,
>;

/// Puts [`KeyValueFirst`] in front of the [`Routes`] tonic serves.
#[derive(Clone)]
pub(crate) struct KeyValueFirstLayer(pub(crate) KeyValueHttp);

impl tower::Layer<Routes> for KeyValueFirstLayer {
    type Service = KeyValueFirst;

    fn layer(&self, routes: Routes) -> KeyValueFirst {
        KeyValueFirst {
            key_value: self.0.clone(),
            routes,
        }
    }
}

/// Sends a call of `hexkv.v1.KeyValue` to its service, any other to `routes`.
#[derive(Clone)]
pub(crate) struct KeyValueFirst {
    key_value: KeyValueHttp,
    routes: Routes,
}

impl Service<http::Request<Body>> for KeyValueFirst {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = DispatchFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both are always ready; polled as the contract asks.
        if self.key_value.poll_ready(cx).is_pending() {
            return Poll::Pending;
        }
        Service::<http::Request<Body>>::poll_ready(&mut self.routes, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> DispatchFuture {
        if is_key_value(request.uri().path()) {
            DispatchFuture::KeyValue {
                inner: self.key_value.call(request),
            }
        } else {
            DispatchFuture::Other {
                inner: self.routes.call(request),
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`KeyValueFirst`].
    #[project = Projected]
    pub(crate) enum DispatchFuture {
        KeyValue { #[pin] inner: <KeyValueHttp as Service<http::Request<Body>>>::Future },
        Other { #[pin] inner: <Routes as Service<http::Request<Body>>>::Future },
    }
}

impl Future for DispatchFuture {
    type Output = Result<http::Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::KeyValue { inner } => inner.poll(cx),
            Projected::Other { inner } => inner.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_key_value;

    #[test]
    fn only_the_key_value_service_is_taken_first() {
        assert!(is_key_value("/hexkv.v1.KeyValue/Get"));
        assert!(is_key_value("/hexkv.v1.KeyValue/Unknown"));
        assert!(!is_key_value("/hexkv.v1.KeyValueX/Get"));
        assert!(!is_key_value("/grpc.health.v1.Health/Check"));
        assert!(!is_key_value("/hexkv.v1.KeyValue"));
        assert!(!is_key_value("hexkv.v1.KeyValue/Get"));
    }
}
