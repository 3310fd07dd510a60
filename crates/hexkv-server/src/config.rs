//! Configuration: one typed structure, filled from layers, validated before anything starts.
//!
//! Layers, lowest first (a later layer overrides an earlier one, key by key):
//!
//! 1. defaults in code ([`Config::default`]);
//! 2. a file given with `--config` (TOML, or YAML for `.yaml`/`.yml`);
//! 3. `RUST_LOG`, as `log.level`;
//! 4. environment variables `HEXKV_<SECTION>__<FIELD>`, e.g. `HEXKV_HTTP__LISTEN`,
//!    `HEXKV_STORE__MEMORY__FSYNC` (a double underscore separates levels);
//! 5. command-line flags (`--http-listen`, `--data-dir`, …).
//!
//! Unknown keys in a file, and unknown fields under a known section in the environment, are errors
//! (a typo must not silently fall back to a default). Variables that start with `HEXKV_` but name no
//! section, like the `HEXKV_PORT` that Kubernetes injects for a Service called `hexkv`, are ignored.
//! Every error names the key and the reason. `docs/configuration.md` lists every setting.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::Serialized;
use serde::{Deserialize, Serialize};

pub use hexkv_platform::auth::AuthConfig;
pub use hexkv_platform::config::{
    ConfigError, CorsConfig, FlagSetting, FlagsConfig, GrpcConfig, HttpConfig, LimitsConfig,
    LogConfig, LogFormat, LogSamplingConfig, MetricsConfig, Secret, ShutdownConfig,
    TelemetryConfig, TlsConfig, TraceExport,
};

#[cfg(feature = "memory")]
use hexkv_store_memory::DurableOptions;
#[cfg(feature = "memory")]
pub use hexkv_store_memory::{CompactionPolicy, FsyncPolicy};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The REST front end.
    pub http: HttpConfig,
    /// The gRPC front end.
    pub grpc: GrpcConfig,
    /// The store.
    pub store: StoreConfig,
    /// Request limits.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
    /// Traces.
    pub telemetry: TelemetryConfig,
    /// Feature flags, by name: `true`, `false`, or a percentage of clients (0–100).
    pub flags: FlagsConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Stability patterns.
    pub resilience: ResilienceConfig,
    /// API keys.
    pub auth: AuthConfig,
    /// TLS on both front ends.
    pub tls: TlsConfig,
    /// Browsers' cross-origin calls to the REST front end.
    pub cors: CorsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            grpc: GrpcConfig::default(),
            store: StoreConfig::default(),
            limits: LimitsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            telemetry: TelemetryConfig {
                service_name: "hexkv".to_owned(),
                ..TelemetryConfig::default()
            },
            flags: hexkv_platform::config::default_flags(hexkv_core::flags::KNOWN),
            shutdown: ShutdownConfig::default(),
            resilience: ResilienceConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            cors: CorsConfig::default(),
        }
    }
}

/// hexkv's own top-level sections, beside the ones the platform declares
/// ([`hexkv_platform::app::PLATFORM_SECTIONS`]).
const SECTIONS: &[&str] = &["store", "resilience"];

impl hexkv_platform::app::ServiceSettings for Config {
    const ENV_PREFIX: &'static str = "HEXKV_";
    const SECTIONS: &'static [&'static str] = SECTIONS;

    hexkv_platform::platform_sections!();

    const KNOWN_FLAGS: &'static [(&'static str, hexkv_core::Rollout)] = hexkv_core::flags::KNOWN;
    fn flags(&self) -> Option<&FlagsConfig> {
        Some(&self.flags)
    }

    /// hexkv's own checks (the platform's sections are checked before them).
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_own()
    }

    fn changed_secrets(&self, other: &Self) -> Vec<&'static str> {
        if self.store.postgres.url == other.store.postgres.url {
            Vec::new()
        } else {
            vec!["store.postgres.url"]
        }
    }
}

/// `[resilience]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ResilienceConfig {
    /// Around the store: retry → circuit breaker → timeout → bulkhead.
    pub store: StoreResilienceConfig,
}

