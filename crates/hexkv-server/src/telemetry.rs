//! Telemetry setup for the binary: the configuration mapped onto [`hexkv_telemetry::init`].
//!
//! Logs are structured (`tracing`) and go to stdout, as a twelve-factor app's event stream:
//! pretty and coloured on a terminal, one JSON object per line otherwise (`log.format = "auto"`).
//! JSON lines carry the fields of the request span (method, route, request id).

use std::io::IsTerminal;

use hexkv_telemetry::{BuildInfo, LogSettings, Telemetry};

use crate::config::{Config, LogFormat};

/// The cargo features this binary was built with, for `hexkv_build_info`.
pub fn features() -> String {
    let features: &[(&str, bool)] = &[
        ("http", cfg!(feature = "http")),
        ("grpc", cfg!(feature = "grpc")),
        ("memory", cfg!(feature = "memory")),
        ("postgres", cfg!(feature = "postgres")),
        ("cli", cfg!(feature = "cli")),
    ];
    features
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Installs the global subscriber and, when `metrics.enabled`, the Prometheus recorder. Fails if
/// a subscriber is already installed or the level directives are invalid.
pub fn init(config: &Config) -> anyhow::Result<Telemetry> {
    let json = match config.log.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let build = BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        features: features(),
    };
    let telemetry = hexkv_telemetry::init(
        &LogSettings {
            level: config.log.level.clone(),
            json,
            sampling: config.log.sampling.to_sampling(),
        },
        config.metrics.enabled.then_some(&build),
    )?;
    Ok(telemetry)
}
