//! Typed client errors, decoded from gRPC statuses and their `google.rpc` details.

use std::time::Duration;

use hexkv_core::Version;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The key does not exist.
    #[error("key not found")]
    NotFound,
    /// The write's precondition does not hold; `current` is the key's version (`None`: absent).
    #[error("precondition failed: {}", describe_current(.current))]
    PreconditionFailed {
        /// The key's current version.
        current: Option<Version>,
    },
    /// The request is malformed; `field` names the culprit.
    #[error("invalid {field}: {message}")]
    InvalidArgument {
        /// The offending field (`key`, `prefix`, `limit`, `cursor`).
        field: String,
        /// Why.
        message: String,
    },
    /// The value (or the whole message) is over the server's limit.
    #[error("too large: {message}")]
    TooLarge {
        /// The server's explanation.
        message: String,
    },
    /// The server refused for now (rate limit); retry after the hint.
    #[error("throttled: {message}")]
    Throttled {
        /// The server's explanation.
        message: String,
        /// When to retry.
        retry_after: Option<Duration>,
    },
    /// A transient failure; a retry may succeed. `refused`: the server said it refused the call
    /// (shed, store unavailable, read-only), so nothing changed; otherwise (a connection that
    /// broke, a proxy's 503) a write may or may not have taken effect.
    #[error("unavailable: {message}")]
    Unavailable {
        /// The server's (or the transport's) explanation.
        message: String,
        /// When to retry, if the server said.
        retry_after: Option<Duration>,
        /// The server said nothing changed.
        refused: bool,
    },
    /// The server said the write was handed to the store and its answer was lost: it may or may
    /// not have taken effect. Read the key to know (or use an idempotency key).
    #[error("outcome unknown: {message}")]
    OutcomeUnknown {
        /// The server's explanation.
        message: String,
    },
    /// The call's deadline passed. A write may or may not have taken effect.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The endpoint could not be reached or the address is invalid.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// Any other status (`INTERNAL`, …), or a response the client cannot read (`DATA_LOSS`).
    #[error("{code:?}: {message}")]
    Other {
        /// The gRPC code (over HTTP, the closest one to the status).
        code: Code,
        /// The message.
        message: String,
    },
}

fn describe_current(current: &Option<Version>) -> String {
    match current {
        Some(v) => format!("the current version is {v}"),
        None => "the key does not exist".to_owned(),
    }
}

/// An error with its chain of causes: `outer: inner: root` (tonic's transport errors say little
/// without their causes).
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl hexkv_resilience::Retryable for ClientError {
    fn is_transient(&self) -> bool {
        ClientError::is_transient(self)
    }

    fn changed_nothing(&self) -> bool {
        ClientError::changed_nothing(self)
    }

    fn retry_after(&self) -> Option<Duration> {
        ClientError::retry_after(self)
    }
}

impl ClientError {
    /// Whether a retry may succeed: `Unavailable`, `Throttled` and `OutcomeUnknown`.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Throttled { .. } | Self::OutcomeUnknown { .. }
        )
    }

    /// Whether the server said the call changed nothing: it was refused (an error answer about
    /// the request itself, throttling, shedding, an unavailable store), or never reached it.
    /// `false` when a write may have been applied: [`ClientError::OutcomeUnknown`],
    /// [`ClientError::DeadlineExceeded`], an `Unavailable` the server did not vouch for (a
    /// connection lost mid-call, a proxy's answer), and other failures.
    pub fn changed_nothing(&self) -> bool {
        match self {
            Self::NotFound
            | Self::PreconditionFailed { .. }
            | Self::InvalidArgument { .. }
            | Self::TooLarge { .. }
            | Self::Throttled { .. }
            | Self::Connect(_) => true,
            Self::Unavailable { refused, .. } => *refused,
            Self::OutcomeUnknown { .. } | Self::DeadlineExceeded | Self::Other { .. } => false,
        }
    }

    /// A response the client cannot read (a server or proxy that does not speak the API).
    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        Self::Other {
            code: Code::DataLoss,
            message: message.into(),
        }
    }

    /// The server's retry hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::Throttled { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

