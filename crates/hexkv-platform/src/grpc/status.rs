//! The statuses of the platform's refusals, in one place: a caller without a valid key, or whose
//! key may not do this; a call over its client's rate, shed under load, past its deadline; an RPC
//! that declares no access. A service maps its own domain errors in its adapter, the same way.
//!
//! Every refusal that changed nothing and may be retried carries an `ErrorInfo` (its domain is
//! the service's name, [`service_name`](crate::service_name)) with the reason `THROTTLED` or
//! `OVERLOADED`, and a `RetryInfo` with the wait, so that a client knows a retry is safe and
//! when. DEADLINE_EXCEEDED on a write means its outcome is unknown, as gRPC defines that code.
//! A server stream that the drain ended says so with the reason `DRAINING`.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;

/// The `ErrorInfo.reason`s of the platform's refusals.
pub mod reason {
    /// Shed: more calls in flight than the service takes.
    pub const OVERLOADED: &str = "OVERLOADED";
    /// The client is over its rate.
    pub const THROTTLED: &str = "THROTTLED";
    /// The server is shutting down: a stream it ended, to be resumed on another replica.
    pub const DRAINING: &str = "DRAINING";
}

/// A status with an `ErrorInfo` of `reason` (domain: the service's name) and, when given, a
/// `RetryInfo`.
pub fn explained(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    retry: Option<Duration>,
) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(reason, crate::service_name(), HashMap::new());
    if retry.is_some() {
        details.set_retry_info(retry);
    }
    Status::with_error_details(code, message, details)
}

/// A call of an RPC that declares no access: not served, for anyone (also what a method that
/// does not exist gets).
pub fn undeclared(path: &str) -> Status {
    Status::unimplemented(format!("{path} is not served"))
}

/// A call that reached a method without passing admission: refused for everyone.
pub fn not_admitted() -> Status {
    Status::permission_denied("this call did not pass admission and is refused")
}

/// A refused authentication (UNAUTHENTICATED) or authorization (PERMISSION_DENIED).
pub fn auth(err: AuthError) -> Status {
    match err {
        AuthError::Forbidden { .. } => Status::permission_denied(err.to_string()),
        AuthError::Missing | AuthError::Invalid => Status::unauthenticated(err.to_string()),
    }
}

/// A throttled call: RESOURCE_EXHAUSTED, with the wait as `RetryInfo`.
pub fn throttled(wait: Duration) -> Status {
    metrics::counter!(hexkv_telemetry::metrics::THROTTLED, "protocol" => "grpc").increment(1);
    explained(
        Code::ResourceExhausted,
        "too many calls from this client; retry later",
        reason::THROTTLED,
        Some(wait),
    )
}

/// A call shed under load: UNAVAILABLE, retry in a second.
pub fn overloaded() -> Status {
    metrics::counter!(hexkv_telemetry::metrics::SHED, "protocol" => "grpc").increment(1);
    explained(
        Code::Unavailable,
        "the service is handling as many calls as it may; retry shortly",
        reason::OVERLOADED,
        Some(Duration::from_secs(1)),
    )
}

/// The end of a server stream when the drain begins ([`Drain::end_with`](crate::shutdown::Drain::end_with)):
/// UNAVAILABLE, reason `DRAINING`, retry at once (a new connection reaches a replica that is still
/// ready).
pub fn draining() -> Status {
    explained(
        Code::Unavailable,
        "the server is shutting down; resume the call",
        reason::DRAINING,
        Some(Duration::ZERO),
    )
}

/// A call past the request timeout (or its own `grpc-timeout`), cancelled: a write may or may not
/// have been applied.
pub fn deadline_exceeded() -> Status {
    metrics::counter!(hexkv_telemetry::metrics::TIMED_OUT, "protocol" => "grpc").increment(1);
    Status::deadline_exceeded(
        "the call took longer than allowed and was cancelled; a write may or may not have been \
         applied",
    )
}
