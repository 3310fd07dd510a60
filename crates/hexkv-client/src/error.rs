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
    /// A transient failure: nothing changed; a retry may succeed.
    #[error("unavailable: {message}")]
    Unavailable {
        /// The server's (or the transport's) explanation.
        message: String,
        /// When to retry, if the server said.
        retry_after: Option<Duration>,
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

    fn retry_after(&self) -> Option<Duration> {
        ClientError::retry_after(self)
    }
}

impl ClientError {
    /// Whether a retry may succeed: `Unavailable` and `Throttled`.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Throttled { .. })
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

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        let details = status.get_error_details();
        let message = status.message().to_owned();
        let retry_after = details.retry_info().and_then(|r| r.retry_delay);
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
            Code::Unavailable => Self::Unavailable {
                message,
                retry_after,
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
