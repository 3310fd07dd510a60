//! Telemetry setup for the binary: the platform's, with the cargo features this binary was
//! built with.
//!
//! Logs are structured (`tracing`) and go to stdout, as a twelve-factor app's event stream:
//! pretty and coloured on a terminal, one JSON object per line otherwise (`log.format = "auto"`).
//! JSON lines carry the fields of the request span (method, route, request id).

use hexkv_telemetry::Telemetry;

use crate::config::Config;

/// The cargo features this binary was built with, for `hexkv_build_info`.
pub fn features() -> String {
    let features: &[(&str, bool)] = &[
        ("http", cfg!(feature = "http")),
        ("grpc", cfg!(feature = "grpc")),
        ("memory", cfg!(feature = "memory")),
        ("postgres", cfg!(feature = "postgres")),
        ("cli", cfg!(feature = "cli")),
        ("otlp", cfg!(feature = "otlp")),
    ];
    features
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// The process's telemetry from `config`: the platform's
/// ([`hexkv_platform::app::init_telemetry`]), with the binary's cargo [`features`] in
/// `hexkv_build_info`. Call inside the tokio runtime.
pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
    hexkv_platform::app::init_telemetry(config, "hexkv", env!("CARGO_PKG_VERSION"), &features())
}
