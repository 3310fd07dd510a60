//! The platform's sections of a service's configuration, declared once (type, default, doc) and
//! read by the service's configuration layers (defaults → file → environment → flags): `[log]`,
//! `[telemetry]`, `[metrics]`, `[limits]`, `[shutdown]`, `[tls]` (and `[auth]`, in
//! [`crate::auth`]); and [`Secret`], a setting that never prints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml, Yaml};
use hexkv_auth::flags::{FeatureFlags, Rollout};
use serde::{Deserialize, Serialize};

/// Why a configuration cannot be used; both kinds name the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read or a value has the wrong type.
    #[error("{0}")]
    Load(Box<figment::Error>),
    /// A value has the right type but is not acceptable.
    #[error("{key}: {reason}")]
    Invalid {
        /// The dotted key, e.g. `store.memory.fsync_interval_ms`.
        key: String,
        /// Why.
        reason: String,
    },
}

impl ConfigError {
    /// A refusal of `key`'s value, saying why.
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        Self::Load(Box::new(err))
    }
}

/// Where a service's configuration comes from, besides its defaults and its flags.
#[derive(Debug, Clone, Copy)]
pub struct Layers<'a> {
    /// The environment variables' prefix, e.g. `HEXKV_` (`HEXKV_HTTP__LISTEN` sets
    /// `http.listen`).
    pub env_prefix: &'a str,
    /// The top-level sections the environment may set; variables under the prefix that name
    /// another section are left alone (so a `HEXKV_VERSION` set by a deployment is no error).
    pub sections: &'a [&'a str],
    /// The configuration file, if any: YAML for `.yaml`/`.yml`, else TOML.
    pub file: Option<&'a Path>,
}

/// The layers of a configuration, lowest first: `defaults` → the file → `RUST_LOG` (as
/// `log.level`) → the environment under the prefix (`PREFIX_SECTION__KEY`) → `flags` (one
/// provider holding only the flags that were given, keyed by their dotted setting).
pub fn layered<C: Serialize>(
    defaults: &C,
    layers: &Layers<'_>,
    flags: impl figment::Provider,
) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = layers.file {
        figment = with_file(figment, path);
    }
    let sections: Vec<String> = layers.sections.iter().map(|s| (*s).to_owned()).collect();
    figment
        .merge(Env::raw().only(&["RUST_LOG"]).map(|_| "log.level".into()))
        .merge(
            Env::prefixed(layers.env_prefix)
                .filter_map(move |key| {
                    let key = key.as_str().to_ascii_lowercase();
                    let known = sections.iter().any(|s| {
                        key.strip_prefix(s)
                            .is_some_and(|rest| rest.starts_with("__"))
                    });
                    known.then(|| key.into())
                })
                .split("__"),
        )
        .merge(flags)
}

/// One file over `defaults`, without the environment or flags (`config check FILE`).
pub fn file_over<C: Serialize>(defaults: &C, path: &Path) -> Figment {
    with_file(Figment::from(Serialized::defaults(defaults)), path)
}

/// `figment` with a configuration file over it: YAML for `.yaml`/`.yml`, else TOML.
fn with_file(figment: Figment, path: &Path) -> Figment {
    match path.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => figment.merge(Yaml::file_exact(path)),
        _ => figment.merge(Toml::file_exact(path)),
    }
}

/// A secret setting: shown as `"<redacted>"` by `config show` and in logs and debug output.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// What `config show` prints instead of a secret.
    pub const REDACTED: &'static str = "<redacted>";

    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is unset.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            Self::REDACTED
        })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() {
            ""
        } else {
            Self::REDACTED
        })
    }
}

/// `[http]`: the REST listener (a service's own section, declared here once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the REST API listens on; port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        }
    }
}

/// `[grpc]`: the gRPC listener; the same address as `[http]`'s serves both on one listener
/// ([`Application::grpc`](crate::app::Application::grpc)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Address the gRPC API listens on; port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
        }
    }
}

/// A feature flag's setting in `[flags]`: on, off, or on for a percentage of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FlagSetting {
    /// On or off for everyone.
    Switch(bool),
    /// On for this percentage of clients (0–100), chosen by a stable hash of their identity.
    Percent(u8),
}

impl FlagSetting {
    /// As the core evaluates it.
    pub fn rollout(self) -> Rollout {
        match self {
            FlagSetting::Switch(true) | FlagSetting::Percent(100..) => Rollout::On,
            FlagSetting::Switch(false) | FlagSetting::Percent(0) => Rollout::Off,
            FlagSetting::Percent(p) => Rollout::Percent(p),
        }
    }
}

