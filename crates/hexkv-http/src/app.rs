//! The application as one service: the routes of one key dispatched by method before any router,
//! every other route through an axum [`Router`], and the layers (request id, observation, caught
//! panics, authentication) wrapped once around both.
//!
//! ```mermaid
//! flowchart LR
//!   R[request] --> L[request id → observe → catch panic → auth]
//!   L --> D{path}
//!   D -- "/v1/kv/{key}: GET, PUT, DELETE" --> H[the key's handler, with its guard]
//!   D -- "/v1/kv/{key}: other methods" --> M[the key's method router: HEAD, 405]
//!   D -- anything else --> A[axum Router: list, probes, metrics, 404]
//! ```
//!
//! Why not one axum `Router` for everything: the key routes are nearly all of the traffic, and for
//! each of their requests a router matches the wildcard route, decodes and stores its parameter
//! (the handlers read the key from the path themselves), stores the matched path, and clones the
//! boxed, layered route; [`HttpApp`] does none of that for them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::handler::Handler;
use axum::response::Response;
use axum::routing::MethodRouter;
use axum::serve::{IncomingStream, Listener};
use tower::{Layer, Service, ServiceExt as _};

use crate::AppState;

/// The paths of the routes, for the router and for the `route` label of each request.
pub(crate) mod routes {
    /// `GET/PUT/DELETE /v1/kv/{key}`: one key (the key may hold `/`).
    pub(crate) const KEY: &str = "/v1/kv/{*key}";
    /// `GET /v1/kv`: listing.
    pub(crate) const LIST: &str = "/v1/kv";
    /// `/v1/kv/`: the empty key, refused.
    pub(crate) const EMPTY_KEY: &str = "/v1/kv/";
    pub(crate) const HEALTHZ: &str = "/healthz";
    pub(crate) const READYZ: &str = "/readyz";
    pub(crate) const METRICS: &str = "/metrics";
    pub(crate) const OPENAPI: &str = "/openapi.json";
    /// The label of a request no route serves.
    pub(crate) const UNMATCHED: &str = "unmatched";

    /// The route a request for `path` is served by (`metrics`: whether `/metrics` is served).
    pub(crate) fn of(path: &str, metrics: bool) -> &'static str {
        match path {
            _ if is_key(path) => KEY,
            LIST => LIST,
            EMPTY_KEY => EMPTY_KEY,
            HEALTHZ => HEALTHZ,
            READYZ => READYZ,
            OPENAPI => OPENAPI,
            METRICS if metrics => METRICS,
            _ => UNMATCHED,
        }
    }

    /// Whether `path` names one key: `/v1/kv/` and at least one more byte.
    pub(crate) fn is_key(path: &str) -> bool {
        path.len() > EMPTY_KEY.len() && path.starts_with(EMPTY_KEY)
    }
}

/// hexkv's REST application: a [`tower::Service`] of HTTP requests, cheap to clone (one reference
/// count), that `axum::serve` takes as it is (each connection gets a clone) or through
/// [`HttpApp::into_make_service_with_connect_info`] (each request then carries the client's
/// address, which throttling by address reads). Wrap it in more layers with [`HttpApp::layer`].
///
/// Inside, the middleware wraps everything once, and a GET, PUT or DELETE of one key goes straight
/// to its handler; the other routes go through an axum `Router`. For the key routes, nearly all of
/// the traffic, a router would match the wildcard route, decode and store its parameter (the
/// handlers read the key from the path), store the matched path and clone the boxed route on
/// every request.
#[derive(Clone)]
pub struct HttpApp(Arc<dyn Serve>);

/// What [`HttpApp`] holds: a service it can call through a shared reference.
trait Serve: Send + Sync + 'static {
    fn serve(&self, request: Request) -> ResponseFuture;
}

/// The future of an [`HttpApp`]'s response.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Serve for S
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
{
    fn serve(&self, request: Request) -> ResponseFuture {
        Box::pin(self.clone().oneshot(request))
    }
}

impl HttpApp {
    /// The application of `service`.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        Self(Arc::new(service))
    }

    /// This application inside `layer` (outermost).
    pub fn layer<L>(self, layer: L) -> Self
    where
        L: Layer<Self>,
        L::Service: Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Self::new(layer.layer(self))
    }

    /// A make-service for `axum::serve` that puts each connection's `C` (for a TCP listener,
    /// `SocketAddr`) on its requests as [`ConnectInfo`].
    pub fn into_make_service_with_connect_info<C>(self) -> WithConnectInfo<C> {
        WithConnectInfo {
            app: self,
            _connect_info: std::marker::PhantomData,
        }
    }
}

impl<B> Service<axum::http::Request<B>> for HttpApp
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: axum::http::Request<B>) -> ResponseFuture {
        self.0.serve(request.map(Body::new))
    }
}

/// `axum::serve(listener, app)`: every connection is served by a clone of the application.
impl<L: Listener> Service<IncomingStream<'_, L>> for HttpApp {
    type Response = Self;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: IncomingStream<'_, L>) -> Self::Future {
        std::future::ready(Ok(self.clone()))
    }
}

/// [`HttpApp::into_make_service_with_connect_info`].
pub struct WithConnectInfo<C> {
    app: HttpApp,
    _connect_info: std::marker::PhantomData<fn() -> C>,
}

