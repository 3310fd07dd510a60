//! The one place where errors become gRPC statuses.
//!
//! Details use the standard `google.rpc` error model (via `tonic-types`), so generic clients can
//! read them: `BadRequest` names the offending field on INVALID_ARGUMENT, `ErrorInfo` carries the
//! current version on FAILED_PRECONDITION, `RetryInfo` the retry delay on UNAVAILABLE. Internal
//! causes are logged with their chain and never sent.

use std::collections::HashMap;
use std::time::Duration;

use hexkv_core::{KvError, ListQueryError, ValueError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of hexkv's errors.
pub(crate) const ERROR_DOMAIN: &str = "hexkv";
/// The `ErrorInfo.reason` of a failed precondition.
pub(crate) const PRECONDITION_FAILED: &str = "PRECONDITION_FAILED";
/// The `ErrorInfo.metadata` key of the current version ("" when the key is absent).
pub(crate) const CURRENT_VERSION: &str = "current_version";

/// INVALID_ARGUMENT naming `field`, with a `BadRequest` violation.
pub(crate) fn invalid_field(field: &'static str, description: &str) -> Status {
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field}: {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// Maps a service error to its status.
pub fn status(err: KvError) -> Status {
    match err {
        KvError::NotFound => Status::not_found("key not found"),
        KvError::PreconditionFailed { current } => {
            let metadata = HashMap::from([(
                CURRENT_VERSION.to_owned(),
                current.map(|v| v.to_string()).unwrap_or_default(),
            )]);
            Status::with_error_details(
                Code::FailedPrecondition,
                KvError::PreconditionFailed { current }.to_string(),
                ErrorDetails::with_error_info(PRECONDITION_FAILED, ERROR_DOMAIN, metadata),
            )
        }
        KvError::InvalidKey(e) => invalid_field("key", &e.to_string()),
        KvError::InvalidValue(e @ ValueError::TooLarge { .. }) => Status::with_error_details(
            Code::ResourceExhausted,
            format!("value: {e}"),
            ErrorDetails::with_bad_request_violation("value", e.to_string()),
        ),
        KvError::InvalidQuery(e) => {
            let field = match &e {
                ListQueryError::Prefix(_) => "prefix",
                ListQueryError::Limit { .. } => "limit",
                ListQueryError::Cursor => "cursor",
            };
            invalid_field(field, &e.to_string())
        }
        KvError::Unavailable {
            reason,
            retry_after,
        } => Status::with_error_details(
            Code::Unavailable,
            reason,
            ErrorDetails::with_retry_info(Some(retry_after.unwrap_or(Duration::from_secs(1)))),
        ),
        KvError::ReadOnly => Status::unavailable(KvError::ReadOnly.to_string()),
        KvError::Internal(cause) => {
            tracing::error!(
                error = %cause,
                cause = %hexkv_telemetry::ErrorChain(cause.as_ref()),
                "gRPC request failed"
            );
            Status::internal("internal error; it has been logged")
        }
    }
}