/// `[resilience.store]`: the decorators around the store port (see `docs/resilience.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreResilienceConfig {
    /// Which stores the decorators wrap: by default only a store across the network.
    pub apply: ApplyResilience,
    /// Fail one attempt of a store call after this long (counted by the breaker); 0 turns the
    /// timeout off.
    pub timeout_ms: u64,
    /// Attempts of an idempotent store call that fails with `Unavailable` (1: no retries).
    pub retry_attempts: u32,
    /// Ceiling of the first retry's delay (full jitter).
    pub retry_base_delay_ms: u64,
    /// Ceiling of any retry delay.
    pub retry_max_delay_ms: u64,
    /// Open the breaker after this many failures in a row (0: not on this rule).
    pub breaker_consecutive_failures: u32,
    /// Calls in the breaker's failure-rate window (0: no rate rule).
    pub breaker_window: u32,
    /// Fewest calls in the window before the rate rule applies.
    pub breaker_min_calls: u32,
    /// Open when this percentage of the window failed.
    pub breaker_failure_rate_percent: u32,
    /// First open period; it doubles with each reopening.
    pub breaker_open_ms: u64,
    /// Longest open period.
    pub breaker_max_open_ms: u64,
    /// Probes admitted when half-open; all must succeed to close.
    pub breaker_probes: u32,
    /// Store calls in flight at most (0: no bulkhead).
    pub bulkhead_max_in_flight: u32,
    /// How long a call waits for a bulkhead slot before 503 (0: refused at once).
    pub bulkhead_max_wait_ms: u64,
    /// Serve the store's readiness check from the last result this long (0: check every probe).
    pub check_cache_ms: u64,
    /// Fail the store's readiness check after this long (0: wait for `timeout_ms`).
    pub check_timeout_ms: u64,
}

impl Default for StoreResilienceConfig {
    fn default() -> Self {
        Self {
            apply: ApplyResilience::default(),
            timeout_ms: 10_000,
            retry_attempts: 3,
            retry_base_delay_ms: 25,
            retry_max_delay_ms: 500,
            breaker_consecutive_failures: 5,
            breaker_window: 20,
            breaker_min_calls: 10,
            breaker_failure_rate_percent: 50,
            breaker_open_ms: 1_000,
            breaker_max_open_ms: 30_000,
            breaker_probes: 1,
            bulkhead_max_in_flight: 1_024,
            bulkhead_max_wait_ms: 100,
            check_cache_ms: 1_000,
            check_timeout_ms: 2_000,
        }
    }
}

/// Which stores `[resilience.store]` wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ApplyResilience {
    /// A store across the network (PostgreSQL): the one that can hang, fail for a while and
    /// come back. The memory store answers from the process (a read cannot time out, nothing
    /// fails transiently), so it goes without them and its requests skip their cost.
    #[default]
    Remote,
    /// Every store, the memory store too.
    Always,
    /// No store.
    Never,
}

impl ApplyResilience {
    /// Whether the decorators wrap a store of `backend`.
    pub fn wraps(self, backend: Backend) -> bool {
        match self {
            Self::Remote => backend == Backend::Postgres,
            Self::Always => true,
            Self::Never => false,
        }
    }
}

/// Which store backs the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded store: a sharded map with a durable log.
    #[default]
    Memory,
    /// PostgreSQL (`store.postgres.url`): for many stateless replicas.
    Postgres,
}

/// `[store]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The store backend.
    pub backend: Backend,
    /// Settings of the memory backend.
    #[cfg(feature = "memory")]
    pub memory: MemoryConfig,
    /// Settings of the PostgreSQL backend.
    pub postgres: PostgresConfig,
}

/// `[store.postgres]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:5432/database` (a secret).
    pub url: Secret,
    /// The most connections the pool opens (per replica).
    pub max_connections: u32,
    /// Connections opened at start (the pool keeps the connections it opens).
    pub min_connections: u32,
    /// How long a request waits for a free connection before failing with 503.
    pub acquire_timeout_ms: u64,
    /// The server-side `statement_timeout`, sent when each connection starts: past it a
    /// statement is cancelled (503). 0: none sent — behind a pooler in transaction mode, which
    /// refuses or drops startup options; set it on the role (`ALTER ROLE … SET
    /// statement_timeout`) instead.
    pub statement_timeout_ms: u64,
    /// Apply the embedded migrations at start.
    pub migrate: bool,
    /// Hold an advisory lock while migrating, so replicas starting together take turns; `false`
    /// behind a pooler in transaction mode, or on a database without advisory locks
    /// (CockroachDB): then start one replica first.
    pub migrate_lock: bool,
    /// How long to wait for the database at start before exiting (0: exit at once).
    pub connect_wait_ms: u64,
    /// The most keys one batched read asks for (concurrent GETs share a statement); 0: off.
    pub read_batch: usize,
    /// The most batched reads in flight at once.
    pub read_batch_queries: usize,
    /// The most unconditional PUTs one batched upsert carries (one commit for all); 0: off.
    pub write_batch: usize,
    /// The most batched upserts in flight at once.
    pub write_batch_queries: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 5_000,
            migrate: true,
            migrate_lock: true,
            connect_wait_ms: 0,
            read_batch: 64,
            read_batch_queries: 4,
            write_batch: 64,
            write_batch_queries: 4,
        }
    }
}

