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
//! - [`http`]: the REST front end, with hexkv's request ids and observation layer;
//! - [`settings`]: its configuration, its own sections beside the platform's, read through the
//!   platform's layers; `main` serves it with the platform's `Servers` (TLS, drain).
//!
//! `tests/` runs one contract suite against both adapters (PostgreSQL through hexkv-testkit's
//! throwaway server) and the REST API over a real socket.

pub mod domain;
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
