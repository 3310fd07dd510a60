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
        ("otlp", cfg!(feature = "otlp")),
    ];
    features
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

/// Installs the global subscriber, the Prometheus recorder when `metrics.enabled`, and trace
/// export when [`TelemetryConfig::exports_from_env`](crate::config::TelemetryConfig::exports_from_env)
/// says so (`telemetry.traces`, `OTEL_TRACES_EXPORTER`, `OTEL_SDK_DISABLED`). Fails if a subscriber
/// is already installed or the settings are unusable. Call inside the tokio runtime.
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
    let log = LogSettings {
        level: config.log.level.clone(),
        json,
        sampling: config.log.sampling.to_sampling(),
    };
    let build = config.metrics.enabled.then_some(&build);
    #[cfg(feature = "otlp")]
    {
        let t = &config.telemetry;
        let traces = t
            .exports_from_env()
            .is_on()
            .then(|| hexkv_telemetry::TraceSettings {
                endpoint: (!t.otlp_endpoint.is_empty()).then(|| t.otlp_endpoint.clone()),
                service_name: t.service_name.clone(),
                sample_ratio: t.sample_ratio,
            });
        Ok(hexkv_telemetry::init_with_traces(
            &log,
            build,
            traces.as_ref(),
        )?)
    }
    #[cfg(not(feature = "otlp"))]
    Ok(hexkv_telemetry::init(&log, build)?)
}