/// `[store.memory]`: in a build with the memory store (feature `memory`) only, which declares
/// the policies it reads ([`FsyncPolicy`], [`CompactionPolicy`]).
#[cfg(feature = "memory")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Directory of the durable log.
    pub data_dir: PathBuf,
    /// Log sync policy.
    pub fsync: FsyncPolicy,
    /// Sync period for `fsync = "interval"`, in milliseconds.
    pub fsync_interval_ms: u64,
    /// Keep nothing on disk: data is lost at exit.
    pub ephemeral: bool,
    /// Number of map shards (rounded up to a power of two).
    pub shards: usize,
    /// Start even if the log has a corrupt record followed by valid ones, cutting the log there
    /// (the records after it are lost). For recovery by an operator only.
    pub repair: bool,
    /// When the log is compacted into a snapshot.
    pub compaction: CompactionPolicy,
}

#[cfg(feature = "memory")]
impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            fsync: FsyncPolicy::default(),
            fsync_interval_ms: DurableOptions::DEFAULT_FSYNC_INTERVAL.as_millis() as u64,
            ephemeral: false,
            shards: 16,
            repair: false,
            compaction: CompactionPolicy::default(),
        }
    }
}

#[cfg(feature = "memory")]
impl MemoryConfig {
    /// Checks what types alone cannot, naming the key.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            return invalid(
                "store.memory.fsync_interval_ms",
                "must be above 0 when fsync = \"interval\"",
            );
        }
        if !(1..=100).contains(&self.compaction.factor) {
            return invalid(
                "store.memory.compaction.factor",
                "must be between 1 and 100",
            );
        }
        if !(1..=4096).contains(&self.shards) {
            return invalid("store.memory.shards", "must be between 1 and 4096");
        }
        if !self.ephemeral && self.data_dir.as_os_str().is_empty() {
            return invalid(
                "store.memory.data_dir",
                "must not be empty (or set store.memory.ephemeral = true)",
            );
        }
        Ok(())
    }

    /// The store's options (for a durable store: `ephemeral` is the caller's to check).
    pub fn durable_options(&self) -> DurableOptions {
        DurableOptions {
            dir: self.data_dir.clone(),
            fsync: self.fsync,
            fsync_interval: std::time::Duration::from_millis(self.fsync_interval_ms),
            repair: self.repair,
            shards: self.shards,
            compaction: self.compaction,
        }
    }
}

/// `--fsync`: the names of [`FsyncPolicy`], listed in `--help`.
#[cfg(feature = "memory")]
fn fsync_policy() -> impl clap::builder::TypedValueParser<Value = FsyncPolicy> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(FsyncPolicy::ALL.map(FsyncPolicy::name))
        .try_map(|name| name.parse::<FsyncPolicy>())
}

