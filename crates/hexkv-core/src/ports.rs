//! The ports: the driven port [`KvStore`] (implemented by stores) and the driving port
//! [`KeyValueApi`] (called by transports).
//!
//! Both are object-safe `#[async_trait]` traits used behind `Arc<dyn …>`: the composition root picks
//! the adapter at run time from configuration, decorators (timeouts, breakers) wrap a port with
//! another implementation of the same trait, and one boxed future per call costs nothing next to a
//! network round trip or an fsync. See `docs/adr/0002-dyn-ports-with-async-trait.md`.
//!
//! With the `mocks` feature (and in this crate's tests) mockall generates `MockKvStore` and
//! `MockKeyValueApi`, so each layer is unit-tested against a mock of the layer below.

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::{DeleteOutcome, Entry, Key, ListQuery, Page, Precondition, PutOutcome, Value};
use crate::error::{KvError, StoreError};
use hexkv_auth::Identity;

/// A key-value store: the driven port every storage adapter implements.
///
/// # Contract
/// Every implementation MUST keep these rules; `hexkv-testkit`'s `store_contract` suite checks them
/// and runs against every adapter.
///
/// - **Versions.** Each successful write (a put, or a delete of an existing key) takes a version
///   strictly greater than that of every write that completed before it began, including before a
///   restart, and greater than the version it replaces. Versions are never reused; gaps are
///   allowed. Concurrent writes to different keys may complete in another order than their
///   versions (a store with a single writer, like the memory store, never does). A delete of an
///   absent key writes nothing and takes no version.
/// - **Atomic preconditions.** Checking a [`Precondition`] and applying the write is one atomic step
///   per key: of concurrent writers holding the same expected version, at most one succeeds. A
///   failed precondition returns [`StoreError::PreconditionFailed`] with the key's current version
///   and changes nothing.
/// - **Durability.** A write returns `Ok` only once it is as durable as the store's configuration
///   promises, and is visible to every later `get` and `list` from then on.
/// - **Failure.** A write that returns `Err` leaves the visible state unchanged, with one
///   exception: [`StoreError::OutcomeUnknown`], returned when the write was handed to the backend
///   and its answer was lost (a connection lost before the commit was confirmed, a timeout after
///   the statement was sent), says that it may have taken effect. Other transient failures (the
///   backend cannot be reached, the write could not start, a failed log write that was cut back)
///   are [`StoreError::Unavailable`], and promise that nothing was applied; anything else is
///   [`StoreError::Internal`]. An adapter never panics on a failure of its backend.
/// - **Listing.** [`KvStore::list`] returns, in ascending byte order of key, at most
///   `query.limit()` entries whose key starts with `query.prefix()` and sorts after the cursor's
///   key. `next_cursor` is `Some` exactly when more such keys existed at the time of the call.
/// - **Binary values.** Values are stored and returned byte-exact, empty values included.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait KvStore: Send + Sync + 'static {
    /// The entry under `key`, or `None` when the key is absent.
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError>;

    /// Writes `value` under `key` if `precondition` holds.
    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError>;

    /// Removes `key` if `precondition` holds. Removing an absent key with
    /// [`Precondition::None`] succeeds with [`DeleteOutcome::Absent`].
    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError>;

    /// One page of keys; see the listing rule above.
    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError>;

    /// Whether the store can serve requests now (readiness). Cheap; may touch the backend.
    async fn check(&self) -> Result<(), StoreError>;

    /// Makes every acknowledged write durable and releases the backend (files, connections).
    /// Called once at shutdown, after the last request; later calls fail with `Unavailable`.
    async fn close(&self) -> Result<(), StoreError>;
}

/// The result of one readiness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked (`store`, `draining`).
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Whether the service should receive traffic, with each check that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Every check, in a stable order.
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Ready when every check passed.
    pub fn is_ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// The key-value service as transports see it: the driving port.
///
/// # Contract
/// - Arguments arrive parsed (a [`Key`] is already valid); limits that are configuration (the
///   value size) are enforced here and reported as [`KvError::InvalidValue`] before the store is
///   touched, so a rejected write changes nothing.
/// - `get` of an absent key is [`KvError::NotFound`]; `delete` of an absent key without a
///   precondition succeeds (deletes are idempotent).
/// - Store failures keep their meaning: `PreconditionFailed` with the current version,
///   `Unavailable` with its retry hint (refused: nothing changed), `OutcomeUnknown` (the write may
///   have been applied), `Internal` with its cause (for logs only). A caller that stops waiting
///   for a write (a request timeout, a cancelled request, a lost connection) cannot know either:
///   the store may still apply it, and the transports report such a write as outcome unknown.
/// - Feature flags are decided here, not by each transport: a write while `read_only` is on is
///   [`KvError::ReadOnly`], a listing `list_keys` is off for is [`KvError::FeatureDisabled`].
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait KeyValueApi: Send + Sync + 'static {
    /// The entry under `key`.
    async fn get(&self, key: &Key) -> Result<Entry, KvError>;

    /// Writes `value` under `key` if `precondition` holds.
    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, KvError>;

    /// Removes `key` if `precondition` holds.
    async fn delete(&self, key: &Key, precondition: Precondition)
    -> Result<DeleteOutcome, KvError>;

    /// One page of keys by prefix, for `client` (the feature flags that gate listing roll out
    /// by client: off for this one, [`KvError::FeatureDisabled`]).
    async fn list(&self, query: &ListQuery, client: &Identity) -> Result<Page, KvError>;

    /// Readiness: the store answers. (Draining is the platform's check, beside this one.)
    async fn readiness(&self) -> Readiness;
}
