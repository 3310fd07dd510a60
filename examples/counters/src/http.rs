//! The REST front end: `POST /v1/counters/{name}` adds, `GET /v1/counters/{name}` reads.
//! Each route declares what it touches in the platform's route table: the counter its path
//! names, read by `GET` and changed by `POST`, which API keys are checked against (a key with
//! the prefix `team-a-` reads and adds `team-a-visits` only). Errors are the platform's
//! problem+json, with the domain's codes; the platform's
//! [`Application`](hexkv_platform::app::Application) adds admission, the request ids,
//! observation, limits and health routes around these routes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use hexkv_platform::http::access::{Access, PathTail, Routes};
use hexkv_platform::http::problem::Problem;
use serde::{Deserialize, Serialize};

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

/// The service's routes, each with the access it needs.
pub fn routes(service: CounterService) -> Routes {
    Routes::new()
        .route(
            "/v1/counters/{name}",
            Access::resource(PathTail("/v1/counters/")),
            get(read).post(add),
        )
        .with_state(service)
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
    let Json(Add { delta }) =
        body.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_body", e.body_text()))?;
    let value = service.add(&name, delta).await?;
    Ok(Json(Counter {
        name: name.to_string(),
        value,
    }))
}

/// The one place where the domain's errors become HTTP answers: the platform's problem+json,
/// with the domain's codes.
impl From<CounterError> for Problem {
    fn from(e: CounterError) -> Self {
        let (status, code) = match &e {
            CounterError::InvalidName(_) => (StatusCode::BAD_REQUEST, "invalid_name"),
            CounterError::InvalidDelta => (StatusCode::BAD_REQUEST, "invalid_delta"),
            CounterError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            CounterError::Overflow => (StatusCode::CONFLICT, "overflow"),
            CounterError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        Problem::new(status, code, e.to_string())
    }
}
