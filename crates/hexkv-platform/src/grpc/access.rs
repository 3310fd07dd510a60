//! Who may call which RPC: every service is added behind an [`AdmissionLayer`] that carries its
//! declarations (per method, where the RPCs are defined, or one for a whole service such as
//! health and reflection), and an RPC without a declaration is not served: UNIMPLEMENTED for
//! everyone, as for a method that does not exist.
//!
//! Admission runs before the call is decoded, in this order: the RPC's declaration; the caller,
//! identified once after authentication as the key's name or else the peer address
//! ([`Caller`]); the throttle (the service's RPCs only), which counts the identity *before*
//! credentials are answered, so calls without a key or with a wrong one are limited by address
//! and guessing keys is throttled too; then the credentials. What remains, the resource an RPC
//! touches (hexkv: the key or prefix), is in its message: each method checks it with [`check`],
//! which refuses a call that did not pass admission.
//!
//! Refusals are UNAUTHENTICATED or PERMISSION_DENIED ([`status`]), counted in
//! `hexkv_auth_failures_total` and logged with the key's name, never the key
//! (`hexkv_telemetry::auth_refused`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use hexkv_resilience::Throttle;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tower::{Layer, Service};

pub use crate::admitted::AdmissionFuture;
use crate::auth::{Action, AuthError, AuthPolicy, Caller, Identity};
use crate::grpc::status;

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads the resource its message names. Throttled.
    Read,
    /// Changes the resource its message names. Throttled.
    Write,
    /// Lists under the prefix its message names. Throttled.
    List,
    /// Health and reflection: anyone when `auth.open_health`, else an admin key.
    Health,
}

impl Access {
    fn throttled(self) -> bool {
        !matches!(self, Access::Health)
    }
}

/// The declarations of one service.
#[derive(Debug, Clone, Copy)]
pub enum Declared {
    /// By method name; methods not listed are refused.
    Methods(&'static [(&'static str, Access)]),
    /// Every method of the service.
    Service(Access),
}

impl Declared {
    /// The access of the RPC at `path` (`/package.Service/Method`).
    fn of(self, path: &str) -> Option<Access> {
        match self {
            Declared::Service(access) => Some(access),
            Declared::Methods(methods) => {
                let method = path.rsplit('/').next()?;
                methods
                    .iter()
                    .find(|(name, _)| *name == method)
                    .map(|(_, access)| *access)
            }
        }
    }
}

/// What a call that passed admission carries in its extensions, for [`check`].
#[derive(Debug, Clone)]
pub struct Admitted {
    access: Access,
    caller: Caller,
}

/// Admits calls of one service by its declarations; see the module docs.
#[derive(Clone)]
pub struct AdmissionLayer(Arc<Admitter>);

struct Admitter {
    declared: Declared,
    auth: Option<AuthPolicy>,
    throttle: Option<Arc<Throttle<Identity>>>,
}

impl AdmissionLayer {
    /// Admission by `declared`, against `auth`'s keys (`None`: authentication off), with
    /// `throttle` per caller on the declared RPCs other than [`Access::Health`].
    pub fn new(
        declared: Declared,
        auth: Option<AuthPolicy>,
        throttle: Option<Arc<Throttle<Identity>>>,
    ) -> Self {
        Self(Arc::new(Admitter {
            declared,
            auth,
            throttle,
        }))
    }
}

impl<S> Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Admission<S> {
        Admission {
            inner,
            admitter: Arc::clone(&self.0),
        }
    }
}

/// The service of [`AdmissionLayer`].
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    admitter: Arc<Admitter>,
}

impl<S> Service<http::Request<Body>> for Admission<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = AdmissionFuture<S::Future, http::Response<Body>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        match self.admitter.admit(&mut request) {
            Ok(()) => AdmissionFuture::Admitted {
                inner: self.inner.call(request),
            },
            Err(status) => AdmissionFuture::refused(status.into_http()),
        }
    }
}

/// The peer's address, as the server recorded it: axum's `ConnectInfo` (hexkv's own serving) or
/// tonic's `TcpConnectInfo` (`tonic::transport::Server`).
fn peer<B>(request: &http::Request<B>) -> Option<std::net::IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .or_else(|| {
            extensions
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|addr| addr.ip())
        })
}

