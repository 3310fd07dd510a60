//! Who may call which route: every route declares its [`Access`] where it is added to the route
//! table ([`Routes::route`]), and one middleware, after routing, admits each request by its
//! route's declaration. A route without a declaration is refused for everyone.
//!
//! ```mermaid
//! flowchart LR
//!   R[routed request] --> D{the route's declaration}
//!   D -- none --> X[403 permission_denied, logged as a bug]
//!   D -- Public, open probes --> H[handler]
//!   D -- a key is needed --> A[authenticate: the caller's identity]
//!   A --> T{throttled route?}
//!   T -- yes --> L[the identity's rate: 429 throttled]
//!   T -- no --> Z
//!   L --> Z[authorize: role and prefix, 401 / 403]
//!   Z --> H
//! ```
//!
//! The service says what a request touches with a [`Resource`]: a key for hexkv, a counter's
//! name for `examples/counters`, as bytes (the scope check compares prefixes, it needs nothing
//! parsed). [`PathTail`] is the common case, the rest of the path after the route's prefix.
//!
//! The order matters: the caller is identified once, after authentication, as the key's name or
//! else the peer address ([`Caller`]); the throttle counts the identity *before* credentials are
//! answered, so requests with no key or a wrong one are limited by address and guessing keys is
//! throttled too. The [`Caller`] is left in the request's extensions for the handlers (feature
//! flags roll out by its identity).
//!
//! Refusals are problem+json ([`Problem`]): 401 `unauthenticated` (with `WWW-Authenticate`),
//! 403 `permission_denied`, 429 `throttled`; counted in `hexkv_auth_failures_total` and logged
//! with the key's name, never the key.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use hexkv_resilience::Throttle;

use crate::admitted::AdmissionFuture;
use crate::auth::{Action, AuthError, AuthPolicy, Caller, Identity};
use crate::http::problem::Problem;

/// What a request touches, named by the bytes the scopes compare: the service implements it
/// for its routes (a function `fn(&Request) -> Cow<[u8]>` is one).
pub trait Resource: Send + Sync + 'static {
    /// The resource `request` touches. A request too malformed to name one may answer what a
    /// scope can never hold (empty bytes, "everything"): the handler then refuses it with its
    /// own precise error, if admission has not already.
    fn of<'r>(&self, request: &'r Request) -> Cow<'r, [u8]>;
}

impl<F> Resource for F
where
    F: for<'r> Fn(&'r Request) -> Cow<'r, [u8]> + Send + Sync + 'static,
{
    fn of<'r>(&self, request: &'r Request) -> Cow<'r, [u8]> {
        self(request)
    }
}

/// The resource is the rest of the path after this prefix, percent-decoded: `PathTail
/// ("/v1/counters/")` names `visits` for `/v1/counters/visits`. Borrowed unless the path holds
/// escapes.
#[derive(Debug, Clone, Copy)]
pub struct PathTail(pub &'static str);

impl Resource for PathTail {
    fn of<'r>(&self, request: &'r Request) -> Cow<'r, [u8]> {
        let raw = request
            .uri()
            .path()
            .strip_prefix(self.0)
            .unwrap_or_default();
        percent_encoding::percent_decode_str(raw).into()
    }
}

/// What a route needs, declared next to its definition in the route table.
#[derive(Clone)]
pub enum Access {
    /// Anyone: the API's contract (`/openapi.json`).
    Public,
    /// The probes (`/healthz`, `/readyz`): anyone when `auth.open_health`, else an admin key.
    Health,
    /// The metrics: anyone when `auth.open_metrics`, else an admin key.
    Metrics,
    /// The resource this names: read by `GET` and `HEAD`, changed by every other method.
    /// Throttled.
    Resource(Arc<dyn Resource>),
    /// Listing under the prefix this names. Throttled.
    List(Arc<dyn Resource>),
    /// Any valid key, whatever its role and prefix: a route that touches no resource, and paths
    /// no route serves. Throttled.
    Authenticated,
}

