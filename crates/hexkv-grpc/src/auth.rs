//! The gRPC adapter's API-key settings (see [`hexkv_core::auth`]).
//!
//! Calls present a key in the `authorization` metadata (`Bearer <key>`, the gRPC convention).
//! Every RPC declares what it needs, and admission checks it (the crate's `access` module): the
//! key-value RPCs need a key whose role and prefix allow the key or prefix of the message; health
//! and reflection are open, or need the admin role when configured so.

use std::sync::Arc;

use hexkv_core::auth::Authenticator;

/// Who may call what over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcAuth {
    /// The keys.
    pub authenticator: Arc<Authenticator>,
    /// The health and reflection services answer without a key.
    pub open_health: bool,
}
