//! The one place where the key-value API's errors become HTTP responses: RFC 9457
//! `application/problem+json`, rendered by the platform's
//! [`Problem`].
//!
//! Every error a handler or an extractor of the key-value routes can produce is an
//! [`ApiError`]; its `IntoResponse` picks the status, the stable machine-readable `code`, and the
//! extra members (`current_version` on 412, `Retry-After` on 503). Internal causes are logged with
//! the request id and never sent. The platform answers its own refusals (401, 403, 429, unknown
//! routes) in the same shape.
//!
//! The codes tell a refused write (nothing changed: `overloaded`, `throttled`, `unavailable`,
//! `read_only`, every 4xx) from one whose outcome is unknown (`outcome_unknown`: 504 when the
//! write passed the request timeout, 503 when the store lost its answer), which may have been
//! applied.
//!
//! ```json
//! {"type": "urn:hexkv:problem:precondition-failed", "title": "Precondition Failed", "status": 412,
//!  "code": "precondition_failed", "detail": "…", "request_id": "…", "current_version": 7}
//! ```

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hexkv_core::{KeyError, KvError, ValueError};
use hexkv_platform::http::problem::Problem;

use crate::request_id;

/// The media type of error bodies.
pub use hexkv_platform::http::problem::PROBLEM_JSON;

/// Everything that can go wrong in a request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// An error of the key-value service (or of parsing a domain type at the edge).
    #[error(transparent)]
    Kv(#[from] KvError),
    /// A request header is malformed or unsupported.
    #[error("invalid {name} header: {reason}")]
    Header {
        /// The header's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A query parameter is malformed.
    #[error("invalid query parameter {name}: {reason}")]
    Query {
        /// The parameter's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request body could not be read (too large, or the connection failed).
    #[error("{0}")]
    Body(#[from] BytesRejection),
    /// No route matches the path.
    #[error("no such resource")]
    RouteNotFound,
    /// The route exists but not for this method.
    #[error("method not allowed for this resource")]
    MethodNotAllowed,
    /// A handler panicked (a bug); the panic was caught.
    #[error("the request handler failed")]
    Panicked,
    /// The request ran past the request timeout and was cancelled (a read: nothing to undo).
    #[error("the request took longer than the service allows and was cancelled")]
    DeadlineExceeded,
    /// A write ran past the request timeout and was cancelled: the store may still apply it.
    #[error(
        "the write took longer than the service allows and was cancelled; it may or may not have \
         been applied: read the key to know"
    )]
    WriteDeadlineExceeded,
    /// Too many requests are in flight; this one was shed without being handled.
    #[error("the service is handling as many requests as it may; retry shortly")]
    Overloaded,
}

impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        Self::Kv(err.into())
    }
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Kv(err) => match err {
                KvError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
                KvError::PreconditionFailed { .. } => {
                    (StatusCode::PRECONDITION_FAILED, "precondition_failed")
                }
                KvError::InvalidKey(KeyError::TooLong { .. }) => {
                    (StatusCode::URI_TOO_LONG, "key_too_long")
                }
                KvError::InvalidKey(_) => (StatusCode::BAD_REQUEST, "invalid_key"),
                KvError::InvalidValue(ValueError::TooLarge { .. }) => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large")
                }
                KvError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
                KvError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                KvError::OutcomeUnknown { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown")
                }
                KvError::ReadOnly => (StatusCode::SERVICE_UNAVAILABLE, "read_only"),
                KvError::FeatureDisabled(_) => (StatusCode::NOT_FOUND, "feature_disabled"),
                KvError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            },
            ApiError::Header { .. } => (StatusCode::BAD_REQUEST, "invalid_header"),
            ApiError::Query { .. } => (StatusCode::BAD_REQUEST, "invalid_query"),
            ApiError::Body(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large")
            }
            ApiError::Body(rejection) => (rejection.status(), "invalid_body"),
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Panicked => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            ApiError::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            ApiError::WriteDeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown"),
        }
    }

    /// The time a client should wait before retrying, for transient failures.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Kv(KvError::Unavailable { retry_after, .. }) => {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            }
            ApiError::Overloaded => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Kv(KvError::Internal(_)) | ApiError::Panicked => {
                "an internal error occurred; it has been logged with this request id".to_owned()
            }
            ApiError::Body(rejection) => rejection.body_text(),
            other => other.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let request_id = request_id::current();
        // A bug gets an ERROR line with its cause chain; a store in trouble a WARN line with
        // the reason. Refusals by design (read-only, shed, throttled, timed out) get only the
        // request's own line.
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(
                code,
                error = %self,
                cause = %hexkv_telemetry::ErrorChain(&self),
                request_id = request_id.as_deref().unwrap_or("-"),
                "request failed"
            );
        } else if matches!(
            self,
            ApiError::Kv(KvError::Unavailable { .. } | KvError::OutcomeUnknown { .. })
        ) {
            tracing::warn!(
                code,
                error = %self,
                request_id = request_id.as_deref().unwrap_or("-"),
                "request failed: the store is unavailable"
            );
        }
        let mut problem = Problem::new(status, code, self.detail());
        if let ApiError::Kv(KvError::PreconditionFailed { current }) = &self {
            // The key's current version, `null` when absent.
            problem = problem.member("current_version", current.map(|v| v.get()));
        }
        if let Some(after) = self.retry_after() {
            problem = problem.retry_after(after);
        }
        problem.into_response()
    }
}
