//! The platform's sections of a service's configuration, declared once (type, default, doc) and
//! read by the service's configuration layers (defaults → file → environment → flags): `[log]`,
//! `[telemetry]`, `[metrics]`, `[shutdown]`, `[tls]`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long file changes are debounced before a reload (the configuration file, the TLS
/// certificate): an editor's or a Kubernetes Secret's burst of events reloads once.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);

/// `[tls]`: TLS on the listeners (the `tls` cargo feature).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM), the server's certificate first. Empty: TLS off.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Require client certificates that chain to this CA (PEM). Empty: no client certificates.
    pub client_ca: PathBuf,
}

impl TlsConfig {
    /// Whether TLS is on.
    pub fn enabled(&self) -> bool {
        !self.cert.as_os_str().is_empty()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable, coloured on a terminal.
    Pretty,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Level or filter directives, as in `RUST_LOG` (`info`, `warn,hexkv_http=debug`).
    pub level: String,
    /// Log sampling.
    pub sampling: LogSamplingConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".to_owned(),
            sampling: LogSamplingConfig::default(),
        }
    }
}

/// `[log.sampling]`: per call site, the first `first` events of each interval are written, then
/// every `thereafter`-th; the others are dropped and counted (a report line per interval, and
/// `hexkv_log_events_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSamplingConfig {
    /// Events written per call site and interval before thinning (0: no sampling).
    pub first: u64,
    /// Then every this-many-th event (0: none).
    pub thereafter: u64,
    /// The interval, in milliseconds.
    pub interval_ms: u64,
}

impl Default for LogSamplingConfig {
    fn default() -> Self {
        Self {
            first: 100,
            thereafter: 100,
            interval_ms: 1_000,
        }
    }
}

impl LogSamplingConfig {
    /// As the telemetry crate takes it.
    pub fn to_sampling(self) -> hexkv_telemetry::Sampling {
        hexkv_telemetry::Sampling {
            first: self.first,
            thereafter: self.thereafter,
            interval: Duration::from_millis(self.interval_ms),
        }
    }
}

/// `[telemetry]`: OpenTelemetry traces over OTLP (binaries built with the `otlp` feature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Export traces. Unset: as `OTEL_TRACES_EXPORTER` says (`otlp` on, `none` or unset off),
    /// which is what the OpenTelemetry Operator and most platforms inject; set, it wins over that
    /// variable. `OTEL_SDK_DISABLED=true` turns export off regardless ([`TelemetryConfig::exports`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces: Option<bool>,
    /// The OTLP/gRPC endpoint; empty: `OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// `http://localhost:4317`.
    pub otlp_endpoint: String,
    /// `service.name` of the spans (`OTEL_SERVICE_NAME` wins when set).
    pub service_name: String,
    /// The share of new traces recorded, 0.0 to 1.0 (a caller's sampled trace is always
    /// continued).
    pub sample_ratio: f64,
}

/// Whether traces are exported, and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceExport {
    /// Exported over OTLP.
    On(&'static str),
    /// Not exported.
    Off(&'static str),
    /// Not exported: `OTEL_TRACES_EXPORTER` names only exporters this binary does not have.
    Unsupported(String),
}

impl TraceExport {
    /// Whether traces are exported.
    pub fn is_on(&self) -> bool {
        matches!(self, TraceExport::On(_))
    }
}

impl TelemetryConfig {
    /// Whether traces are exported, from `telemetry.traces` and the standard OpenTelemetry
    /// variables, read through `env` (the process environment in the binary):
    ///
    /// 1. `OTEL_SDK_DISABLED=true` (any case): off, whatever else says;
    /// 2. `telemetry.traces`, when set (file, `HEXKV_TELEMETRY__TRACES`): as it says;
    /// 3. `OTEL_TRACES_EXPORTER`, a comma-separated list: on when it names `otlp`, off for
    ///    `none`; other exporters (`console`, `zipkin`…) are not built in and export nothing;
    /// 4. otherwise off.
    pub fn exports(&self, env: impl Fn(&str) -> Option<String>) -> TraceExport {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return TraceExport::Off("OTEL_SDK_DISABLED=true");
        }
        match self.traces {
            Some(true) => return TraceExport::On("telemetry.traces = true"),
            Some(false) => return TraceExport::Off("telemetry.traces = false"),
            None => {}
        }
        let Some(exporters) = env("OTEL_TRACES_EXPORTER") else {
            return TraceExport::Off("neither telemetry.traces nor OTEL_TRACES_EXPORTER is set");
        };
        let names: Vec<String> = exporters
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        if names.iter().any(|name| name == "otlp") {
            TraceExport::On("OTEL_TRACES_EXPORTER names otlp")
        } else if names.iter().all(|name| name == "none") {
            TraceExport::Off("OTEL_TRACES_EXPORTER=none")
        } else {
            TraceExport::Unsupported(exporters)
        }
    }

    /// [`TelemetryConfig::exports`] from the process environment.
    pub fn exports_from_env(&self) -> TraceExport {
        self.exports(|name| std::env::var(name).ok())
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            traces: None,
            otlp_endpoint: String::new(),
            service_name: "hexkv".to_owned(),
            sample_ratio: 1.0,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Record metrics and serve them at `GET /metrics` on the REST listener.
    pub enabled: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// After SIGTERM/SIGINT, keep serving this long with `/readyz` answering 503, so load
    /// balancers stop sending traffic before the listener closes.
    pub readiness_delay_ms: u64,
    /// Then, how long in-flight requests may take to finish before they are cut.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            readiness_delay_ms: 0,
            drain_timeout_ms: 30_000,
        }
    }
}

impl ShutdownConfig {
    /// `readiness_delay_ms` as a duration.
    pub fn readiness_delay(&self) -> Duration {
        Duration::from_millis(self.readiness_delay_ms)
    }
    /// `drain_timeout_ms` as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}