impl Access {
    /// [`Access::Resource`] of `resource`.
    pub fn resource(resource: impl Resource) -> Self {
        Access::Resource(Arc::new(resource))
    }

    /// [`Access::List`] under the prefix `prefix` names.
    pub fn list(prefix: impl Resource) -> Self {
        Access::List(Arc::new(prefix))
    }

    /// Whether the route is the service's, which per-client throttling limits; probes, scrapes
    /// and the contract are never throttled.
    fn throttled(&self) -> bool {
        matches!(
            self,
            Access::Resource(_) | Access::List(_) | Access::Authenticated
        )
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Public => "Public",
            Access::Health => "Health",
            Access::Metrics => "Metrics",
            Access::Resource(_) => "Resource",
            Access::List(_) => "List",
            Access::Authenticated => "Authenticated",
        })
    }
}

/// Each route's access, by its path (a fast hash: admission looks one up per request).
type Declared = HashMap<&'static str, Access, foldhash::fast::FixedState>;

/// The route table: an axum `Router` and each route's [`Access`], added together so that
/// neither goes without the other.
pub struct Routes<S = ()> {
    router: Router<S>,
    declared: Declared,
}

impl<S> Default for Routes<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for Routes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routes")
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

impl<S> Routes<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// No routes.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            declared: Declared::default(),
        }
    }

    /// Serves `path` with `methods`, which need `access`.
    ///
    /// # Panics
    /// When `path` is declared twice (a bug of the table).
    pub fn route(mut self, path: &'static str, access: Access, methods: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, methods);
        let earlier = self.declared.insert(path, access);
        assert!(earlier.is_none(), "the route {path} is declared twice");
        self
    }

    /// Both tables' routes.
    ///
    /// # Panics
    /// When both declare a path.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        for (path, access) in other.declared {
            let earlier = self.declared.insert(path, access);
            assert!(earlier.is_none(), "the route {path} is declared twice");
        }
        self
    }

    /// Every route's layers wrapped by `layer` (`Router::layer`); declarations unchanged.
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as tower::Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }

    /// The table with the routes' state given (`Router::with_state`).
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            declared: self.declared,
        }
    }

    /// The declared paths, as the router matches them (`/v1/counters/{name}`).
    pub fn paths(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.declared.keys().copied()
    }

    /// The router, with every route behind the admission middleware (see the module docs).
    /// `not_found` answers paths no route serves and `method_not_allowed` the methods a route
    /// lacks, behind admission too: to a caller without a valid key they are 401 like any
    /// protected route, so a stranger learns nothing of what exists. A route that reaches the
    /// router without a declaration is refused.
    pub fn into_router<H, T, M, U>(
        self,
        admission: Admission,
        not_found: H,
        method_not_allowed: M,
    ) -> Router<S>
    where
        H: axum::handler::Handler<T, S>,
        T: 'static,
        M: axum::handler::Handler<U, S>,
        U: 'static,
    {
        let admit = AdmitLayer(Arc::new(Admitter {
            declared: self.declared,
            admission,
        }));
        self.router
            .method_not_allowed_fallback(method_not_allowed)
            .route_layer(admit.clone())
            .fallback(axum::handler::Handler::layer(not_found, admit))
    }
}

/// What admission needs besides the declarations.
#[derive(Clone, Default)]
pub struct Admission {
    /// API keys; `None`: authentication is off and every request is let in.
    pub auth: Option<AuthPolicy>,
    /// Per-client throttling of the service's routes, by the caller's [`Identity`].
    pub throttle: Option<Arc<Throttle<Identity>>>,
}

struct Admitter {
    declared: Declared,
    admission: Admission,
}

/// The admission middleware (see the module docs), as a tower layer rather than
/// `axum::middleware::from_fn`: it runs on every request, and admission never waits, so its
/// future is the inner one or a refusal, neither boxed.
#[derive(Clone)]
struct AdmitLayer(Arc<Admitter>);

