//! Stability patterns, generic over what they protect.
//!
//! - [`breaker`]: a circuit breaker with half-open probes and capped, growing open delays.
//! - [`debounce`]: the "first" (serve a recent result) and "last" (run once a burst settles)
//!   flavours.
//! - [`shed`]: load shedding, a tower layer that REST and gRPC share.
//! - [`deadline`]: a request timeout, a tower layer that REST and gRPC share.
//! - [`throttle`]: per-client rate limits (governor), keyed by whatever identifies a client; the
//!   front ends key it by the client's identity after authentication.
//! - [`retry`]: retry with capped exponential backoff, full or decorrelated jitter, a floor from
//!   the failure's hint, caps on attempts and total time, and no retry of writes unless asked.
//! - [`guard`]: the guards of the calls through a driven port, in one order (retry → breaker →
//!   timeout → bulkhead → the call), over any error type that says what its failures mean
//!   ([`PortErrors`]). A port's decorator is plain code next to the port's composition that
//!   calls through [`Guards`]; neither the core nor the adapter knows.
//!
//! Nothing here knows a service's domain: every pattern is generic over the request, the key
//! or the error it guards.

pub mod breaker;
pub mod deadline;
pub mod debounce;
pub mod guard;
pub mod retry;
pub mod shed;
pub mod throttle;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, Outcome, Rejected, Transition};
pub use deadline::{ByRequest, CallerLimit, DeadlineLayer, Expired};
pub use guard::{Bulkhead, Guards, PortErrors};
pub use retry::{Jitter, Operation, RetryPolicy, Retryable};
pub use shed::{InFlightLimit, LoadShedLayer};
pub use throttle::Throttle;