impl<C> Clone for WithConnectInfo<C> {
    fn clone(&self) -> Self {
        Self {
            app: self.app.clone(),
            _connect_info: std::marker::PhantomData,
        }
    }
}

impl<'a, L, C> Service<IncomingStream<'a, L>> for WithConnectInfo<C>
where
    L: Listener,
    C: Connected<IncomingStream<'a, L>>,
{
    type Response = WithPeer<C>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'a, L>) -> Self::Future {
        std::future::ready(Ok(WithPeer {
            app: self.app.clone(),
            info: ConnectInfo(C::connect_info(stream)),
        }))
    }
}

/// The application serving one connection, whose `C` it puts on every request as
/// [`ConnectInfo`].
#[derive(Clone)]
pub struct WithPeer<C> {
    app: HttpApp,
    info: ConnectInfo<C>,
}

impl<B, C> Service<axum::http::Request<B>> for WithPeer<C>
where
    B: axum::body::HttpBody<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
    C: Clone + Send + Sync + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> ResponseFuture {
        request.extensions_mut().insert(self.info.clone());
        self.app.call(request)
    }
}

/// Sends a request for one key straight to its handler by method (GET, PUT, DELETE), and every
/// other request to a router: the key's method router (HEAD, and 405 with `Allow` for the rest),
/// or the application's router.
///
/// `T` holds the handlers' extractor types, as axum's `Handler<T, S>` needs them named.
pub(crate) struct Dispatch<G, P, D, T> {
    shared: Arc<Routes<G, P, D>>,
    _extractors: std::marker::PhantomData<fn() -> T>,
}

impl<G, P, D, T> Clone for Dispatch<G, P, D, T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            _extractors: std::marker::PhantomData,
        }
    }
}

struct Routes<G, P, D> {
    state: AppState,
    get: G,
    put: P,
    delete: D,
    key_methods: MethodRouter,
    router: Router,
}

impl<G, P, D, T> Dispatch<G, P, D, T> {
    /// The handlers of one key's GET, PUT and DELETE; `key_methods` serves the key's other
    /// methods, `router` every other path.
    pub(crate) fn new(
        state: AppState,
        (get, put, delete): (G, P, D),
        key_methods: MethodRouter,
        router: Router,
    ) -> Self {
        Self {
            shared: Arc::new(Routes {
                state,
                get,
                put,
                delete,
                key_methods,
                router,
            }),
            _extractors: std::marker::PhantomData,
        }
    }
}

impl<G, P, D, TG, TP, TD> Service<Request> for Dispatch<G, P, D, (TG, TP, TD)>
where
    G: Handler<TG, AppState> + Sync,
    P: Handler<TP, AppState> + Sync,
    D: Handler<TD, AppState> + Sync,
{
    type Response = Response;
    type Error = Infallible;
    type Future = DispatchFuture<G::Future, P::Future, D::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let routes = &*self.shared;
        if routes::is_key(request.uri().path()) {
            let state = routes.state.clone();
            match *request.method() {
                axum::http::Method::GET => {
                    return DispatchFuture::Get {
                        inner: routes.get.clone().call(request, state),
                    };
                }
                axum::http::Method::PUT => {
                    return DispatchFuture::Put {
                        inner: routes.put.clone().call(request, state),
                    };
                }
                axum::http::Method::DELETE => {
                    return DispatchFuture::Delete {
                        inner: routes.delete.clone().call(request, state),
                    };
                }
                _ => {
                    let mut key_methods = routes.key_methods.clone();
                    return DispatchFuture::Routed {
                        inner: Service::call(&mut key_methods, request),
                    };
                }
            }
        }
        let mut router = routes.router.clone();
        DispatchFuture::Routed {
            inner: Service::call(&mut router, request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`Dispatch`]: one of the key's handlers, or a router's.
    #[project = DispatchProj]
    pub(crate) enum DispatchFuture<G, P, D> {
        Get { #[pin] inner: G },
        Put { #[pin] inner: P },
        Delete { #[pin] inner: D },
        Routed { #[pin] inner: axum::routing::future::RouteFuture<Infallible> },
    }
}

impl<G, P, D> Future for DispatchFuture<G, P, D>
where
    G: Future<Output = Response>,
    P: Future<Output = Response>,
    D: Future<Output = Response>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            DispatchProj::Get { inner } => inner.poll(cx).map(Ok),
            DispatchProj::Put { inner } => inner.poll(cx).map(Ok),
            DispatchProj::Delete { inner } => inner.poll(cx).map(Ok),
            DispatchProj::Routed { inner } => inner.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::routes;

    #[test]
    fn paths_are_labelled_with_their_route() {
        for (path, metrics, route) in [
            ("/v1/kv/a", false, routes::KEY),
            ("/v1/kv/users/42", false, routes::KEY),
            ("/v1/kv//", false, routes::KEY),
            ("/v1/kv/", false, routes::EMPTY_KEY),
            ("/v1/kv", false, routes::LIST),
            ("/v1/kvx", false, routes::UNMATCHED),
            ("/healthz", false, routes::HEALTHZ),
            ("/readyz", false, routes::READYZ),
            ("/openapi.json", false, routes::OPENAPI),
            ("/metrics", true, routes::METRICS),
            ("/metrics", false, routes::UNMATCHED),
            ("/", false, routes::UNMATCHED),
            ("/v2/kv/a", false, routes::UNMATCHED),
        ] {
            assert_eq!(routes::of(path, metrics), route, "{path}");
        }
    }
}
