//! The REST adapter's API-key settings (see [`hexkv_core::auth`]).
//!
//! Requests present a key as `Authorization: Bearer <key>`. Every route declares what it needs
//! where it is added to the route table, and one middleware admits each request by that
//! declaration (the crate's `access` module): it identifies the caller, throttles, and checks the
//! key's role and prefix against the key or prefix the route touches.

use std::sync::Arc;

use hexkv_core::auth::Authenticator;

/// Who may call what over REST.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    /// The keys.
    pub authenticator: Arc<Authenticator>,
    /// `/healthz` and `/readyz` answer without a key (probes carry none).
    pub open_health: bool,
    /// `/metrics` answers without a key.
    pub open_metrics: bool,
}
