//! Who may call what, for every service on the platform: API keys with roles and scopes
//! ([`hexkv_auth`], re-exported here), the `[auth]` section ([`AuthConfig`]) and the
//! [`AuthPolicy`] that both transports' admission reads
//! ([`http::access`](crate::http::access), [`grpc::access`](crate::grpc::access)).
//!
//! The service says what a request touches — a key for hexkv, a counter's name for
//! `examples/counters` — and the platform checks it against the caller's key: its role (`read`,
//! `write`, `admin`) and its prefix. Every route and RPC declares its access where it is added;
//! one without a declaration is refused for everyone.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

pub use hexkv_auth::flags;
pub use hexkv_auth::{
    Action, ApiKeyConfig, ApiKeys, AuthError, Authenticator, Caller, Credentials, Identity,
    KeyConfigError, Principal, Role, bearer, hash_key,
};

/// `[auth]`: API keys, and which operational endpoints answer without one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The API keys (`[[auth.keys]]`: `name`, `hash` (`sha256:<hex>` of the key), `role` of
    /// `read`, `write` or `admin`, optional `prefix`). None: no authentication.
    pub keys: Vec<ApiKeyConfig>,
    /// `/healthz`, `/readyz` and the gRPC health and reflection services answer without a key.
    pub open_health: bool,
    /// `/metrics` answers without a key.
    pub open_metrics: bool,
    /// Serve beyond loopback without any key configured (anyone who reaches the port may do
    /// everything).
    pub allow_unauthenticated: bool,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            open_health: true,
            open_metrics: true,
            allow_unauthenticated: false,
        }
    }
}

impl AuthConfig {
    /// Checks the keys, and refuses to serve an address beyond loopback without any key unless
    /// `allow_unauthenticated` says so. `listeners` are the addresses served, by the key that
    /// sets each (`http.listen`).
    pub fn validate(&self, listeners: &[(&str, SocketAddr)]) -> Result<(), ConfigError> {
        if let Err(e) = ApiKeys::new(&self.keys) {
            return Err(ConfigError::invalid("auth.keys", e.to_string()));
        }
        if self.keys.is_empty() && !self.allow_unauthenticated {
            let exposed = listeners.iter().find(|(_, addr)| !addr.ip().is_loopback());
            if let Some((key, addr)) = exposed {
                return Err(ConfigError::invalid(
                    "auth.keys",
                    format!(
                        "{key} = {addr} is reachable beyond this machine, but no API key is \
                         configured: add [[auth.keys]] (a key's hash is `sha256:<hex>` of it), \
                         or set auth.allow_unauthenticated = true to serve everyone"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The policy of these settings: `None` when no key is configured (every request is let
    /// in).
    pub fn policy(&self) -> Result<Option<AuthPolicy>, ConfigError> {
        if self.keys.is_empty() {
            return Ok(None);
        }
        let keys = ApiKeys::new(&self.keys)
            .map_err(|e| ConfigError::invalid("auth.keys", e.to_string()))?;
        Ok(Some(AuthPolicy {
            authenticator: Arc::new(Authenticator::new(keys)),
            open_health: self.open_health,
            open_metrics: self.open_metrics,
        }))
    }
}

/// What admission checks requests against, on both transports.
#[derive(Debug, Clone)]
pub struct AuthPolicy {
    /// The keys in force (a reload may rotate them: [`Authenticator::set`]).
    pub authenticator: Arc<Authenticator>,
    /// The health probes (REST `/healthz` and `/readyz`, gRPC health and reflection) answer
    /// without a key; otherwise they need an admin key.
    pub open_health: bool,
    /// `/metrics` answers without a key; otherwise it needs an admin key.
    pub open_metrics: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            hash: hash_key(name),
            role: Role::Read,
            prefix: None,
        }
    }

    #[test]
    fn no_key_beyond_loopback_is_refused_naming_the_listener() {
        let open = AuthConfig::default();
        let local = [("http.listen", SocketAddr::from(([127, 0, 0, 1], 80)))];
        let public = [("http.listen", SocketAddr::from(([0, 0, 0, 0], 80)))];
        assert!(open.validate(&local).is_ok());
        let err = open.validate(&public).unwrap_err().to_string();
        assert!(
            err.starts_with("auth.keys: http.listen = 0.0.0.0:80"),
            "{err}"
        );
        let allowed = AuthConfig {
            allow_unauthenticated: true,
            ..AuthConfig::default()
        };
        assert!(allowed.validate(&public).is_ok());
        let keyed = AuthConfig {
            keys: vec![key("a")],
            ..AuthConfig::default()
        };
        assert!(keyed.validate(&public).is_ok());
        assert!(keyed.policy().unwrap().is_some());
        assert!(open.policy().unwrap().is_none());
        let twice = AuthConfig {
            keys: vec![key("a"), key("a")],
            ..AuthConfig::default()
        };
        let err = twice.validate(&local).unwrap_err().to_string();
        assert!(err.starts_with("auth.keys: key \"a\""), "{err}");
    }
}
