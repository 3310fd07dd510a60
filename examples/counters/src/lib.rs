//! A second domain built on hexkv's crates: named counters.
//!
//! It is the worked example of `docs/new-service.md`, laid out the way hexkv is, so a service
//! author can see every layer of a new domain on a page or two each:
//!
//! - [`domain`]: [`CounterName`] (parsed once, at the edge), [`CounterError`];
//! - [`ports`]: the driven port [`CounterStore`] with its contract in its rustdoc;
//! - [`service`]: [`CounterService`], the rules (a bounded delta, no overflow) over the port;
//! - adapters of the port: [`memory::MemoryCounters`] and [`postgres::PostgresCounters`];
//! - [`resilient::ResilientCounters`]: a decorator with a timeout, retries of reads and a
//!   circuit breaker from `hexkv-resilience`, implementing the same port;
//! - [`http`]: the REST routes, each with the access it declares, and the domain's errors as
//!   the platform's problem+json;
//! - [`grpc`]: `counters.v1.Counters` (`proto/counters/v1/counters.proto`), each RPC with the
//!   access it declares, and the domain's errors as statuses;
//! - [`settings`]: its configuration, its own sections beside the platform's
//!   ([`ServiceSettings`](hexkv_platform::app::ServiceSettings)); `main` hands the store, the
//!   readiness check and the router to the platform's `Application`, which serves them (logs,
//!   metrics, reload, TLS, limits, health, drain).
//!
//! `tests/` runs one contract suite against both adapters (PostgreSQL through
//! hexkv-test-postgres's throwaway server), the REST API over a real socket as the platform
//! serves it, and the binary as an operator runs it.

pub mod domain;
pub mod grpc;
pub mod http;
pub mod memory;
pub mod ports;
pub mod postgres;
pub mod resilient;
pub mod service;
pub mod settings;

pub use domain::{CounterError, CounterName};
pub use ports::{CounterStore, StoreError};
pub use service::CounterService;
