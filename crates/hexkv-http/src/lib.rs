//! hexkv's REST adapter: an axum [`Router`] over the driving port [`KeyValueApi`].
//!
//! | route | does | access |
//! |---|---|---|
//! | `GET /v1/kv/{key}` | the raw value, `ETag: "<version>"`; `If-None-Match` → 304 | read the key |
//! | `PUT /v1/kv/{key}` | writes the raw body; 201 created / 200 replaced; `If-Match`, `If-None-Match: *` | write the key |
//! | `DELETE /v1/kv/{key}` | 204, also when absent; `If-Match` | write the key |
//! | `GET /v1/kv?prefix=&limit=&cursor=` | `{items: [{key, version}], next_cursor}` | list the prefix |
//! | `GET /healthz` | liveness: the process serves HTTP; touches nothing | open, or admin |
//! | `GET /readyz` | readiness: the store answers and the service is not draining | open, or admin |
//! | `GET /metrics` | Prometheus text, when the router is given the metrics ([`Extras`]) | open, or admin |
//! | `GET /openapi.json` | the OpenAPI document | open |
//!
//! Every route is in one table ([`router_with`]) with the access it declares
//! ([`hexkv_platform::http::access`]: the key a route reads or writes, the prefix it lists); a
//! route without a declaration is refused. Keys may contain `/` (`/v1/kv/users/42` names the
//! key `users/42`) and are percent-decoded. Every error is `application/problem+json` with a
//! stable `code` and the `request_id` (see [`error`]). The adapter knows nothing of stores: it
//! holds an `Arc<dyn KeyValueApi>`.

pub mod error;
mod health;
mod kv;
pub use hexkv_platform::http::observe;
pub mod openapi;
pub use hexkv_platform::http::request_id;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, delete, get, put};
use hexkv_core::KeyValueApi;
use hexkv_platform::auth::AuthPolicy;
use hexkv_platform::http::access::{Access, Admission, Routes};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;

/// The paths of the routes, as the router matches them and as the `route` label names them.
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
}

/// What the handlers share: behind one `Arc`, since axum clones the state for every request.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub(crate) struct Shared {
    api: Arc<dyn KeyValueApi>,
    metrics: Option<hexkv_telemetry::Metrics>,
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
    /// Per-client throttling of the key-value routes (`429 throttled` with `Retry-After`), keyed
    /// by the caller's identity: the authenticated key's name, else the peer address
    /// ([`hexkv_core::Identity`]).
    pub throttle: Option<Arc<hexkv_resilience::Throttle<hexkv_core::Identity>>>,
    /// Serve these metrics at `GET /metrics` (Prometheus text).
    pub metrics: Option<hexkv_telemetry::Metrics>,
    /// The load-shedding bound, shared so it can change while running; when given, it replaces
    /// [`HttpOptions::max_in_flight`].
    pub in_flight: Option<Arc<hexkv_resilience::InFlightLimit>>,
    /// API keys and what each may do; `None`: every request is let in.
    pub auth: Option<AuthPolicy>,
}

/// The application without the optional parts; see [`router_with`].
pub fn router(api: Arc<dyn KeyValueApi>, options: HttpOptions) -> Router {
    router_with(api, options, Extras::default())
}

