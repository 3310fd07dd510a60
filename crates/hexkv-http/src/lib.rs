//! hexkv's REST adapter: one tower service, [`HttpApp`], over the driving port [`KeyValueApi`]
//! (axum handlers; the routes of one key dispatched before any router, see [`HttpApp`]).
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/kv/{key}` | the raw value, `ETag: "<version>"`; `If-None-Match` → 304 |
//! | `PUT /v1/kv/{key}` | writes the raw body; 201 created / 200 replaced; `If-Match`, `If-None-Match: *` |
//! | `DELETE /v1/kv/{key}` | 204, also when absent; `If-Match` |
//! | `GET /v1/kv?prefix=&limit=&cursor=` | `{items: [{key, version}], next_cursor}` |
//! | `GET /healthz` | liveness: the process serves HTTP; touches nothing |
//! | `GET /readyz` | readiness: the store answers and the service is not draining |
//! | `GET /metrics` | Prometheus text, when the router is given the metrics ([`Extras`]) |
//!
//! Keys may contain `/` (`/v1/kv/users/42` names the key `users/42`) and are percent-decoded.
//! Every error is `application/problem+json` with a stable `code` and the `request_id` (see
//! [`error`]). The adapter knows nothing of stores: it holds an `Arc<dyn KeyValueApi>`.

mod app;
pub mod auth;
pub mod error;
mod health;
mod kv;
pub mod observe;
pub mod openapi;
pub mod request_id;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::routing::{any, get};
use hexkv_core::KeyValueApi;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

pub use app::{HttpApp, ResponseFuture, WithConnectInfo, WithPeer};
pub use error::ApiError;

use app::routes;

/// What the handlers share: behind one `Arc`, since axum clones the state for every request.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub(crate) struct Shared {
    api: Arc<dyn KeyValueApi>,
    metrics: Option<hexkv_telemetry::Metrics>,
    flags: Option<Arc<hexkv_core::FeatureFlags>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Settings of the HTTP adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// The largest request body accepted, in bytes (bodies are values, so this is the value
    /// limit); larger bodies get 413 before they are read in full.
    pub max_body_bytes: usize,
    /// Requests handled at once at most; the excess gets 503 `overloaded` at once (load
    /// shedding). 0: no limit.
    pub max_in_flight: usize,
    /// A request still running after this long gets 504 `deadline_exceeded` and is cancelled.
    /// `None`: no limit.
    pub request_timeout: Option<std::time::Duration>,
}

/// The optional parts of the router.
#[derive(Clone, Default)]
pub struct Extras {
    /// Per-client throttling (`429 throttled` with `Retry-After`), keyed by [`client_key`].
    pub throttle: Option<Arc<hexkv_resilience::Throttle>>,
    /// Serve these metrics at `GET /metrics` (Prometheus text).
    pub metrics: Option<hexkv_telemetry::Metrics>,
    /// Feature flags consulted per request (`list_keys` gates `GET /v1/kv`); `None`: every
    /// feature on.
    pub flags: Option<Arc<hexkv_core::FeatureFlags>>,
    /// The load-shedding bound, shared so it can change while running; when given, it replaces
    /// [`HttpOptions::max_in_flight`].
    pub in_flight: Option<Arc<hexkv_resilience::InFlightLimit>>,
    /// API keys and what each may do; `None`: every request is let in.
    pub auth: Option<auth::HttpAuth>,
}

/// The throttling key of a request: the name of the API key it was authenticated with, else its
/// `x-api-key` header when present, else the client's IP address (when the server records it,
/// `into_make_service_with_connect_info`).
pub fn client_key(request: &Request) -> String {
    if let Some(principal) = request.extensions().get::<hexkv_core::Principal>() {
        return format!("key:{}", principal.name);
    }
    hexkv_resilience::client_identity(
        request
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok()),
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
    )
}

/// The application without the optional parts; see [`router_with`].
pub fn router(api: Arc<dyn KeyValueApi>, options: HttpOptions) -> HttpApp {
    router_with(api, options, Extras::default())
}

/// The application, with its middleware: serve it with `axum::serve(listener, app)`, or
/// `app.into_make_service_with_connect_info::<SocketAddr>()` for throttling by client address.
///
/// Every request gets a request id, a span, a log line and its metrics ([`observe`]), and a
/// panic becomes a 500. The key-value handlers are also subject to throttling, the request
/// timeout, load shedding and (PUT) the body limit; the operational routes (`/healthz`,
/// `/readyz`, `/metrics`, `/openapi.json`) and unknown routes are not, so that probes and scrapes
/// keep answering while the service sheds load (a liveness probe refused under load would get a
/// busy replica restarted).
pub fn router_with(api: Arc<dyn KeyValueApi>, options: HttpOptions, extras: Extras) -> HttpApp {
    let Extras {
        throttle,
        metrics,
        flags,
        in_flight,
        auth,
    } = extras;
    let serve_metrics = metrics.is_some();
    let state = AppState(Arc::new(Shared {
        api,
        metrics,
        flags,
    }));
    let in_flight = in_flight.or_else(|| {
        (options.max_in_flight > 0)
            .then(|| hexkv_resilience::InFlightLimit::new(options.max_in_flight))
    });
    // The protection of the key-value routes, outermost first: throttling, the request timeout,
    // load shedding. It wraps their handlers, so the operational routes (probes, scrapes) and
    // unknown routes go without it, and a request is not cloned into two paths to choose from.
    let guard = ServiceBuilder::new()
        .option_layer(throttle.map(|throttle| {
            hexkv_resilience::ThrottleLayer::new(
                throttle,
                client_key,
                |wait: std::time::Duration| {
                    metrics::counter!(hexkv_telemetry::metrics::THROTTLED, "protocol" => "http")
                        .increment(1);
                    axum::response::IntoResponse::into_response(ApiError::Throttled(wait))
                },
            )
        }))
        .option_layer(options.request_timeout.map(|limit| {
            hexkv_resilience::DeadlineLayer::new(limit, || {
                metrics::counter!(hexkv_telemetry::metrics::TIMED_OUT, "protocol" => "http")
                    .increment(1);
                axum::response::IntoResponse::into_response(ApiError::DeadlineExceeded)
            })
        }))
        .option_layer(in_flight.map(|limit| {
            hexkv_resilience::LoadShedLayer::with_limit(limit, || {
                metrics::counter!(hexkv_telemetry::metrics::SHED, "protocol" => "http")
                    .increment(1);
                axum::response::IntoResponse::into_response(ApiError::Overloaded)
            })
        }));
    // The handlers of one key (`/v1/kv/{key}`, nearly all of the traffic) are called directly by
    // method ([`app`] says why); its other methods (HEAD, 405) go through a method router, every
    // other path through the router. The guard wraps each key-value handler.
    let get_value = kv::get_value.layer(guard.clone());
    // The body limit only where a body is read (it is an extension on the request, and one more
    // extension can make the map grow on every request), inside the guard: one layered handler.
    let put_value = kv::put_value.layer(
        guard
            .clone()
            .layer(DefaultBodyLimit::max(options.max_body_bytes)),
    );
    let delete_value = kv::delete_value.layer(guard.clone());
    let key_methods = get(get_value.clone())
        .put(put_value.clone())
        .delete(delete_value.clone())
        .fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone());
    let mut router = Router::new()
        .route(routes::LIST, get(kv::list_keys.layer(guard.clone())))
        .route(routes::EMPTY_KEY, any(kv::empty_key.layer(guard)))
        .route(routes::HEALTHZ, get(health::healthz))
        .route(routes::OPENAPI, get(openapi::openapi_json))
        .route(routes::READYZ, get(health::readyz));
    if serve_metrics {
        router = router.route(routes::METRICS, get(health::metrics));
    }
    let router = router
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state.clone());
    let dispatch = app::Dispatch::new(
        state,
        (get_value, put_value, delete_value),
        key_methods,
        router,
    );
    // Outermost first: request ids, observation (span, log line, metrics), caught panics,
    // authentication (before throttling, so a throttled client is a known one); the guard is on
    // the key-value handlers.
    HttpApp::new(
        ServiceBuilder::new()
            .layer(request_id::RequestIdLayer)
            .layer(hexkv_telemetry::ObserveLayer::new(
                observe::HttpObserve::hexkv(serve_metrics),
            ))
            .map_response(axum::response::IntoResponse::into_response)
            .layer(CatchPanicLayer::custom(|_| {
                axum::response::IntoResponse::into_response(ApiError::Panicked)
            }))
            .option_layer(
                auth.map(|auth| axum::middleware::from_fn_with_state(Arc::new(auth), auth::guard)),
            )
            .service(dispatch),
    )
}

#[cfg(test)]
mod tests;