/// Settings given as command-line flags; `None` (or `false`) leaves the lower layers' value.
///
/// Each flag names the setting it sets once, as its serde name (`http.listen`): the flags that
/// were given serialize to those keys, and become one figment layer (`Overrides::layer`).
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct Overrides {
    /// Configuration file (TOML, or YAML for .yaml/.yml).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address of the REST API [http.listen].
    #[arg(long, value_name = "ADDR")]
    #[serde(rename = "http.listen", skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    /// Address of the gRPC API [grpc.listen].
    #[arg(long, value_name = "ADDR")]
    #[serde(rename = "grpc.listen", skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    /// Store backend [store.backend].
    #[arg(long, value_enum, value_name = "BACKEND")]
    #[serde(rename = "store.backend", skip_serializing_if = "Option::is_none")]
    pub store: Option<Backend>,
    /// Directory of the durable log [store.memory.data_dir] (UTF-8, as in the other layers).
    #[cfg(feature = "memory")]
    #[arg(long, value_name = "DIR")]
    #[serde(
        rename = "store.memory.data_dir",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_dir: Option<String>,
    /// Log sync policy [store.memory.fsync].
    #[cfg(feature = "memory")]
    #[arg(long, value_name = "POLICY", value_parser = fsync_policy())]
    #[serde(rename = "store.memory.fsync", skip_serializing_if = "Option::is_none")]
    pub fsync: Option<FsyncPolicy>,
    /// Keep nothing on disk [store.memory.ephemeral].
    #[cfg(feature = "memory")]
    #[arg(long)]
    #[serde(
        rename = "store.memory.ephemeral",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub ephemeral: bool,
    /// Cut the log at a corrupt record instead of refusing to start [store.memory.repair].
    #[cfg(feature = "memory")]
    #[arg(long)]
    #[serde(
        rename = "store.memory.repair",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub repair_log: bool,
    /// PostgreSQL URL [store.postgres.url]; prefer the environment or a file, which `ps` does
    /// not show.
    #[arg(long, value_name = "URL")]
    #[serde(rename = "store.postgres.url", skip_serializing_if = "Option::is_none")]
    pub postgres_url: Option<String>,
    /// Largest value in bytes [limits.max_value_bytes].
    #[arg(long, value_name = "BYTES")]
    #[serde(
        rename = "limits.max_value_bytes",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_value_bytes: Option<usize>,
    /// Log format [log.format].
    #[arg(long, value_enum, value_name = "FORMAT")]
    #[serde(rename = "log.format", skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Log level or filter directives [log.level].
    #[arg(long, value_name = "FILTER")]
    #[serde(rename = "log.level", skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

impl Overrides {
    /// The flags that were given, by the key of the setting each sets.
    fn given(&self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(given)) => given,
            // Every field is a plain value (no path that could fail as non-UTF-8).
            _ => unreachable!("flags serialize to a map"),
        }
    }

    /// These flags, with `lower`'s filling the ones not given (for flags given both before and
    /// after a subcommand: `hexkv --config f serve --fsync never`).
    pub fn or(self, lower: Overrides) -> Overrides {
        let mut given = lower.given();
        given.extend(self.given());
        let mut merged: Overrides = serde_json::from_value(serde_json::Value::Object(given))
            .expect("flags read back as they were written");
        merged.config = self.config.or(lower.config);
        merged
    }

    /// The flags that were given, as a figment layer.
    fn layer(&self) -> Figment {
        self.given()
            .into_iter()
            .fold(Figment::new(), |layer, (key, value)| {
                layer.merge(Serialized::default(&key, value))
            })
    }
}

impl Config {
    /// The layered figment for `overrides`: defaults → file → `RUST_LOG` → `HEXKV_*` → flags
    /// ([`hexkv_platform::config::layered`]).
    fn figment(overrides: &Overrides) -> Figment {
        let sections: Vec<&str> = SECTIONS
            .iter()
            .chain(hexkv_platform::app::PLATFORM_SECTIONS)
            .copied()
            .collect();
        let layers = hexkv_platform::config::Layers {
            env_prefix: "HEXKV_",
            sections: &sections,
            file: overrides.config.as_deref(),
        };
        hexkv_platform::config::layered(&Config::default(), &layers, overrides.layer())
    }

