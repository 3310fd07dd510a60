//! The operational routes, documented: the platform serves `/healthz`, `/readyz`, `/metrics`
//! and `/openapi.json` beside the key-value routes (`hexkv_platform::http::stack`); these are
//! their descriptions in hexkv's OpenAPI document, which is the contract of everything the REST
//! listener serves. They are never called.
#![allow(dead_code)]

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
pub(crate) async fn healthz() {}

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
pub(crate) async fn readyz() {}

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
pub(crate) async fn metrics() {}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json() {}
