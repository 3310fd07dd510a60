//! hexkv's REST adapter: the key-value routes over the driving port [`KeyValueApi`], for the
//! platform to serve.
//!
//! | route | does | access |
//! |---|---|---|
//! | `GET /v1/kv/{key}` | the raw value, `ETag: "<version>"`; `If-None-Match` → 304 | read the key |
//! | `PUT /v1/kv/{key}` | writes the raw body; 201 created / 200 replaced; `If-Match`, `If-None-Match: *` | write the key |
//! | `DELETE /v1/kv/{key}` | 204, also when absent; `If-Match` | write the key |
//! | `GET /v1/kv?prefix=&limit=&cursor=` | `{items: [{key, version}], next_cursor}` | list the prefix |
//!
//! [`routes`] is the route table, each route with the access it declares
//! ([`hexkv_platform::http::access`]: the key a route reads or writes, the prefix it lists).
//! The platform serves it ([`hexkv_platform::http::stack::HttpStack`]): admission, the request
//! timeout, load shedding and the body limit around these routes, and beside them
//! `GET /healthz`, `GET /readyz`, `GET /metrics` and `GET /openapi.json` ([`openapi`]
//! documents them all). [`router_with`] is that whole, standalone, for tests. Keys may contain
//! `/` (`/v1/kv/users/42` names the key `users/42`) and are percent-decoded. Every error is
//! `application/problem+json` with a stable `code` and the `request_id` (see [`error`]). The
//! adapter knows nothing of stores: it holds an `Arc<dyn KeyValueApi>`.

pub mod error;
mod kv;
pub use hexkv_platform::http::observe;
pub mod openapi;
mod operations;
pub use hexkv_platform::http::request_id;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get};
use hexkv_core::KeyValueApi;
use hexkv_platform::auth::AuthPolicy;
use hexkv_platform::health::{CheckResult, Readiness, ReadinessCheck};
use hexkv_platform::http::access::{Access, Admission, Routes};
use hexkv_platform::http::stack::HttpStack;

pub use error::ApiError;

/// The paths of the routes, as the router matches them and as the `route` label names them.
pub(crate) mod routes {
    /// `GET/PUT/DELETE /v1/kv/{key}`: one key (the key may hold `/`).
    pub(crate) const KEY: &str = "/v1/kv/{*key}";
    /// `GET /v1/kv`: listing.
    pub(crate) const LIST: &str = "/v1/kv";
    /// `/v1/kv/`: the empty key, refused.
    pub(crate) const EMPTY_KEY: &str = "/v1/kv/";
}

/// What the handlers share: behind one `Arc`, since axum clones the state for every request.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// The contents of [`AppState`].
pub(crate) struct Shared {
    api: Arc<dyn KeyValueApi>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// Settings of the standalone router ([`router_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// The largest request body accepted, in bytes (bodies are values, so this is the value
    /// limit); larger bodies get 413 before they are read in full.
    pub max_body_bytes: usize,
    /// Requests handled at once at most; the excess gets 503 `overloaded` at once (load
    /// shedding). 0: no limit.
    pub max_in_flight: usize,
    /// A request still running after this long gets 504 and is cancelled
    /// (`deadline_exceeded`; `outcome_unknown` for a write). `None`: no limit.
    pub request_timeout: Option<std::time::Duration>,
}

/// The optional parts of the standalone router.
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

/// hexkv's key-value routes over `api`, each with the access it declares: a key's routes read
/// (`GET`, `HEAD`) or write (`PUT`, `DELETE`) the key in the path, the listing lists the prefix
/// in its query, and `/v1/kv/` (an empty key, refused with 400) needs any valid key. The
/// platform puts admission, the request timeout, load shedding and the body limit around them.
pub fn routes(api: Arc<dyn KeyValueApi>) -> Routes {
    // Problem types, the `WWW-Authenticate` realm: `urn:hexkv:problem:…`, `realm="hexkv"`.
    hexkv_platform::set_service_name("hexkv");
    Routes::new()
        .route(
            routes::KEY,
            Access::resource(kv::key_of),
            get(kv::get_value)
                .put(kv::put_value)
                .delete(kv::delete_value),
        )
        .route(
            routes::LIST,
            Access::list(kv::prefix_of),
            get(kv::list_keys),
        )
        .route(routes::EMPTY_KEY, Access::Authenticated, any(kv::empty_key))
        .with_state(AppState(Arc::new(Shared { api })))
}

/// `/readyz`'s check of the store: the service's readiness, whose `store` check asks the store
/// (through its guards, with their cached result).
pub fn store_check(api: Arc<dyn KeyValueApi>) -> impl ReadinessCheck {
    move || {
        let api = Arc::clone(&api);
        async move {
            let readiness = api.readiness().await;
            readiness
                .checks
                .into_iter()
                .find(|check| check.name == "store" && !check.ok)
                .map_or(Ok(()), |failed| -> CheckResult {
                    Err(failed
                        .detail
                        .unwrap_or_else(|| "the store fails".to_owned()))
                })
        }
    }
}

/// The application without the optional parts; see [`router_with`].
pub fn router(api: Arc<dyn KeyValueApi>, options: HttpOptions) -> Router {
    router_with(api, options, Extras::default())
}

/// [`routes`] as the platform serves them, standalone (for tests, and an application without
/// the platform's `Application`): serve it with `axum::serve(listener,
/// app.into_make_service_with_connect_info::<SocketAddr>())`, so that requests carry the
/// client's address (throttling and rollouts by address read it).
///
/// Every route is added to one table with the access it declares; one middleware admits each
/// routed request by that declaration ([`hexkv_platform::http::access`]): it identifies the
/// caller, throttles the key-value routes per client, and checks the key's role and prefix.
/// Every request, routed or not, gets a request id, a span, a log line and its metrics
/// labelled by the matched route ([`observe`]), and a panic becomes a 500. The key-value routes
/// also have the request timeout, load shedding and the body limit; the operational routes
/// (`/healthz`, `/readyz` over [`store_check`], `/metrics`, `/openapi.json`) and unknown routes
/// go without them, so that probes and scrapes keep answering while the service sheds load (a
/// liveness probe refused under load would get a busy replica restarted).
pub fn router_with(api: Arc<dyn KeyValueApi>, options: HttpOptions, extras: Extras) -> Router {
    let Extras {
        throttle,
        metrics,
        in_flight,
        auth,
    } = extras;
    let stack = HttpStack {
        admission: Admission { auth, throttle },
        in_flight: in_flight
            .unwrap_or_else(|| hexkv_resilience::InFlightLimit::new(options.max_in_flight)),
        request_timeout: options.request_timeout,
        max_body_bytes: options.max_body_bytes,
        readiness: Arc::new(Readiness::new().with_check("store", store_check(Arc::clone(&api)))),
        metrics,
        openapi: Some(openapi::document().into()),
    };
    stack.router(routes(api))
}

#[cfg(test)]
mod tests;
