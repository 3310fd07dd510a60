//! The driven port: where counters are kept.

use async_trait::async_trait;

use crate::CounterName;

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The addition would overflow an `i64`; the store changed nothing.
    #[error("overflow")]
    Overflow,
    /// The store cannot answer now (a timeout, a lost connection, an open breaker); it changed
    /// nothing, or — for an `add` whose answer was lost — possibly applied it once.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Named 64-bit counters.
///
/// # Contract (checked for every adapter by `tests/contract.rs`)
/// - `add` applies `delta` atomically and returns the new value; a counter that does not exist
///   starts at 0. Concurrent adds to one counter are all applied: none is lost.
/// - An `add` that would leave `i64` fails with [`StoreError::Overflow`] and changes nothing.
/// - `get` returns the current value, or `None` for a counter never added to.
/// - Counters are independent: an add to one never changes another.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CounterStore: Send + Sync {
    /// Adds `delta` and returns the new value.
    async fn add(&self, name: &CounterName, delta: i64) -> Result<i64, StoreError>;
    /// The current value.
    async fn get(&self, name: &CounterName) -> Result<Option<i64>, StoreError>;
}
