//! The service's configuration: its own sections (`[http]`, `[grpc]`, `[store]`) and the platform's
//! (`[log]`, `[limits]`, `[auth]`, `[shutdown]`, `[tls]`), read through the platform's layers
//! ([`ServiceSettings::load`]): defaults → the `--config` file (TOML, or YAML) → `RUST_LOG` →
//! `COUNTERS_SECTION__KEY`.

use std::net::SocketAddr;

use hexkv_platform::app::ServiceSettings;
use hexkv_platform::auth::AuthConfig;
use hexkv_platform::config::{LimitsConfig, LogConfig, ShutdownConfig, TlsConfig};
use serde::{Deserialize, Serialize};

/// Everything the service reads at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[http]`
    pub http: HttpSettings,
    /// `[grpc]`
    pub grpc: GrpcSettings,
    /// `[store]`
    pub store: StoreSettings,
    /// `[log]` (the platform's)
    pub log: LogConfig,
    /// `[limits]` (the platform's)
    pub limits: LimitsConfig,
    /// `[auth]` (the platform's): API keys, whose `prefix` confines them to counters whose name
    /// starts with it.
    pub auth: AuthConfig,
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

/// `[grpc]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcSettings {
    /// The gRPC API's address; port 0 picks a free one.
    pub listen: SocketAddr,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50061)),
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

impl ServiceSettings for Settings {
    const ENV_PREFIX: &'static str = "COUNTERS_";
    const SECTIONS: &'static [&'static str] = &["http", "grpc", "store"];

    fn log(&self) -> &LogConfig {
        &self.log
    }
    fn limits(&self) -> &LimitsConfig {
        &self.limits
    }
    fn auth(&self) -> &AuthConfig {
        &self.auth
    }
    fn shutdown(&self) -> &ShutdownConfig {
        &self.shutdown
    }
    fn tls(&self) -> &TlsConfig {
        &self.tls
    }
}
