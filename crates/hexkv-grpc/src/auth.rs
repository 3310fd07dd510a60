//! Authentication and authorization of gRPC calls (see [`hexkv_core::auth`]).
//!
//! An interceptor on `hexkv.v1.KeyValue` reads the `authorization` metadata (`Bearer <key>`, the
//! gRPC convention), identifies the key and leaves the [`Principal`] in the call's extensions;
//! each method then checks its action (read, write or list, with the key or prefix from the
//! message) with [`authorize`]. The health and reflection services are open, or need the admin
//! role when configured so. Refusals are UNAUTHENTICATED or PERMISSION_DENIED, counted in
//! `hexkv_auth_failures_total` and logged with the key's name, never the key (`hexkv_telemetry::auth_refused`).

use std::sync::Arc;

use hexkv_core::auth::{Action, AuthError, Authenticator, Principal};
use tonic::{Request, Status};

/// Who may call what over gRPC.
#[derive(Debug, Clone)]
pub struct GrpcAuth {
    /// The keys.
    pub authenticator: Arc<Authenticator>,
    /// The health and reflection services answer without a key.
    pub open_health: bool,
}

/// The interceptor of the key-value service: authenticates, and keeps the principal.
#[derive(Clone)]
pub(crate) struct Authenticate {
    pub(crate) authenticator: Arc<Authenticator>,
    /// Also require the admin role (the operational services when protected).
    pub(crate) operational: bool,
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        let principal = self
            .authenticator
            .authenticate(presented)
            .map_err(|e| refuse(e, None))?;
        if self.operational {
            principal
                .authorize(Action::Operate)
                .map_err(|e| refuse(e, Some(&principal.name)))?;
        }
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// Checks `action` for the call's principal. `required`: authentication is on, so a call
/// without a principal (which the interceptor would have refused) is refused here too.
pub(crate) fn authorize<T>(
    request: &Request<T>,
    required: bool,
    action: Action<'_>,
) -> Result<(), Status> {
    match request.extensions().get::<Principal>() {
        Some(principal) => principal
            .authorize(action)
            .map_err(|e| refuse(e, Some(&principal.name))),
        None if required => Err(refuse(AuthError::Missing, None)),
        None => Ok(()),
    }
}

fn refuse(err: AuthError, name: Option<&str>) -> Status {
    hexkv_telemetry::auth_refused("grpc", &err, name);
    match err {
        AuthError::Forbidden { .. } => Status::permission_denied(err.to_string()),
        AuthError::Missing | AuthError::Invalid => Status::unauthenticated(err.to_string()),
    }
}
