//! The service's configuration: its own sections (`[http]`, `[grpc]`, `[store]`) and the platform's
//! (`[log]`, `[telemetry]`, `[metrics]`, `[limits]`, `[auth]`, `[shutdown]`, `[tls]`, `[cors]`), read through the platform's layers
//! ([`ServiceSettings::load`]): defaults → the `--config` file (TOML, or YAML) → `RUST_LOG` →
//! `COUNTERS_SECTION__KEY`.

use hexkv_platform::app::ServiceSettings;
use hexkv_platform::auth::AuthConfig;
use hexkv_platform::config::{
    ConfigError, CorsConfig, GrpcConfig, HttpConfig, LimitsConfig, LogConfig, MetricsConfig,
    Secret, ShutdownConfig, TelemetryConfig, TlsConfig,
};
use serde::{Deserialize, Serialize};

/// Everything the service reads at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[http]` (declared by the platform): the REST listener.
    pub http: HttpConfig,
    /// `[grpc]` (declared by the platform): the gRPC listener.
    pub grpc: GrpcConfig,
    /// `[store]`
    pub store: StoreSettings,
    /// `[log]` (the platform's)
    pub log: LogConfig,
    /// `[telemetry]` (the platform's): trace export.
    pub telemetry: TelemetryConfig,
    /// `[metrics]` (the platform's)
    pub metrics: MetricsConfig,
    /// `[limits]` (the platform's)
    pub limits: LimitsConfig,
    /// `[auth]` (the platform's): API keys, whose `prefix` confines them to counters whose name
    /// starts with it.
    pub auth: AuthConfig,
    /// `[shutdown]` (the platform's)
    pub shutdown: ShutdownConfig,
    /// `[tls]` (the platform's)
    pub tls: TlsConfig,
    /// `[cors]` (the platform's): origins allowed to call from a browser.
    pub cors: CorsConfig,
}

/// `[store]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Which adapter keeps the counters (each is a cargo feature of the same name).
    pub backend: Backend,
    /// PostgreSQL's URL (`COUNTERS_STORE__POSTGRES_URL`), for `backend = "postgres"`.
    pub postgres_url: Secret,
}

/// The adapters of the store port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In the process's memory: nothing is kept across restarts.
    #[default]
    Memory,
    /// In PostgreSQL (`store.postgres_url`).
    Postgres,
}

impl ServiceSettings for Settings {
    const ENV_PREFIX: &'static str = "COUNTERS_";
    const SECTIONS: &'static [&'static str] = &["store"];

    hexkv_platform::platform_sections!();

    fn validate(&self) -> Result<(), ConfigError> {
        let built = match self.store.backend {
            Backend::Memory => cfg!(feature = "memory"),
            Backend::Postgres => cfg!(feature = "postgres"),
        };
        if !built {
            return Err(ConfigError::invalid(
                "store.backend",
                "this binary was built without that adapter's cargo feature",
            ));
        }
        if self.store.backend == Backend::Postgres && self.store.postgres_url.is_empty() {
            return Err(ConfigError::invalid(
                "store.postgres_url",
                "must be set when store.backend = \"postgres\"",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_needs_its_url_and_errors_name_the_key() {
        let mut settings = Settings::default();
        assert!(settings.validate().is_ok(), "memory by default");
        settings.store.backend = Backend::Postgres;
        let err = settings.validate().unwrap_err().to_string();
        assert!(err.starts_with("store.postgres_url: "), "{err}");
        settings.store.postgres_url = Secret::new("postgres://localhost/counters");
        assert_eq!(settings.validate().is_ok(), cfg!(feature = "postgres"));
    }
}
