//! Error responses as RFC 9457 problem+json, with a stable machine-readable `code`:
//!
//! ```json
//! {"type": "urn:counters:problem:not-found", "title": "Not Found", "status": 404,
//!  "code": "not_found", "detail": "no counter named visits", "request_id": "…"}
//! ```
//!
//! A service maps its domain errors onto [`Problem`]s in its adapter (with extension members of
//! its own: [`Problem::member`]); the platform answers its own refusals (unauthenticated,
//! forbidden, shed, throttled, timed out, unknown route) the same way. The `type` URN is
//! named after the service ([`set_service_name`], which the
//! [`Application`](crate::app::Application) calls).

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The media type of a problem.
pub const PROBLEM_JSON: &str = "application/problem+json";

pub use crate::{service_name, set_service_name};

/// One error response; see the module docs.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    code: &'static str,
    detail: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    members: serde_json::Map<String, serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    status: u16,
    code: &'static str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(flatten)]
    members: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    /// A problem with `status`, the stable `code` (snake_case) and a human-readable `detail`.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            headers: Vec::new(),
            members: serde_json::Map::new(),
        }
    }

    /// Adds an extension member to the body (RFC 9457 §3.2), e.g. hexkv's `current_version`
    /// on 412. The standard members' names are the platform's.
    pub fn member(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.members.insert(name.to_owned(), value.into());
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Adds `Retry-After`, in whole seconds rounded up (at least 1).
    pub fn retry_after(mut self, wait: Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.headers
            .push((header::RETRY_AFTER, HeaderValue::from(seconds.max(1))));
        self
    }

    /// 401 `unauthenticated`, with `WWW-Authenticate: Bearer realm="<service>"`: no valid API
    /// key was presented.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        let realm = format!("Bearer realm=\"{}\"", service_name());
        let mut problem = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail);
        if let Ok(value) = HeaderValue::from_str(&realm) {
            problem.headers.push((header::WWW_AUTHENTICATE, value));
        }
        problem
    }

    /// 403 `permission_denied`: the key may not do this.
    pub fn permission_denied(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", detail)
    }

    /// 403 `permission_denied` for a route that declares no access, refused for everyone (a bug
    /// of the route table; see [`access`](crate::http::access)).
    pub fn undeclared() -> Self {
        Self::permission_denied("this route declares no access and is refused")
    }

    /// 500 `internal`: a bug, logged with the request id, whose details are never sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged with this request id",
        )
    }

    /// 404 `route_not_found`: no route has this path.
    pub fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "route_not_found", "no such route")
    }

    /// 405 `method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "the route does not take this method",
        )
    }

    /// 503 `overloaded` with `Retry-After: 1`: shed (too many requests in flight); nothing was
    /// done.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the service is handling as many requests as it may; retry shortly",
        )
        .retry_after(Duration::from_secs(1))
    }

    /// 504 `deadline_exceeded`: a read (`GET`, `HEAD`, `OPTIONS`) ran out of time and was
    /// cancelled.
    pub fn deadline_exceeded() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            "the request took longer than the service allows and was cancelled",
        )
    }

    /// 504 `outcome_unknown`: a write ran out of time and was cancelled, and may or may not
    /// have been applied (a retry is safe only if the write is idempotent).
    pub fn outcome_unknown() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "outcome_unknown",
            "the request took longer than the service allows and was cancelled; it may or may \
             not have been applied",
        )
    }

    /// 429 `throttled` with `Retry-After`: the client is over its rate.
    pub fn throttled(wait: Duration) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "too many requests from this client; retry later",
        )
        .retry_after(wait)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: format!(
                "urn:{}:problem:{}",
                service_name(),
                self.code.replace('_', "-")
            ),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: &self.detail,
            request_id: crate::http::request_id::current(),
            members: self.members,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_problem_is_problem_json_with_its_code_and_retry_after() {
        let response = Problem::throttled(Duration::from_millis(1_500)).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "throttled");
        assert_eq!(body["status"], 429);
        assert_eq!(body["title"], "Too Many Requests");
        assert!(
            body["type"]
                .as_str()
                .unwrap()
                .ends_with(":problem:throttled"),
            "{body}"
        );
    }
}
