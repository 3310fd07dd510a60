//! hexkv's REST adapter: an axum [`Router`] over the driving port [`KeyValueApi`].
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/kv/{key}` | the raw value, `ETag: "<version>"`; `If-None-Match` → 304 |
//! | `PUT /v1/kv/{key}` | writes the raw body; 201 created / 200 replaced; `If-Match`, `If-None-Match: *` |
//! | `DELETE /v1/kv/{key}` | 204, also when absent; `If-Match` |
//! | `GET /v1/kv?prefix=&limit=&cursor=` | `{items: [{key, version}], next_cursor}` |
//! | `GET /healthz` | liveness: the process serves HTTP; touches nothing |
//! | `GET /readyz` | readiness: the store answers and the service is not draining |
//!
//! Keys may contain `/` (`/v1/kv/users/42` names the key `users/42`) and are percent-decoded.
//! Every error is `application/problem+json` with a stable `code` and the `request_id` (see
//! [`error`]). The adapter knows nothing of stores: it holds an `Arc<dyn KeyValueApi>`.

pub mod error;
mod health;
mod kv;
pub mod request_id;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::{any, get};
use hexkv_core::KeyValueApi;
use tower::ServiceBuilder;
use tower_http::LatencyUnit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    api: Arc<dyn KeyValueApi>,
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

/// The throttling key of a request: its `x-api-key` header when present, else the client's IP
/// address (when the server records it, `into_make_service_with_connect_info`).
pub fn client_key(request: &Request) -> String {
    if let Some(key) = request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
    {
        return format!("key:{key}");
    }
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(
            || "addr:unknown".to_owned(),
            |c| format!("addr:{}", c.0.ip()),
        )
}

/// [`router`] with per-client throttling (`429 throttled` with `Retry-After`), keyed by
/// [`client_key`]. The throttle sits inside the request-id and trace layers, so a refusal carries
/// its request id and is logged like any other answer.
pub fn router_with_throttle(
    api: Arc<dyn KeyValueApi>,
    options: HttpOptions,
    throttle: Option<Arc<hexkv_resilience::Throttle>>,
) -> Router {
    build(api, options, throttle)
}

/// The application's router, with its middleware: request ids, a trace span per request, caught
/// panics, the request timeout, load shedding, and the body limit.
pub fn router(api: Arc<dyn KeyValueApi>, options: HttpOptions) -> Router {
    build(api, options, None)
}

fn build(
    api: Arc<dyn KeyValueApi>,
    options: HttpOptions,
    throttle: Option<Arc<hexkv_resilience::Throttle>>,
) -> Router {
    let state = AppState { api };
    Router::new()
        .route("/v1/kv", get(kv::list_keys))
        .route("/v1/kv/", any(kv::empty_key))
        .route(
            "/v1/kv/{*key}",
            get(kv::get_value)
                .put(kv::put_value)
                .delete(kv::delete_value),
        )
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // One `layer` call with the whole stack: every `Router::layer` call wraps each route in
        // another boxed, per-request-cloned service, so four calls cost four times the boxing.
        // Outermost first: request ids, the trace span, caught panics, throttling, the request
        // timeout, load shedding, the body limit. (The last four sit where the response is still
        // axum's own type.)
        .layer(
            ServiceBuilder::new()
                .layer(request_id::RequestIdLayer)
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request| {
                            let route = request
                                .extensions()
                                .get::<MatchedPath>()
                                .map_or("unmatched", MatchedPath::as_str);
                            let request_id = request
                                .headers()
                                .get(&request_id::REQUEST_ID_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            tracing::info_span!(
                                "request",
                                method = %request.method(),
                                route,
                                request_id,
                            )
                        })
                        .on_request(())
                        .on_response(
                            DefaultOnResponse::new()
                                .level(Level::INFO)
                                .latency_unit(LatencyUnit::Micros),
                        ),
                )
                .layer(CatchPanicLayer::custom(|_| {
                    axum::response::IntoResponse::into_response(ApiError::Panicked)
                }))
                .option_layer(throttle.map(|throttle| {
                    hexkv_resilience::ThrottleLayer::new(
                        throttle,
                        client_key,
                        |wait: std::time::Duration| {
                            axum::response::IntoResponse::into_response(ApiError::Throttled(wait))
                        },
                    )
                }))
                .option_layer(options.request_timeout.map(|limit| {
                    hexkv_resilience::DeadlineLayer::new(limit, || {
                        axum::response::IntoResponse::into_response(ApiError::DeadlineExceeded)
                    })
                }))
                .option_layer((options.max_in_flight > 0).then(|| {
                    hexkv_resilience::LoadShedLayer::new(options.max_in_flight, || {
                        axum::response::IntoResponse::into_response(ApiError::Overloaded)
                    })
                }))
                .layer(DefaultBodyLimit::max(options.max_body_bytes)),
        )
}

#[cfg(test)]
mod tests;