impl<S> tower::Layer<S> for AdmitLayer {
    type Service = Admit<S>;

    fn layer(&self, inner: S) -> Admit<S> {
        Admit {
            inner,
            admitter: Arc::clone(&self.0),
        }
    }
}

/// The service of [`AdmitLayer`].
#[derive(Clone)]
struct Admit<S> {
    inner: S,
    admitter: Arc<Admitter>,
}

impl<S> tower::Service<Request> for Admit<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AdmissionFuture<S::Future, Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.admitter.admit(&mut request) {
            Ok(()) => AdmissionFuture::Admitted {
                inner: self.inner.call(request),
            },
            Err(refusal) => AdmissionFuture::refused(refusal.into_response()),
        }
    }
}

impl Admitter {
    /// Admits `request` by its route's declaration, leaving its [`Caller`] in its extensions,
    /// or says why not.
    fn admit(&self, request: &mut Request) -> Result<(), Problem> {
        let fallback = Access::Authenticated;
        let access = match request.extensions().get::<MatchedPath>() {
            // The fallback: no route serves the path.
            None => &fallback,
            Some(route) => match self.declared.get(route.as_str()) {
                Some(access) => access,
                None => {
                    tracing::error!(
                        route = route.as_str(),
                        "refused a request for a route that declares no access (a bug: declare \
                         it in the route table)"
                    );
                    return Err(Problem::undeclared());
                }
            },
        };
        let Admission { auth, throttle } = &self.admission;
        let open = match access {
            Access::Public => true,
            Access::Health => auth.as_ref().is_none_or(|a| a.open_health),
            Access::Metrics => auth.as_ref().is_none_or(|a| a.open_metrics),
            Access::Resource(_) | Access::List(_) | Access::Authenticated => false,
        };
        if open {
            return Ok(());
        }
        let caller = identify(auth.as_ref(), request);
        if access.throttled()
            && let Some(throttle) = throttle
            && let Err(wait) = throttle.check(&caller.identity)
        {
            metrics::counter!(hexkv_telemetry::metrics::THROTTLED, "protocol" => "http")
                .increment(1);
            return Err(Problem::throttled(wait));
        }
        let checked = match access {
            Access::Resource(resource) => {
                let touched = resource.of(request);
                match *request.method() {
                    Method::GET | Method::HEAD => caller.authorize(Action::Read(&touched)),
                    _ => caller.authorize(Action::Write(&touched)),
                }
            }
            Access::List(prefix) => caller.authorize(Action::List(&prefix.of(request))),
            Access::Authenticated => caller.authenticated(),
            Access::Health | Access::Metrics => caller.authorize(Action::Operate),
            Access::Public => Ok(()),
        };
        if let Err(err) = checked {
            return Err(refuse(err, caller.principal().map(|p| &*p.name)));
        }
        request.extensions_mut().insert(caller);
        Ok(())
    }
}

/// The request's [`Caller`]: its `Authorization: Bearer` key, else its peer address.
fn identify(auth: Option<&AuthPolicy>, request: &Request) -> Caller {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    Caller::authenticate(auth.map(|a| &*a.authenticator), presented, peer)
}

fn refuse(err: AuthError, name: Option<&str>) -> Problem {
    hexkv_telemetry::auth_refused("http", err.reason(), &err, name);
    match err {
        AuthError::Forbidden { .. } => Problem::permission_denied(err.to_string()),
        AuthError::Missing | AuthError::Invalid => Problem::unauthenticated(err.to_string()),
    }
}

