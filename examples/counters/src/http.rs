//! The REST front end: `POST /v1/counters/{name}` adds, `GET /v1/counters/{name}` reads.
//! Errors are problem+json with a stable code, and every request gets hexkv's request id and
//! observation (a span, a log line, a latency histogram) by reusing its layers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hexkv_platform::health::Readiness;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;

use crate::{CounterError, CounterName, CounterService};

/// The body of `POST /v1/counters/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Add {
    /// What to add (negative to subtract).
    pub delta: i64,
}

/// A counter's value.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counter {
    /// The name.
    pub name: String,
    /// The value.
    pub value: i64,
}

/// The router, with the platform's `/healthz` and `/readyz` over `readiness`, and hexkv's
/// request-id and observation layers.
pub fn router(service: CounterService, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/v1/counters/{name}", get(read).post(add))
        .with_state(service)
        .merge(hexkv_platform::health::routes(readiness))
        .layer(
            ServiceBuilder::new()
                .layer(hexkv_platform::http::request_id::RequestIdLayer)
                .layer(hexkv_telemetry::ObserveLayer::new(
                    hexkv_platform::http::observe::HttpObserve::matched_path(),
                )),
        )
}

async fn read(
    State(service): State<CounterService>,
    Path(name): Path<String>,
) -> Result<Json<Counter>, Problem> {
    let name = CounterName::new(name)?;
    let value = service.get(&name).await?;
    Ok(Json(Counter {
        name: name.to_string(),
        value,
    }))
}

async fn add(
    State(service): State<CounterService>,
    Path(name): Path<String>,
    body: Result<Json<Add>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Counter>, Problem> {
    let name = CounterName::new(name)?;
    let Json(Add { delta }) = body.map_err(|e| Problem::InvalidBody(e.body_text()))?;
    let value = service.add(&name, delta).await?;
    Ok(Json(Counter {
        name: name.to_string(),
        value,
    }))
}

/// An error response.
#[derive(Debug)]
pub enum Problem {
    /// A domain error.
    Counter(CounterError),
    /// The body is not `{"delta": <integer>}`.
    InvalidBody(String),
}

impl From<CounterError> for Problem {
    fn from(e: CounterError) -> Self {
        Problem::Counter(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (status, code, detail) = match self {
            Problem::InvalidBody(detail) => (StatusCode::BAD_REQUEST, "invalid_body", detail),
            Problem::Counter(e) => {
                let (status, code) = match &e {
                    CounterError::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
                    CounterError::InvalidDelta => (StatusCode::BAD_REQUEST, "invalid_delta"),
                    CounterError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                    CounterError::Overflow => (StatusCode::CONFLICT, "overflow"),
                    CounterError::Unavailable(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
                    }
                };
                (status, code, e.to_string())
            }
        };
        let body = serde_json::json!({
            "type": format!("urn:counters:problem:{}", code.replace('_', "-")),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
            "request_id": hexkv_platform::http::request_id::current(),
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}