/// `[flags]`: feature flags by name.
pub type FlagsConfig = BTreeMap<String, FlagSetting>;

/// `[flags]` with the defaults of a service's `known` flags.
pub fn default_flags(known: &[(&str, Rollout)]) -> FlagsConfig {
    known
        .iter()
        .map(|(name, rollout)| {
            let setting = match rollout {
                Rollout::On => FlagSetting::Switch(true),
                Rollout::Off => FlagSetting::Switch(false),
                Rollout::Percent(p) => FlagSetting::Percent(*p),
            };
            ((*name).to_owned(), setting)
        })
        .collect()
}

/// Checks `[flags]` against a service's `known` flags: an unknown name (a typo that would do
/// nothing) or a percentage over 100 is refused, naming the key.
pub fn check_flags(flags: &FlagsConfig, known: &[(&str, Rollout)]) -> Result<(), ConfigError> {
    for (name, setting) in flags {
        if !known.iter().any(|(k, _)| k == name) {
            let names: Vec<&str> = known.iter().map(|(n, _)| *n).collect();
            return Err(ConfigError::invalid(
                &format!("flags.{name}"),
                format!("no such feature flag; the flags are {}", names.join(", ")),
            ));
        }
        if let FlagSetting::Percent(p @ 101..) = setting {
            return Err(ConfigError::invalid(
                &format!("flags.{name}"),
                format!("a percentage is 0 to 100, got {p}"),
            ));
        }
    }
    Ok(())
}

/// The flags in force for `config` over a service's `known` defaults.
pub fn feature_flags(config: &FlagsConfig, known: &[(&str, Rollout)]) -> FeatureFlags {
    let flags = FeatureFlags::with_defaults(known);
    flags.replace(
        config
            .iter()
            .map(|(name, setting)| (name.clone(), setting.rollout())),
    );
    flags
}

/// How long file changes are debounced before a reload (the configuration file, the TLS
/// certificate): an editor's or a Kubernetes Secret's burst of events reloads once.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);

/// `[cors]`: which web origins other than the service's own may call its REST routes (and
/// gRPC-Web, on a listener that serves both) from a browser, as etcd's `--cors` does. Empty
/// (the default): no CORS headers, so browsers allow same-origin calls only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`https://console.example.com`, `http://localhost:3000`), or `["*"]` for any.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight's answer.
    pub max_age_s: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_s: 600,
        }
    }
}

impl CorsConfig {
    /// Whether cross-origin calls are allowed from anywhere.
    pub fn any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == "*")
    }

    /// Checks that each origin is `*` alone or `scheme://host[:port]` (http or https, no path,
    /// no trailing slash: a browser's `Origin` header matches byte for byte).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = "cors.allowed_origins";
        if self.any_origin() && self.allowed_origins.len() > 1 {
            return Err(ConfigError::invalid(
                key,
                "\"*\" allows any origin: list it alone",
            ));
        }
        for origin in self.allowed_origins.iter().filter(|o| *o != "*") {
            let host = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let well_formed = host.is_some_and(|host| {
                !host.is_empty()
                    && !host.contains(['/', '?', '#', '@', ' '])
                    && host == host.to_ascii_lowercase()
            });
            if !well_formed {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{origin:?} is not an origin: scheme://host[:port] in lower case, http or \
                         https, without a path or a trailing slash"
                    ),
                ));
            }
        }
        Ok(())
    }
}

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

    /// Checks that the certificate and its key come together, client certificates only with
    /// TLS, and TLS only in a build with the `tls` feature; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled() == self.key.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "tls.key",
                "tls.cert and tls.key are set together, or neither",
            ));
        }
        if !self.enabled() && !self.client_ca.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "tls.client_ca",
                "client certificates need TLS: set tls.cert and tls.key",
            ));
        }
        if self.enabled() && !cfg!(feature = "tls") {
            return Err(ConfigError::invalid(
                "tls.cert",
                "this build has no TLS (cargo feature `tls`)",
            ));
        }
        Ok(())
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