    /// Loads and validates the configuration from every layer.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let config: Config = Self::figment(overrides).extract()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: the platform's sections, then hexkv's; the error names
    /// the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        hexkv_platform::app::ServiceSettings::check(self)
    }

    /// Loads and validates one file over the defaults, ignoring the environment and flags
    /// (`hexkv config check FILE`).
    pub fn load_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let config: Config =
            hexkv_platform::config::file_over(&Config::default(), path).extract()?;
        config.validate()?;
        Ok(config)
    }

    /// hexkv's own checks (see [`Config::validate`] for all of them).
    fn validate_own(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: reason.to_owned(),
            })
        };
        self.auth.validate(&[
            ("http.listen", self.http.listen),
            ("grpc.listen", self.grpc.listen),
        ])?;
        let max = self.limits.max_value_bytes;
        if max == 0 || max > hexkv_core::Limits::HARD_MAX_VALUE_BYTES {
            return invalid(
                "limits.max_value_bytes",
                &format!(
                    "must be between 1 and {} (64 MiB), got {max}",
                    hexkv_core::Limits::HARD_MAX_VALUE_BYTES
                ),
            );
        }
        #[cfg(feature = "memory")]
        self.store.memory.validate()?;
        let postgres = &self.store.postgres;
        if self.store.backend == Backend::Postgres {
            if postgres.url.is_empty() {
                return invalid(
                    "store.postgres.url",
                    "must be set when store.backend = \"postgres\"",
                );
            }
            if postgres.url.expose() == Secret::REDACTED {
                return invalid(
                    "store.postgres.url",
                    "is the placeholder that `config show` prints; set the real URL",
                );
            }
        }
        if postgres.max_connections == 0 {
            return invalid("store.postgres.max_connections", "must be at least 1");
        }
        if postgres.min_connections > postgres.max_connections {
            return invalid(
                "store.postgres.min_connections",
                "must not exceed store.postgres.max_connections",
            );
        }
        for (key, batch, queries) in [
            ("read", postgres.read_batch, postgres.read_batch_queries),
            ("write", postgres.write_batch, postgres.write_batch_queries),
        ] {
            if batch > 1_000 {
                return invalid(
                    &format!("store.postgres.{key}_batch"),
                    "must be at most 1000 (0 turns it off)",
                );
            }
            if queries == 0 {
                return invalid(
                    &format!("store.postgres.{key}_batch_queries"),
                    "must be at least 1",
                );
            }
        }
        if postgres.acquire_timeout_ms == 0 {
            return invalid("store.postgres.acquire_timeout_ms", "must be above 0");
        }
        let r = &self.resilience.store;
        if r.retry_attempts == 0 {
            return invalid(
                "resilience.store.retry_attempts",
                "must be at least 1 (1: no retries)",
            );
        }
        if r.breaker_failure_rate_percent == 0 || r.breaker_failure_rate_percent > 100 {
            return invalid(
                "resilience.store.breaker_failure_rate_percent",
                "must be between 1 and 100",
            );
        }
        if r.breaker_open_ms == 0 || r.breaker_max_open_ms < r.breaker_open_ms {
            return invalid(
                "resilience.store.breaker_max_open_ms",
                "breaker_open_ms must be above 0 and at most breaker_max_open_ms",
            );
        }
        if r.breaker_probes == 0 {
            return invalid("resilience.store.breaker_probes", "must be at least 1");
        }
        Ok(())
    }

    /// The configuration as TOML, for `hexkv config show`. Secrets ([`Secret`]) print as
    /// `"<redacted>"`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the configuration serializes")
    }
}