/// The application: serve it with `axum::serve(listener,
/// app.into_make_service_with_connect_info::<SocketAddr>())`, so that requests carry the
/// client's address (throttling and rollouts by address read it).
///
/// Every route is added to one table with the access it declares; one middleware admits each
/// routed request by that declaration ([`hexkv_platform::http::access`]): it identifies the
/// caller, throttles the
/// key-value routes per client, and checks the key's role and prefix. Every request, routed or
/// not, gets a request id, a span, a log line and its metrics labelled by the matched route
/// ([`observe`]), and a panic becomes a 500. The key-value handlers also have the request
/// timeout, load shedding and (PUT) the body limit, as layers of their own; the operational
/// routes (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`) and unknown routes go without
/// them, so that probes and scrapes keep answering while the service sheds load (a liveness
/// probe refused under load would get a busy replica restarted).
pub fn router_with(api: Arc<dyn KeyValueApi>, options: HttpOptions, extras: Extras) -> Router {
    let Extras {
        throttle,
        metrics,
        in_flight,
        auth,
    } = extras;
    // Problem types, the `WWW-Authenticate` realm: `urn:hexkv:problem:…`, `realm="hexkv"`.
    hexkv_platform::set_service_name("hexkv");
    let serve_metrics = metrics.is_some();
    let state = AppState(Arc::new(Shared { api, metrics }));
    let in_flight = in_flight.or_else(|| {
        (options.max_in_flight > 0)
            .then(|| hexkv_resilience::InFlightLimit::new(options.max_in_flight))
    });
    route_table(&options, in_flight, serve_metrics)
        .into_router(
            Admission { auth, throttle },
            || async { ApiError::RouteNotFound },
            || async { ApiError::MethodNotAllowed },
        )
        // Outermost first, for every request, routed or not: request ids, observation (span, log
        // line, metrics by matched route), caught panics.
        .layer(
            ServiceBuilder::new()
                .layer(request_id::RequestIdLayer)
                .layer(hexkv_telemetry::ObserveLayer::new(observe::HttpObserve))
                .map_response(axum::response::IntoResponse::into_response)
                .layer(CatchPanicLayer::custom(|_| {
                    axum::response::IntoResponse::into_response(ApiError::Panicked)
                })),
        )
        .with_state(state)
}

/// The route table: every route with the access it declares. The key-value handlers carry the
/// request timeout, load shedding (`in_flight`) and (PUT) the body limit as layers of their own.
fn route_table(
    options: &HttpOptions,
    in_flight: Option<Arc<hexkv_resilience::InFlightLimit>>,
    serve_metrics: bool,
) -> Routes<AppState> {
    // The protection of the key-value routes, outermost first: the request timeout, then load
    // shedding (throttling is part of admission, which runs before both). A write past the
    // timeout may still be applied by the store, and says so (`outcome_unknown`).
    let guard = |expired: fn() -> ApiError| {
        ServiceBuilder::new()
            .option_layer(options.request_timeout.map(|limit| {
                hexkv_resilience::DeadlineLayer::new(limit, move || {
                    metrics::counter!(hexkv_telemetry::metrics::TIMED_OUT, "protocol" => "http")
                        .increment(1);
                    axum::response::IntoResponse::into_response(expired())
                })
            }))
            .option_layer(in_flight.clone().map(|limit| {
                hexkv_resilience::LoadShedLayer::with_limit(limit, || {
                    metrics::counter!(hexkv_telemetry::metrics::SHED, "protocol" => "http")
                        .increment(1);
                    axum::response::IntoResponse::into_response(ApiError::Overloaded)
                })
            }))
    };
    let read = guard(|| ApiError::DeadlineExceeded);
    let write = guard(|| ApiError::WriteDeadlineExceeded);
    let routes = Routes::new()
        .route(
            routes::KEY,
            Access::resource(kv::key_of),
            // Each method's guard is a `route_layer` of its own, built once with the router.
            get(kv::get_value)
                .route_layer(read.clone())
                .merge(
                    // The body limit only where a body is read.
                    put(kv::put_value).route_layer(
                        write
                            .clone()
                            .layer(DefaultBodyLimit::max(options.max_body_bytes)),
                    ),
                )
                .merge(delete(kv::delete_value).route_layer(write)),
        )
        .route(
            routes::LIST,
            Access::list(kv::prefix_of),
            get(kv::list_keys).route_layer(read),
        )
        // Answered at once (400), so without the guard.
        .route(routes::EMPTY_KEY, Access::Authenticated, any(kv::empty_key))
        .route(routes::HEALTHZ, Access::Health, get(health::healthz))
        .route(routes::READYZ, Access::Health, get(health::readyz))
        .route(routes::OPENAPI, Access::Public, get(openapi::openapi_json));
    if serve_metrics {
        routes.route(routes::METRICS, Access::Metrics, get(health::metrics))
    } else {
        routes
    }
}

#[cfg(test)]
mod tests;
