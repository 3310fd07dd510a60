//! hexkv's domain core: the types, the ports and the key-value service.
//!
//! This crate depends on no transport, no database and no runtime: adapters depend on it, never the
//! other way round (the dependency rule; see `docs/architecture.md`).
//!
//! - [`domain`]: [`Key`], [`Value`], [`Version`], [`Entry`], [`Precondition`], [`ListQuery`],
//!   [`Page`], parsed once at the edge.
//! - [`ports`]: [`KvStore`] (driven, implemented by stores) and [`KeyValueApi`] (driving, called by
//!   transports), each with its contract in its rustdoc.
//! - [`service`]: [`KeyValueService`], the implementation of the driving port.
//! - [`error`]: [`StoreError`] and [`KvError`].
//! - [`flags`]: [`FeatureFlags`], switches evaluated per request and changed while running.
//!
//! Who calls is the platform's business ([`hexkv_auth`]); the service sees the caller's
//! [`Identity`] only where a feature flag rolls out by it ([`KeyValueApi::list`]).

pub mod domain;
pub mod error;
pub mod flags;
pub mod ports;
pub mod service;

pub use domain::{
    Cursor, DeleteOutcome, Entry, Key, KeyError, ListItem, ListQuery, ListQueryError, Page,
    Precondition, PutOutcome, Value, ValueError, Version,
};
pub use error::{BoxError, KvError, StoreError};
pub use flags::{FeatureFlags, Rollout};
pub use hexkv_auth::Identity;
pub use ports::{Check, KeyValueApi, KvStore, Readiness};
#[cfg(any(test, feature = "mocks"))]
pub use ports::{MockKeyValueApi, MockKvStore};
pub use service::{KeyValueService, Limits};
