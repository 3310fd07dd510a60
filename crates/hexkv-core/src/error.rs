//! Error types, one per port.
//!
//! [`StoreError`] is what a driven adapter (a store) may report; [`KvError`] is what the driving port
//! reports to transports. Adapters translate their driver errors (an `io::Error`, a database code)
//! into these variants, so the domain never sees a driver type; transports map `KvError` to the wire
//! in exactly one place each.
//!
//! # Refused, or outcome unknown
//! A failed write is one of two kinds, and the wire says which:
//! - **refused, nothing changed**: validation, a failed precondition, shedding, throttling, an open
//!   breaker, a full bulkhead, a store that could not start the write ([`KvError::Unavailable`],
//!   [`KvError::ReadOnly`]…). Retrying it is safe;
//! - **outcome unknown** ([`KvError::OutcomeUnknown`]): the write was handed to the store and then
//!   the answer was lost — a timeout, a cancelled request, a connection lost mid-write. It may have
//!   been applied. Retrying an unconditional write is harmless (it writes again); a conditional
//!   one may fail its precondition against its own first attempt, so read first, or use an
//!   idempotency key.

use std::time::Duration;

use thiserror::Error;

use crate::domain::{KeyError, ListQueryError, ValueError, Version};

/// "the current version is 7" / "the key does not exist", for precondition messages.
fn describe_current(current: Option<Version>) -> String {
    match current {
        Some(v) => format!("the current version is {v}"),
        None => "the key does not exist".to_owned(),
    }
}

/// An opaque error with its cause chain, for failures nobody can act on but an operator.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a [`crate::KvStore`] may report.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The write's [`crate::Precondition`] does not hold; `current` is the key's version now
    /// (`None`: the key is absent).
    #[error("precondition failed: {}", describe_current(*current))]
    PreconditionFailed {
        /// The key's current version, if it exists.
        current: Option<Version>,
    },
    /// A transient failure: the operation did not take effect and may succeed if retried.
    #[error("store unavailable: {reason}")]
    Unavailable {
        /// What went wrong, for logs and for the client.
        reason: String,
        /// When a retry may succeed, if the store knows.
        retry_after: Option<Duration>,
    },
    /// A write was handed to the backend and its answer was lost (a timeout after it was sent,
    /// a connection lost before the commit was confirmed): it may or may not have taken effect.
    /// Reads never report it.
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown {
        /// What went wrong.
        reason: String,
    },
    /// Anything else: a bug or an unexpected state. Logged, never shown to clients.
    #[error("internal store error")]
    Internal(#[source] BoxError),
}

impl StoreError {
    /// A transient failure without a retry hint.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// An internal failure wrapping its cause.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        Self::Internal(cause.into())
    }

    /// A write whose outcome is unknown.
    pub fn outcome_unknown(reason: impl Into<String>) -> Self {
        Self::OutcomeUnknown {
            reason: reason.into(),
        }
    }
}

/// What the driving port ([`crate::KeyValueApi`]) may report.
///
/// Transports map each variant to one status: see `hexkv-http`'s `ApiError` and the gRPC
/// adapter's `Status` conversion.
#[derive(Debug, Error)]
pub enum KvError {
    /// The key does not exist.
    #[error("key not found")]
    NotFound,
    /// The write's precondition does not hold; `current` is the key's version now.
    #[error("precondition failed: {}", describe_current(*current))]
    PreconditionFailed {
        /// The key's current version, if it exists.
        current: Option<Version>,
    },
    /// The key breaks the key rules.
    #[error("invalid key: {0}")]
    InvalidKey(#[from] KeyError),
    /// The value breaks the value rules (its size).
    #[error("invalid value: {0}")]
    InvalidValue(#[from] ValueError),
    /// The listing request is malformed.
    #[error("invalid list request: {0}")]
    InvalidQuery(#[from] ListQueryError),
    /// A transient failure: the request was refused and nothing took effect; a retry may
    /// succeed.
    #[error("service unavailable: {reason}")]
    Unavailable {
        /// What went wrong.
        reason: String,
        /// When a retry may succeed, if known.
        retry_after: Option<Duration>,
    },
    /// The write was handed to the store and its answer was lost: it may or may not have taken
    /// effect (see the module docs).
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown {
        /// What went wrong.
        reason: String,
    },
    /// Writes are switched off (the `read_only` feature flag); reads go on.
    #[error("the service is read-only for now: writes are refused")]
    ReadOnly,
    /// A feature flag turns this operation off for this client (`list_keys`).
    #[error("the feature {0:?} is not enabled for this client")]
    FeatureDisabled(&'static str),
    /// An unexpected failure. Its cause is logged; clients see only that it happened.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl From<StoreError> for KvError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::PreconditionFailed { current } => KvError::PreconditionFailed { current },
            StoreError::Unavailable {
                reason,
                retry_after,
            } => KvError::Unavailable {
                reason,
                retry_after,
            },
            StoreError::OutcomeUnknown { reason } => KvError::OutcomeUnknown { reason },
            StoreError::Internal(cause) => KvError::Internal(cause),
        }
    }
}
