//! The platform's sections of a service's configuration, declared once (type, default, doc) and
//! read by the service's configuration layers (defaults → file → environment → flags).

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