impl LogConfig {
    /// Checks the level's directives and the sampling; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = hexkv_telemetry::parse_level(&self.level) {
            return Err(ConfigError::invalid("log.level", e.to_string()));
        }
        if self.sampling.first > 0 && self.sampling.interval_ms == 0 {
            return Err(ConfigError::invalid(
                "log.sampling.interval_ms",
                "must be above 0 when sampling is on (log.sampling.first > 0)",
            ));
        }
        Ok(())
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
    /// `service.name` of the spans (`OTEL_SERVICE_NAME` wins when set); empty: the service's
    /// name.
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

    /// Checks what types cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.traces == Some(true) && !cfg!(feature = "otlp") {
            return Err(ConfigError::invalid(
                "telemetry.traces",
                "this binary was built without the `otlp` cargo feature",
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::invalid(
                "telemetry.sample_ratio",
                format!("must be between 0.0 and 1.0, got {}", self.sample_ratio),
            ));
        }
        Ok(())
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
            service_name: String::new(),
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

/// `[limits]`: what one client, one connection and one request may take, on every listener of
/// the [`Application`](crate::app::Application). The request limits (shedding, the timeout, the
/// throttle) apply to the service's routes and RPCs only: `/healthz`, `/readyz`, `/metrics` and
/// gRPC health answer while the service sheds load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// The largest value a request carries, in bytes: REST bodies are limited to it (413 past
    /// it), and services limit their gRPC messages to it and their framing. hexkv: a value, at
    /// most 64 MiB.
    pub max_value_bytes: usize,
    /// Requests handled at once by each listener; the excess is refused at once with 503 /
    /// UNAVAILABLE (load shedding). 0: no limit.
    pub max_in_flight: usize,
    /// A request still running after this long gets 504 / DEADLINE_EXCEEDED and is cancelled.
    /// 0: no limit.
    pub request_timeout_ms: u64,
    /// Requests per minute each client (the authenticated key's name, else the IP address) may
    /// make on average, over every listener; 0: no throttling.
    pub throttle_per_minute: u32,
    /// The largest burst a client may make above its rate.
    pub throttle_burst: u32,
    /// The most clients the throttle remembers (bounds its memory).
    pub throttle_max_clients: usize,
    /// A new connection must finish its TLS handshake and send the first bytes of a request
    /// within this; over HTTP/1.1 each request's headers must be complete within it (Go's
    /// `ReadHeaderTimeout`, nginx's `client_header_timeout`). At least 1.
    pub header_read_timeout_ms: u64,
    /// A connection with no request in flight this long is closed (HTTP/2 with a GOAWAY). At
    /// least 1.
    pub idle_timeout_ms: u64,
    /// HTTP/2 keep-alive pings this often on every listener; 0: none.
    pub http2_keepalive_interval_ms: u64,
    /// A keep-alive ping not answered within this closes the connection. At least 1.
    pub http2_keepalive_timeout_ms: u64,
    /// Connections open at once over every listener; more are closed as soon as they are
    /// accepted. At least 1.
    pub max_connections: usize,
    /// Connections open at once from one IP address over every listener. At least 1.
    pub max_connections_per_client: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let connection = crate::serve::ConnectionLimits::default();
        Self {
            max_value_bytes: 1024 * 1024,
            max_in_flight: 1_024,
            request_timeout_ms: 30_000,
            throttle_per_minute: 0,
            throttle_burst: 100,
            throttle_max_clients: 100_000,
            header_read_timeout_ms: connection.header_read_timeout.as_millis() as u64,
            idle_timeout_ms: connection.idle_timeout.as_millis() as u64,
            http2_keepalive_interval_ms: connection
                .keepalive_interval
                .map_or(0, |i| i.as_millis() as u64),
            http2_keepalive_timeout_ms: connection.keepalive_timeout.as_millis() as u64,
            max_connections: 4_096,
            max_connections_per_client: 512,
        }
    }
}

impl LimitsConfig {
    /// `request_timeout_ms` as a duration; `None` when 0.
    pub fn request_timeout(&self) -> Option<Duration> {
        (self.request_timeout_ms > 0).then(|| Duration::from_millis(self.request_timeout_ms))
    }

    /// The timeouts of each connection.
    pub fn connection_limits(&self) -> crate::serve::ConnectionLimits {
        crate::serve::ConnectionLimits {
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            keepalive_interval: (self.http2_keepalive_interval_ms > 0)
                .then(|| Duration::from_millis(self.http2_keepalive_interval_ms)),
            keepalive_timeout: Duration::from_millis(self.http2_keepalive_timeout_ms),
        }
    }

    /// The caps on open connections.
    pub fn connections(&self) -> std::sync::Arc<crate::serve::Connections> {
        crate::serve::Connections::new(self.max_connections, self.max_connections_per_client)
    }