impl Admitter {
    fn admit(&self, request: &mut http::Request<Body>) -> Result<(), Status> {
        let Some(access) = self.declared.of(request.uri().path()) else {
            // No such method, or one added without a declaration: not served either way.
            tracing::debug!(
                path = request.uri().path(),
                "refused a call of an RPC that declares no access"
            );
            return Err(status::undeclared(request.uri().path()));
        };
        let auth = self.auth.as_ref();
        let presented = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let caller =
            Caller::authenticate(auth.map(|a| &*a.authenticator), presented, peer(request));
        if access.throttled()
            && let Some(throttle) = &self.throttle
            && let Err(wait) = throttle.check(&caller.identity)
        {
            return Err(status::throttled(wait));
        }
        let checked = match access {
            Access::Health if auth.is_none_or(|a| a.open_health) => Ok(()),
            Access::Health => caller.authorize(Action::Operate),
            // The key or prefix is in the message: the method checks it ([`check`]).
            Access::Read | Access::Write | Access::List => caller.authenticated(),
        };
        if let Err(err) = checked {
            return Err(refuse(err, caller.principal().map(|p| &*p.name)));
        }
        request.extensions_mut().insert(Admitted { access, caller });
        Ok(())
    }
}

/// Whether the call may touch `resource` (the key, or the listing's prefix, its message names),
/// as its RPC's declaration says; a call that did not pass admission is refused.
pub fn check<T>(request: &tonic::Request<T>, resource: &[u8]) -> Result<(), Status> {
    let Some(Admitted { access, caller }) = request.extensions().get::<Admitted>() else {
        tracing::error!(
            "refused a call that did not pass admission (a bug: serve the service behind its AdmissionLayer)"
        );
        return Err(status::not_admitted());
    };
    let action = match access {
        Access::Read => Action::Read(resource),
        Access::Write => Action::Write(resource),
        Access::List => Action::List(resource),
        Access::Health => Action::Operate,
    };
    caller
        .authorize(action)
        .map_err(|err| refuse(err, caller.principal().map(|p| &*p.name)))
}

/// The caller of an admitted call.
pub fn caller<T>(request: &tonic::Request<T>) -> Option<&Caller> {
    request
        .extensions()
        .get::<Admitted>()
        .map(|admitted| &admitted.caller)
}

fn refuse(err: AuthError, name: Option<&str>) -> Status {
    hexkv_telemetry::auth_refused("grpc", err.reason(), &err, name);
    status::auth(err)
}

/// The identity of an admitted call's caller (the authenticated key's name, else the peer
/// address): what throttles and feature-flag rollouts key on.
pub fn identity<T>(request: &tonic::Request<T>) -> Identity {
    caller(request).map_or(Identity::Unknown, |caller| caller.identity.clone())
}

/// `message` as a call that passed admission for `access` with authentication off: for unit
/// tests of a service's methods, which are called without a server.
pub fn admitted<T>(access: Access, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.extensions_mut().insert(Admitted {
        access,
        caller: Caller::authenticate(None, None, None),
    });
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_found_by_name_and_the_rest_refused() {
        let declared = Declared::Methods(&[("Get", Access::Read), ("Put", Access::Write)]);
        assert_eq!(declared.of("/shop.v1.Orders/Get"), Some(Access::Read));
        assert_eq!(declared.of("/shop.v1.Orders/Put"), Some(Access::Write));
        assert_eq!(declared.of("/shop.v1.Orders/Drop"), None);
        assert_eq!(declared.of("/shop.v1.Orders/"), None);
        let whole = Declared::Service(Access::Health);
        assert_eq!(
            whole.of("/grpc.health.v1.Health/Anything"),
            Some(Access::Health)
        );
    }

    #[test]
    fn a_method_checks_its_resource_against_the_admitted_caller() {
        let call = admitted(Access::Write, ());
        assert!(check(&call, b"anything").is_ok());
        assert_eq!(identity(&call), Identity::Unknown);
        let stray = tonic::Request::new(());
        assert_eq!(
            check(&stray, b"x").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }
}
