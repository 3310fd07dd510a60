//! The one place where the key-value service's errors become gRPC statuses; the platform's own
//! refusals (unauthenticated, forbidden, throttled, shed, past the deadline) are built in
//! [`hexkv_platform::grpc::status`], the same way.
//!
//! Details use the standard `google.rpc` error model (via `tonic-types`), so generic clients can
//! read them: `BadRequest` names the offending field on INVALID_ARGUMENT, `ErrorInfo` carries the
//! current version on FAILED_PRECONDITION, `RetryInfo` the retry delay on UNAVAILABLE and
//! RESOURCE_EXHAUSTED. Internal causes are logged with their chain and never sent.
//!
//! Every UNAVAILABLE and throttling RESOURCE_EXHAUSTED carries an `ErrorInfo` (domain `hexkv`,
//! the service's name: [`hexkv_platform::service_name`])
//! whose reason says whether the call changed nothing — `OVERLOADED`, `THROTTLED`, `UNAVAILABLE`,
//! `READ_ONLY` — or may have been applied — `OUTCOME_UNKNOWN` — so that a client knows which
//! writes are safe to retry. DEADLINE_EXCEEDED on a write means outcome unknown too, as gRPC
//! defines that code.

use std::collections::HashMap;
use std::time::Duration;

use hexkv_core::{KvError, ListQueryError, ValueError};
use hexkv_platform::grpc::status::explained;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.reason` of a failed precondition.
pub(crate) const PRECONDITION_FAILED: &str = "PRECONDITION_FAILED";
/// The `ErrorInfo.metadata` key of the current version ("" when the key is absent).
pub(crate) const CURRENT_VERSION: &str = "current_version";

/// The `ErrorInfo.reason`s of the store's refusals that changed nothing, and of a write whose
/// outcome is unknown (the platform's are `OVERLOADED` and `THROTTLED`).
pub(crate) mod reason {
    /// The store refused (unreachable, breaker open, could not write): nothing changed.
    pub(crate) const UNAVAILABLE: &str = "UNAVAILABLE";
    /// Writes are switched off.
    pub(crate) const READ_ONLY: &str = "READ_ONLY";
    /// The write may or may not have been applied.
    pub(crate) const OUTCOME_UNKNOWN: &str = "OUTCOME_UNKNOWN";
}

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
                ErrorDetails::with_error_info(
                    PRECONDITION_FAILED,
                    hexkv_platform::service_name(),
                    metadata,
                ),
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
                ListQueryError::Prefix(_) | ListQueryError::PrefixTooLong { .. } => "prefix",
                ListQueryError::Limit { .. } => "limit",
                ListQueryError::Cursor => "cursor",
            };
            invalid_field(field, &e.to_string())
        }
        KvError::Unavailable {
            reason: why,
            retry_after,
        } => explained(
            Code::Unavailable,
            why,
            reason::UNAVAILABLE,
            Some(retry_after.unwrap_or(Duration::from_secs(1))),
        ),
        KvError::OutcomeUnknown { reason: why } => explained(
            Code::Unavailable,
            format!("{why}; the write may or may not have been applied: read the key to know"),
            reason::OUTCOME_UNKNOWN,
            None,
        ),
        KvError::FeatureDisabled(flag) => {
            Status::unimplemented(KvError::FeatureDisabled(flag).to_string())
        }
        KvError::ReadOnly => explained(
            Code::Unavailable,
            KvError::ReadOnly.to_string(),
            reason::READ_ONLY,
            None,
        ),
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

/// A request message longer than the service takes (the value limit plus framing):
/// RESOURCE_EXHAUSTED, as for a value over the limit.
pub(crate) fn message_too_large(len: usize, max: usize) -> Status {
    Status::with_error_details(
        Code::ResourceExhausted,
        format!("the request message is {len} bytes, more than the {max} bytes allowed"),
        ErrorDetails::with_bad_request_violation(
            "value",
            format!("the message is over {max} bytes"),
        ),
    )
}