/// The `ErrorInfo.reason`s of hexkv's refusals, which changed nothing (see the server's
/// `status` module).
const REFUSALS: &[&str] = &["OVERLOADED", "THROTTLED", "UNAVAILABLE", "READ_ONLY"];

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        let details = status.get_error_details();
        let message = status.message().to_owned();
        let retry_after = details.retry_info().and_then(|r| r.retry_delay);
        // What hexkv says of a refusal; absent in a transport's or a proxy's status.
        let reason = details
            .error_info()
            .filter(|info| info.domain == "hexkv")
            .map(|info| info.reason.as_str());
        match status.code() {
            Code::NotFound => Self::NotFound,
            Code::FailedPrecondition => {
                let current = details
                    .error_info()
                    .and_then(|info| info.metadata.get("current_version"))
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Version::new);
                Self::PreconditionFailed { current }
            }
            Code::InvalidArgument => {
                match details
                    .bad_request()
                    .and_then(|b| b.field_violations.first())
                {
                    Some(violation) => Self::InvalidArgument {
                        field: violation.field.clone(),
                        message: violation.description.clone(),
                    },
                    None => Self::InvalidArgument {
                        field: String::new(),
                        message,
                    },
                }
            }
            // A size refusal carries no retry hint; a rate limit does.
            Code::ResourceExhausted if retry_after.is_some() => Self::Throttled {
                message,
                retry_after,
            },
            Code::ResourceExhausted => Self::TooLarge { message },
            Code::Unavailable if reason == Some("OUTCOME_UNKNOWN") => {
                Self::OutcomeUnknown { message }
            }
            Code::Unavailable => Self::Unavailable {
                message,
                retry_after,
                refused: reason.is_some_and(|r| REFUSALS.contains(&r)),
            },
            Code::DeadlineExceeded | Code::Cancelled => Self::DeadlineExceeded,
            code => Self::Other { code, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn retry_hints_are_read_from_the_details() {
        let status = Status::with_error_details(
            Code::Unavailable,
            "disk full",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(2))),
        );
        let err = ClientError::from(status);
        assert!(err.is_transient());
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn only_hexkv_s_refusals_say_nothing_changed() {
        let with_reason = |reason: &str| {
            let mut details = ErrorDetails::new();
            details.set_error_info(reason, "hexkv", std::collections::HashMap::new());
            details.set_retry_info(Some(Duration::from_secs(1)));
            ClientError::from(Status::with_error_details(Code::Unavailable, "x", details))
        };
        for refusal in ["OVERLOADED", "UNAVAILABLE", "READ_ONLY"] {
            let err = with_reason(refusal);
            assert!(err.is_transient() && err.changed_nothing(), "{refusal}");
        }
        let unknown = with_reason("OUTCOME_UNKNOWN");
        assert!(matches!(unknown, ClientError::OutcomeUnknown { .. }));
        assert!(unknown.is_transient() && !unknown.changed_nothing());
        // A transport's or a proxy's UNAVAILABLE says nothing about what was applied.
        let transport = ClientError::from(Status::unavailable("connection reset"));
        assert!(transport.is_transient() && !transport.changed_nothing());
        assert!(!ClientError::DeadlineExceeded.changed_nothing());
    }

    #[test]
    fn resource_exhausted_is_throttling_only_with_a_hint() {
        let throttled = ClientError::from(Status::with_error_details(
            Code::ResourceExhausted,
            "slow down",
            ErrorDetails::with_retry_info(Some(Duration::from_millis(500))),
        ));
        assert!(matches!(throttled, ClientError::Throttled { .. }));
        assert!(throttled.is_transient());

        let too_large = ClientError::from(Status::resource_exhausted("value too large"));
        assert!(matches!(too_large, ClientError::TooLarge { .. }));
        assert!(!too_large.is_transient());
    }

    #[test]
    fn precondition_failures_carry_the_current_version() {
        let info = |v: &str| {
            ErrorDetails::with_error_info(
                "PRECONDITION_FAILED",
                "hexkv",
                std::collections::HashMap::from([("current_version".to_owned(), v.to_owned())]),
            )
        };
        let present = Status::with_error_details(Code::FailedPrecondition, "", info("7"));
        let absent = Status::with_error_details(Code::FailedPrecondition, "", info(""));
        assert!(matches!(
            ClientError::from(present),
            ClientError::PreconditionFailed { current: Some(v) } if v == Version::new(7)
        ));
        assert!(matches!(
            ClientError::from(absent),
            ClientError::PreconditionFailed { current: None }
        ));
    }
}
