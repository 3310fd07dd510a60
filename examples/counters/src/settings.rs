//! The service's configuration: its own sections (`[http]`, `[store]`) and the platform's
//! (`[log]`, `[shutdown]`, `[tls]`), read through the platform's layers: defaults → the
//! `--config` file (TOML, or YAML) → `RUST_LOG` → `COUNTERS_SECTION__KEY` → flags.

use std::net::SocketAddr;
use std::path::Path;

use hexkv_platform::config::{ConfigError, Layers, LogConfig, ShutdownConfig, TlsConfig};
use serde::{Deserialize, Serialize};

/// Everything the service reads at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[http]`
    pub http: HttpSettings,
    /// `[store]`
    pub store: StoreSettings,
    /// `[log]` (the platform's)
    pub log: LogConfig,
    /// `[shutdown]` (the platform's)
    pub shutdown: ShutdownConfig,
    /// `[tls]` (the platform's)
    pub tls: TlsConfig,
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// The REST API's address; port 0 picks a free one.
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// PostgreSQL's URL (`COUNTERS_STORE__POSTGRES_URL`); empty: counters in memory.
    pub postgres_url: String,
}

impl Settings {
    /// The sections the environment may set.
    pub const SECTIONS: &'static [&'static str] = &["http", "store", "log", "shutdown", "tls"];

    /// Reads every layer, `file` included, and checks what types cannot.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let layers = Layers {
            env_prefix: "COUNTERS_",
            sections: Self::SECTIONS,
            file,
        };
        let settings: Self =
            hexkv_platform::config::layered(&Self::default(), &layers, figment::Figment::new())
                .extract()?;
        if settings.tls.enabled() == settings.tls.key.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "tls.key",
                "tls.cert and tls.key are set together",
            ));
        }
        Ok(settings)
    }
}