#[cfg(test)]
// figment's `Jail` closures must return `figment::Error`, which is large; that is its API.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load(overrides: &Overrides) -> Result<Config, String> {
        Config::load(overrides).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        Jail::expect_with(|_| {
            let c = load(&Overrides::default())?;
            assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(c.grpc.listen.to_string(), "127.0.0.1:50051");
            assert_eq!(c.store.backend, Backend::Memory);
            assert_eq!(c.store.memory.data_dir, PathBuf::from("./data"));
            assert_eq!(c.store.memory.fsync, FsyncPolicy::Always);
            assert_eq!(c.limits.max_value_bytes, 1024 * 1024);
            Ok(())
        });
    }

    #[test]
    fn layers_override_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "hexkv.toml",
                r#"
                [http]
                listen = "127.0.0.1:1000"
                [store.memory]
                fsync = "never"
                data_dir = "/from/file"
                [limits]
                max_value_bytes = 10
                "#,
            )?;
            jail.set_env("HEXKV_STORE__MEMORY__FSYNC", "interval");
            jail.set_env("HEXKV_LIMITS__MAX_VALUE_BYTES", "20");
            jail.set_env("RUST_LOG", "warn");
            jail.set_env("HEXKV_PORT", "tcp://10.0.0.1:80"); // injected by Kubernetes: ignored
            let overrides = Overrides {
                config: Some("hexkv.toml".into()),
                max_value_bytes: Some(30),
                ..Overrides::default()
            };
            let c = load(&overrides)?;
            assert_eq!(c.http.listen.to_string(), "127.0.0.1:1000"); // file
            assert_eq!(c.store.memory.data_dir, PathBuf::from("/from/file")); // file
            assert_eq!(c.store.memory.fsync, FsyncPolicy::Interval); // env over file
            assert_eq!(c.limits.max_value_bytes, 30); // flag over env
            assert_eq!(c.log.level, "warn"); // RUST_LOG
            jail.set_env("HEXKV_LOG__LEVEL", "debug");
            assert_eq!(load(&overrides)?.log.level, "debug"); // HEXKV_ over RUST_LOG
            Ok(())
        });
    }

    #[test]
    fn serving_beyond_loopback_needs_keys_or_an_explicit_choice() {
        Jail::expect_with(|jail| {
            jail.set_env("HEXKV_HTTP__LISTEN", "0.0.0.0:8080");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(
                err.starts_with("auth.keys:") && err.contains("http.listen = 0.0.0.0:8080"),
                "{err}"
            );
            jail.set_env("HEXKV_AUTH__ALLOW_UNAUTHENTICATED", "true");
            load(&Overrides::default())?;
            jail.set_env("HEXKV_AUTH__ALLOW_UNAUTHENTICATED", "false");
            jail.create_file(
                "hexkv.toml",
                &format!(
                    r#"
                    [[auth.keys]]
                    name = "ops"
                    hash = "{}"
                    role = "admin"
                    "#,
                    hexkv_platform::auth::hash_key("secret")
                ),
            )?;
            let overrides = Overrides {
                config: Some("hexkv.toml".into()),
                ..Overrides::default()
            };
            let c = load(&overrides)?;
            assert_eq!(c.auth.keys[0].role, hexkv_platform::auth::Role::Admin);
            Ok(())
        });
    }

    #[test]
    fn a_plaintext_key_is_refused_with_its_name() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "hexkv.toml",
                r#"
                [[auth.keys]]
                name = "ci"
                hash = "my-secret-key"
                role = "write"
                "#,
            )?;
            let overrides = Overrides {
                config: Some("hexkv.toml".into()),
                ..Overrides::default()
            };
            let err = load(&overrides).unwrap_err();
            assert!(
                err.starts_with("auth.keys:") && err.contains("\"ci\""),
                "{err}"
            );
            assert!(err.contains("sha256:"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_postgres_url_is_a_secret_from_env_or_flag() {
        Jail::expect_with(|jail| {
            jail.set_env("HEXKV_STORE__BACKEND", "postgres");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(err.starts_with("store.postgres.url:"), "{err}");

            jail.set_env(
                "HEXKV_STORE__POSTGRES__URL",
                "postgres://hexkv:pw-from-env@db/kv",
            );
            jail.set_env("HEXKV_STORE__POSTGRES__MAX_CONNECTIONS", "64");
            let c = load(&Overrides::default())?;
            assert_eq!(c.store.backend, Backend::Postgres);
            assert_eq!(
                c.store.postgres.url.expose(),
                "postgres://hexkv:pw-from-env@db/kv"
            );
            assert_eq!(c.store.postgres.max_connections, 64);
            let shown = c.to_toml();
            assert!(!shown.contains("pw-from-env"), "{shown}");
            assert!(shown.contains("url = \"<redacted>\""), "{shown}");
            assert!(!format!("{c:?}").contains("pw-from-env"));

            let c = load(&Overrides {
                postgres_url: Some("postgres://other@db/kv".into()),
                ..Overrides::default()
            })?;
            assert_eq!(c.store.postgres.url.expose(), "postgres://other@db/kv"); // flag over env

            // The placeholder fed back from `config show` is refused.
            jail.set_env("HEXKV_STORE__POSTGRES__URL", "<redacted>");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(err.contains("placeholder"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("HEXKV_STORE__POSTGRES__MIN_CONNECTIONS", "20");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(err.starts_with("store.postgres.min_connections:"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            let c = load(&Overrides::default())?;
            assert_eq!(
                (
                    c.store.postgres.read_batch,
                    c.store.postgres.read_batch_queries
                ),
                (64, 4)
            );
            jail.set_env("HEXKV_STORE__POSTGRES__READ_BATCH", "0"); // off
            jail.set_env("HEXKV_STORE__POSTGRES__READ_BATCH_QUERIES", "0");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(
                err.starts_with("store.postgres.read_batch_queries:"),
                "{err}"
            );
            jail.set_env("HEXKV_STORE__POSTGRES__READ_BATCH_QUERIES", "16");
            assert_eq!(load(&Overrides::default())?.store.postgres.read_batch, 0);
            jail.set_env("HEXKV_STORE__POSTGRES__READ_BATCH", "1001");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(err.starts_with("store.postgres.read_batch:"), "{err}");
            jail.set_env("HEXKV_STORE__POSTGRES__READ_BATCH", "0");
            jail.set_env("HEXKV_STORE__POSTGRES__WRITE_BATCH_QUERIES", "0");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(
                err.starts_with("store.postgres.write_batch_queries:"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn resilience_settings_come_from_env_and_are_checked() {
        Jail::expect_with(|jail| {
            jail.set_env("HEXKV_RESILIENCE__STORE__TIMEOUT_MS", "250");
            jail.set_env("HEXKV_RESILIENCE__STORE__BREAKER_PROBES", "2");
            let c = load(&Overrides::default())?;
            assert_eq!(c.resilience.store.timeout_ms, 250);
            assert_eq!(c.resilience.store.breaker_probes, 2);
            assert_eq!(c.resilience.store.retry_attempts, 3); // default
            assert_eq!(c.resilience.store.apply, ApplyResilience::Remote); // default
            assert!(!c.resilience.store.apply.wraps(Backend::Memory));
            assert!(c.resilience.store.apply.wraps(Backend::Postgres));
            jail.set_env("HEXKV_RESILIENCE__STORE__APPLY", "always");
            let c = load(&Overrides::default())?;
            assert_eq!(c.resilience.store.apply, ApplyResilience::Always);
            assert!(c.resilience.store.apply.wraps(Backend::Memory));
            jail.set_env("HEXKV_RESILIENCE__STORE__APPLY", "never");
            let c = load(&Overrides::default())?;
            assert!(!c.resilience.store.apply.wraps(Backend::Postgres));
            jail.set_env("HEXKV_RESILIENCE__STORE__APPLY", "sometimes");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(
                err.contains("RESILIENCE.STORE.APPLY") && err.contains("`remote`"),
                "{err}"
            );
            jail.set_env("HEXKV_RESILIENCE__STORE__APPLY", "remote");
            jail.set_env(
                "HEXKV_RESILIENCE__STORE__BREAKER_FAILURE_RATE_PERCENT",
                "150",
            );
            let err = load(&Overrides::default()).unwrap_err();
            assert!(
                err.starts_with("resilience.store.breaker_failure_rate_percent:"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn yaml_files_work() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "c.yaml",
                "http:\n  listen: 0.0.0.0:9000\nauth:\n  allow_unauthenticated: true\n",
            )?;
            let c = load(&Overrides {
                config: Some("c.yaml".into()),
                ..Overrides::default()
            })?;
            assert_eq!(c.http.listen.to_string(), "0.0.0.0:9000");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("HEXKV_HTTP__LISTEN", "not an address");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(err.to_lowercase().contains("http.listen"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("HEXKV_STORE__MEMORY__FSYNCC", "never");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(err.to_lowercase().contains("fsyncc"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[limits]\nmax_value_bytes = 0\n")?;
            let err = load(&Overrides {
                config: Some("bad.toml".into()),
                ..Overrides::default()
            })
            .unwrap_err();
            assert!(err.starts_with("limits.max_value_bytes:"), "{err}");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.set_env("HEXKV_STORE__MEMORY__FSYNC", "interval");
            jail.set_env("HEXKV_STORE__MEMORY__FSYNC_INTERVAL_MS", "0");
            let err = load(&Overrides::default()).unwrap_err();
            assert!(err.starts_with("store.memory.fsync_interval_ms:"), "{err}");
            Ok(())
        });
        Jail::expect_with(|_| {
            let err = load(&Overrides {
                config: Some("missing.toml".into()),
                ..Overrides::default()
            })
            .unwrap_err();
            assert!(err.contains("missing.toml"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn show_round_trips() {
        let c = Config::default();
        let parsed: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(parsed, c);
    }

    #[test]
    fn opentelemetry_variables_turn_trace_export_on_and_off() {
        let exports = |traces: Option<bool>, vars: &[(&str, &str)]| {
            let config = TelemetryConfig {
                traces,
                ..TelemetryConfig::default()
            };
            config.exports(|name| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        // What the OpenTelemetry Operator injects turns export on by itself.
        assert!(exports(None, &[("OTEL_TRACES_EXPORTER", "otlp")]).is_on());
        assert!(exports(None, &[("OTEL_TRACES_EXPORTER", " console , OTLP ")]).is_on());
        assert!(!exports(None, &[("OTEL_TRACES_EXPORTER", "none")]).is_on());
        assert!(!exports(None, &[]).is_on());
        assert_eq!(
            exports(None, &[("OTEL_TRACES_EXPORTER", "zipkin")]),
            TraceExport::Unsupported("zipkin".into())
        );
        // hexkv's own setting wins when set.
        assert!(exports(Some(true), &[("OTEL_TRACES_EXPORTER", "none")]).is_on());
        assert!(!exports(Some(false), &[("OTEL_TRACES_EXPORTER", "otlp")]).is_on());
        // The SDK switch wins over everything.
        for traces in [None, Some(true)] {
            let off = exports(
                traces,
                &[
                    ("OTEL_SDK_DISABLED", "TRUE"),
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                ],
            );
            assert_eq!(off, TraceExport::Off("OTEL_SDK_DISABLED=true"));
        }
        assert!(
            exports(
                None,
                &[
                    ("OTEL_SDK_DISABLED", "false"),
                    ("OTEL_TRACES_EXPORTER", "otlp")
                ]
            )
            .is_on()
        );
    }

    /// Every setting of the code is a row of `docs/configuration.md`, with its environment
    /// variable and its default, and every row is a setting: the reference cannot drift from
    /// the code.
    #[test]
    fn the_configuration_reference_lists_every_setting_with_its_default() {
        fn leaves(
            prefix: &str,
            value: &serde_json::Value,
            out: &mut Vec<(String, serde_json::Value)>,
        ) {
            match value {
                serde_json::Value::Object(map) if !map.is_empty() => {
                    for (name, inner) in map {
                        let key = if prefix.is_empty() {
                            name.clone()
                        } else {
                            format!("{prefix}.{name}")
                        };
                        leaves(&key, inner, out);
                    }
                }
                _ => out.push((prefix.to_owned(), value.clone())),
            }
        }
        let mut settings = Vec::new();
        leaves(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut settings,
        );
        // Settings that are unset by default serialize to nothing: name them here.
        settings.push(("telemetry.traces".into(), serde_json::Value::Null));
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let rows: Vec<Vec<String>> = doc
            .lines()
            .filter(|line| line.starts_with("| `"))
            .map(|line| {
                line.split(" | ")
                    .map(|cell| cell.trim_matches(['|', ' ']).to_owned())
                    .collect()
            })
            .collect();
        let row_of = |key: &str| rows.iter().find(|cells| cells[0] == format!("`{key}`"));
        for (key, default) in &settings {
            let row =
                row_of(key).unwrap_or_else(|| panic!("docs/configuration.md has no row for {key}"));
            let env = format!("`HEXKV_{}`", key.to_ascii_uppercase().replace('.', "__"));
            assert!(
                row[2].starts_with(&env),
                "{key}: the environment variable is {env}, the reference says {}",
                row[2]
            );
            let shown = match default {
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                serde_json::Value::String(text) if !text.is_empty() => Some(text.clone()),
                _ => None,
            };
            if let Some(shown) = shown {
                assert!(
                    row[1].contains(&format!("`{shown}`")),
                    "{key}: the default is `{shown}`, the reference says {}",
                    row[1]
                );
            }
        }
        for cells in &rows {
            let key = cells[0].trim_matches('`');
            assert!(
                settings.iter().any(|(k, _)| k == key),
                "docs/configuration.md lists {key}, which is no setting"
            );
        }
    }

    #[test]
    fn flags_after_a_subcommand_win_and_the_others_fill_in() {
        let global = Overrides {
            config: Some("a.toml".into()),
            fsync: Some(FsyncPolicy::Never),
            data_dir: Some("/global".to_owned()),
            ephemeral: true,
            ..Overrides::default()
        };
        let serve = Overrides {
            fsync: Some(FsyncPolicy::Interval),
            log_level: Some("debug".into()),
            ..Overrides::default()
        };
        let merged = serve.or(global);
        assert_eq!(merged.config, Some("a.toml".into()));
        assert_eq!(merged.fsync, Some(FsyncPolicy::Interval));
        assert_eq!(merged.data_dir.as_deref(), Some("/global"));
        assert!(merged.ephemeral);
        assert_eq!(merged.log_level.as_deref(), Some("debug"));
        // And each given flag lands on its setting.
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(merged.layer())
            .extract()
            .unwrap();
        assert_eq!(config.store.memory.fsync, FsyncPolicy::Interval);
        assert_eq!(config.store.memory.data_dir, PathBuf::from("/global"));
        assert!(config.store.memory.ephemeral);
        assert_eq!(config.log.level, "debug");
        assert_eq!(
            config.http.listen,
            Config::default().http.listen,
            "not given: untouched"
        );
    }
}