/// The caller admission found for `request` (the authenticated key's name, else the peer
/// address); [`Identity::Unknown`] for a route that let it in without identifying it.
pub fn identity(request: &Request) -> Identity {
    request
        .extensions()
        .get::<Caller>()
        .map_or(Identity::Unknown, |caller| caller.identity.clone())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;
    use crate::auth::{ApiKeyConfig, ApiKeys, Authenticator, Role, hash_key};

    fn app(admission: Admission) -> Router {
        Routes::new()
            .route(
                "/v1/things/{name}",
                Access::resource(PathTail("/v1/things/")),
                get(|| async { "read" }).post(|| async { "written" }),
            )
            .route("/open", Access::Public, get(|| async { "open" }))
            .route("/healthz", Access::Health, get(|| async { "ok" }))
            .into_router(
                admission,
                || async { Problem::route_not_found() },
                || async { Problem::method_not_allowed() },
            )
    }

    async fn call(app: &Router, method: Method, path: &str, key: Option<&str>) -> StatusCode {
        let mut request = axum::http::Request::builder().method(method).uri(path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        response.status()
    }

    fn keyed() -> Admission {
        let key = |name: &str, role, prefix: Option<&str>| ApiKeyConfig {
            name: name.into(),
            hash: hash_key(name),
            role,
            prefix: prefix.map(str::to_owned),
        };
        let keys = ApiKeys::new(&[
            key("team-a", Role::Write, Some("a-")),
            key("reader", Role::Read, None),
        ])
        .unwrap();
        Admission {
            auth: Some(AuthPolicy {
                authenticator: Arc::new(Authenticator::new(keys)),
                open_health: false,
                open_metrics: true,
            }),
            throttle: None,
        }
    }

    #[tokio::test]
    async fn the_resource_a_route_names_is_checked_against_the_key_s_role_and_prefix() {
        let app = app(keyed());
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            call(&app, get.clone(), "/v1/things/a-1", Some("team-a")).await,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, post.clone(), "/v1/things/a-1", Some("team-a")).await,
            StatusCode::OK
        );
        // Percent-decoded before the check: `%62` is `b`.
        assert_eq!(
            call(&app, get.clone(), "/v1/things/%62-1", Some("team-a")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, get.clone(), "/v1/things/b-1", Some("reader")).await,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, post, "/v1/things/b-1", Some("reader")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, get.clone(), "/v1/things/a-1", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, get.clone(), "/v1/things/a-1", Some("nobody")).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(call(&app, get.clone(), "/open", None).await, StatusCode::OK);
        // Probes need an admin key when not open; unknown paths need a key to be told so.
        assert_eq!(
            call(&app, get.clone(), "/healthz", Some("reader")).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, get.clone(), "/nowhere", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&app, get, "/nowhere", Some("reader")).await,
            StatusCode::NOT_FOUND
        );
        let open = self::app(Admission::default());
        assert_eq!(
            call(&open, Method::DELETE, "/v1/things/x", None).await,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    /// A route that reaches the router without a declaration (added beside the table, or nested
    /// under another path) is refused for everyone, even with authentication off.
    #[tokio::test]
    async fn a_route_without_a_declaration_is_refused() {
        let undeclared = Routes {
            router: Router::new().route("/undeclared", get(|| async { "served" })),
            declared: Declared::default(),
        }
        .route("/declared", Access::Public, get(|| async { "served" }));
        let app = undeclared.into_router(
            Admission::default(),
            || async { Problem::route_not_found() },
            || async { Problem::method_not_allowed() },
        );
        assert_eq!(
            call(&app, Method::GET, "/declared", None).await,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, Method::GET, "/undeclared", None).await,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, Method::GET, "/nowhere", None).await,
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn a_caller_over_its_rate_is_throttled_by_identity() {
        let throttle = Arc::new(Throttle::new(60, 1, 16));
        let app = app(Admission {
            throttle: Some(throttle),
            ..keyed()
        });
        let get = Method::GET;
        assert_eq!(
            call(&app, get.clone(), "/v1/things/a-1", Some("team-a")).await,
            StatusCode::OK
        );
        assert_eq!(
            call(&app, get.clone(), "/v1/things/a-1", Some("team-a")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // Another key is another client; the probes are never throttled.
        assert_eq!(
            call(&app, get.clone(), "/v1/things/a-1", Some("reader")).await,
            StatusCode::OK
        );
        assert_eq!(call(&app, get, "/open", None).await, StatusCode::OK);
    }
}
