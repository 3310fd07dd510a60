//! Health endpoints for orchestrators.
//!
//! - `/healthz` (liveness) answers as long as the process serves HTTP and touches nothing else:
//!   a database outage must not get every replica restarted.
//! - `/readyz` (readiness) asks the service, which checks the store and whether it is draining;
//!   503 takes the replica out of the load balancer without restarting it.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hexkv_core::Check;
use serde::Serialize;

use crate::AppState;

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    checks: &'a [Check],
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /healthz`
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "The process serves HTTP (liveness)", body = crate::openapi::HealthDoc),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, response = crate::openapi::PermissionDenied),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn healthz() -> Response {
    no_store(
        Json(Health {
            status: "ok",
            checks: &[],
        })
        .into_response(),
    )
}

/// `GET /readyz`
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready for traffic", body = crate::openapi::HealthDoc),
        (status = 503, description = "Not ready (the store fails its check, or the service is draining)", body = crate::openapi::HealthDoc),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, response = crate::openapi::PermissionDenied),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.api.readiness().await;
    let ready = readiness.is_ready();
    let body = Health {
        status: if ready { "ready" } else { "not_ready" },
        checks: &readiness.checks,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    no_store((status, Json(body)).into_response())
}

/// `GET /metrics`: the Prometheus exposition (only routed when metrics are installed).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition (when `metrics.enabled`)", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, response = crate::openapi::Unauthenticated),
        (status = 403, response = crate::openapi::PermissionDenied),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .as_ref()
        .map(hexkv_telemetry::Metrics::render)
        .unwrap_or_default();
    no_store(
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            body,
        )
            .into_response(),
    )
}
