//! Named counters: a service on the platform, with every layer of a domain on a page or two
//! each. It is the skeleton `just new-service` copies into a new service (and the worked example
//! of hexkv's `docs/new-service.md`):
//!
//! - [`domain`]: [`CounterName`] (parsed once, at the edge), [`CounterError`];
//! - [`ports`]: the driven port [`CounterStore`] with its contract in its rustdoc;
//! - [`service`]: [`CounterService`], the rules (a bounded delta, no overflow) over the port;
//! - adapters of the port, each a cargo feature: `memory::MemoryCounters` (`memory`) and
//!   `postgres::PostgresCounters` (`postgres`); [`store`] opens the one `store.backend` names;
//! - [`resilient::ResilientCounters`]: a decorator with a timeout, retries of reads and a
//!   circuit breaker (the platform's stability patterns), implementing the same port;
//! - [`http`]: the REST routes, each with the access it declares, and the domain's errors as
//!   the platform's problem+json;
//! - [`grpc`]: `counters.v1.Counters` (`proto/counters/v1/counters.proto`), each RPC with the
//!   access it declares, and the domain's errors as statuses;
//! - [`settings`]: its configuration, its own sections beside the platform's
//!   ([`ServiceSettings`](hexkv_platform::app::ServiceSettings)); `main` hands the store, the
//!   readiness check and the router to the platform's `Application`, which serves them (logs,
//!   metrics, reload, TLS, limits, health, drain).
//!
//! `tests/` runs one contract suite against both adapters (PostgreSQL on a throwaway server
//! from the local binaries, or `DATABASE_URL`), the REST and gRPC APIs over real sockets as the
//! platform serves them, and the binary as an operator runs it.

pub mod domain;
pub mod grpc;
pub mod http;
#[cfg(feature = "memory")]
pub mod memory;
pub mod ports;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod resilient;
pub mod service;
pub mod settings;
pub mod store;

pub use domain::{CounterError, CounterName};

/// The service's name: its binary's answers say it (problem types `urn:NAME:problem:…`, the
/// `WWW-Authenticate` realm, the spans' `service.name`).
pub const NAME: &str = "counters";
pub use ports::{CounterStore, StoreError};
pub use service::CounterService;
