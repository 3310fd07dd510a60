//! Stability patterns, and decorators that apply them at the driven port.
//!
//! - [`breaker`]: a circuit breaker with half-open probes and capped, growing open delays.
//! - [`debounce`]: the "first" (serve a recent result) and "last" (run once a burst settles)
//!   flavours.
//! - [`shed`]: load shedding, a tower layer that REST and gRPC share.
//! - [`deadline`]: a request timeout, a tower layer that REST and gRPC share.
//! - [`throttle`]: per-client rate limits (governor) that REST and gRPC share, keyed by the
//!   client's identity after authentication.
//! - [`retry`]: retry with capped exponential backoff, full or decorrelated jitter, a floor from
//!   the failure's hint, caps on attempts and total time, and no retry of writes unless asked.
//! - [`RetryStore`], [`BreakerStore`], [`TimeoutStore`], [`BulkheadStore`]: each implements
//!   [`hexkv_core::KvStore`] around another `KvStore`, so the composition root stacks them
//!   (retry → breaker → timeout → bulkhead → store) and neither the core nor the adapter knows.
//!   The timeout sits inside the breaker so that a hung store trips it: a call the timeout
//!   cancels from outside would count as nothing.
//!
//! Every pattern reports what it refused as [`StoreError::Unavailable`] with a retry hint, which
//! the transports turn into 503 + `Retry-After` and gRPC `UNAVAILABLE` + `RetryInfo`.
//!
//! [`StoreError::Unavailable`]: hexkv_core::StoreError::Unavailable

pub mod breaker;
pub mod deadline;
pub mod debounce;
pub mod retry;
pub mod shed;
mod store;
pub mod throttle;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, Outcome, Rejected, Transition};
pub use deadline::{CallerLimit, DeadlineLayer};
pub use retry::{Jitter, Operation, RetryPolicy, Retryable};
pub use shed::{InFlightLimit, LoadShedLayer};
pub use store::{BreakerStore, BulkheadStore, CheckCacheStore, RetryStore, TimeoutStore};
pub use throttle::{ClientThrottle, Throttle};
