//! Authentication and authorization of REST requests (see [`hexkv_core::auth`]).
//!
//! One middleware, before throttling and the handlers: it reads `Authorization: Bearer <key>`,
//! identifies the key, and checks the route's action — reading or writing the key in the path,
//! listing under the `prefix` query parameter, or calling a protected operational endpoint —
//! against the key's role and prefix. A refusal is 401 `unauthenticated` (with
//! `WWW-Authenticate`) or 403 `permission_denied`, counted in `hexkv_auth_failures_total` and
//! logged with the key's name, never the key. The principal is left in the request's extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hexkv_core::auth::{Action, AuthError, Authenticator};
use percent_encoding::percent_decode_str;

use crate::error::ApiError;
use crate::kv::{KV_PREFIX, list_query};

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

/// The middleware; see the module docs.
pub(crate) async fn guard(
    State(auth): State<Arc<HttpAuth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let open = match path {
        // The API's contract is public.
        "/openapi.json" => true,
        "/healthz" | "/readyz" => auth.open_health,
        "/metrics" => auth.open_metrics,
        _ => false,
    };
    if open {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let principal = match auth.authenticator.authenticate(presented) {
        Ok(principal) => principal,
        Err(err) => return refuse(err, None),
    };
    let target: Vec<u8>;
    let action = match path {
        "/healthz" | "/readyz" | "/metrics" => Some(Action::Operate),
        "/v1/kv" => {
            // A malformed query is the handler's 400 to give; for the scope check it lists
            // everything, which a key confined to a prefix may not.
            target = list_query(request.uri().query())
                .map(|q| q.prefix().as_bytes().to_vec())
                .unwrap_or_default();
            Some(Action::List(&target))
        }
        p if p.starts_with(KV_PREFIX) => {
            target = percent_decode_str(&p[KV_PREFIX.len()..]).collect();
            Some(match *request.method() {
                Method::PUT | Method::DELETE | Method::POST | Method::PATCH => {
                    Action::Write(&target)
                }
                _ => Action::Read(&target),
            })
        }
        // No such route: the router's 404, for an authenticated caller only.
        _ => None,
    };
    if let Some(action) = action
        && let Err(err) = principal.authorize(action)
    {
        return refuse(err, Some(&principal.name));
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn refuse(err: AuthError, name: Option<&str>) -> Response {
    hexkv_telemetry::auth_refused("http", &err, name);
    match err {
        AuthError::Forbidden { .. } => ApiError::PermissionDenied(err.to_string()),
        AuthError::Missing | AuthError::Invalid => ApiError::Unauthenticated(err.to_string()),
    }
    .into_response()
}
