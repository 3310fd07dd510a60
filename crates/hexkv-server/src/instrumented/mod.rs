//! The key-value ports' instrumentation: the "service" and "store" steps of a trace (request →
//! service → store) and the store's latency histogram. The request step, the metrics registry and
//! the logs are the domain-free `hexkv-telemetry`'s; these two know the ports, so they live with
//! the composition that wraps them.

mod api;
mod store;

pub use api::InstrumentedApi;
pub use store::InstrumentedStore;