    /// Checks what types alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("limits.max_value_bytes", self.max_value_bytes as u64),
            ("limits.header_read_timeout_ms", self.header_read_timeout_ms),
            ("limits.idle_timeout_ms", self.idle_timeout_ms),
            (
                "limits.http2_keepalive_timeout_ms",
                self.http2_keepalive_timeout_ms,
            ),
            ("limits.max_connections", self.max_connections as u64),
            (
                "limits.max_connections_per_client",
                self.max_connections_per_client as u64,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
// `figment::Jail`'s closures return its large error.
#[allow(clippy::result_large_err)]
mod tests {
    use figment::Jail;

    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        log: LogConfig,
        shutdown: ShutdownConfig,
        counters: Own,
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Own {
        max_name_bytes: u64,
    }

    fn load(file: Option<&Path>, flags: Figment) -> Result<Settings, ConfigError> {
        let layers = Layers {
            env_prefix: "APP_",
            sections: &["log", "shutdown", "counters"],
            file,
        };
        Ok(layered(&Settings::default(), &layers, flags).extract()?)
    }

    #[test]
    fn each_layer_overrides_the_one_below() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "app.toml",
                "[shutdown]\ndrain_timeout_ms = 5\nreadiness_delay_ms = 6\n[counters]\nmax_name_bytes = 7\n",
            )?;
            jail.set_env("APP_SHUTDOWN__READINESS_DELAY_MS", "60");
            jail.set_env("APP_COUNTERS__MAX_NAME_BYTES", "70");
            jail.set_env("RUST_LOG", "debug");
            // A variable under the prefix that names no section is not the service's.
            jail.set_env("APP_VERSION", "1.2.3");
            let flags = Figment::from(Serialized::default("counters.max_name_bytes", 700));
            let settings = load(Some(Path::new("app.toml")), flags).expect("loads");
            assert_eq!(settings.shutdown.drain_timeout_ms, 5, "file over defaults");
            assert_eq!(settings.shutdown.readiness_delay_ms, 60, "env over file");
            assert_eq!(settings.counters.max_name_bytes, 700, "flags over env");
            assert_eq!(settings.log.level, "debug", "RUST_LOG is log.level");
            Ok(())
        });
    }

    #[test]
    fn cors_origins_are_origins_or_any_alone() {
        let cors = |origins: &[&str]| CorsConfig {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..CorsConfig::default()
        };
        for good in [
            &[][..],
            &["*"],
            &["https://console.example.com", "http://localhost:3000"],
            &["http://[::1]:8080"],
        ] {
            if let Err(e) = cors(good).validate() {
                panic!("{good:?}: {e}");
            }
        }
        assert!(cors(&["*"]).any_origin());
        for bad in [
            &["*", "https://a.example"][..],
            &["https://a.example/"],
            &["https://a.example/path"],
            &["a.example"],
            &["ftp://a.example"],
            &["https://"],
            &["https://A.example"],
            &["https://user@a.example"],
        ] {
            let err = cors(bad).validate().expect_err("refused");
            assert!(
                err.to_string().starts_with("cors.allowed_origins: "),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn yaml_by_extension_and_errors_name_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("app.yaml", "shutdown:\n  drain_timeout_ms: 9\n")?;
            let settings = load(Some(Path::new("app.yaml")), Figment::new()).expect("loads");
            assert_eq!(settings.shutdown.drain_timeout_ms, 9);
            let read = file_over(&Settings::default(), Path::new("app.yaml"))
                .extract::<Settings>()
                .expect("loads");
            assert_eq!(read, settings);

            jail.set_env("APP_SHUTDOWN__DRAIN_TIMEOUT_MS", "soon");
            let err = load(None, Figment::new()).unwrap_err().to_string();
            assert!(
                err.to_lowercase().contains("shutdown.drain_timeout_ms"),
                "{err}"
            );
            jail.create_file("typo.toml", "[shutdown]\ndrain_timeout = 1\n")?;
            let err = file_over(&Settings::default(), Path::new("typo.toml"))
                .extract::<Settings>()
                .unwrap_err()
                .to_string();
            assert!(err.contains("drain_timeout"), "{err}");
            assert_eq!(
                ConfigError::invalid("counters.max_name_bytes", "must be at least 1").to_string(),
                "counters.max_name_bytes: must be at least 1"
            );
            Ok(())
        });
    }
}
