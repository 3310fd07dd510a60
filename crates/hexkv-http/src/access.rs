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
//!   L --> Z[authorize: role and key prefix, 401 / 403]
//!   Z --> H
//! ```
//!
//! The order matters: the caller is identified once, after authentication, as the key's name or
//! else the peer address ([`Caller`]); the throttle counts the identity *before* credentials are
//! answered, so requests with no key or a wrong one are limited by address and guessing keys is
//! throttled too. The [`Caller`] is left in the request's extensions for the handlers (feature
//! flags roll out by its identity).
//!
//! Refusals are 401 `unauthenticated` (with `WWW-Authenticate`) or 403 `permission_denied`,
//! counted in `hexkv_auth_failures_total` and logged with the key's name, never the key.

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use hexkv_core::auth::{Action, AuthError, Caller};

use crate::AppState;
use crate::auth::HttpAuth;
use crate::error::ApiError;

/// What a route needs, declared next to its definition in the route table.
#[derive(Clone, Copy)]
pub(crate) enum Access {
    /// Anyone: the API's contract (`/openapi.json`).
    Public,
    /// The probes (`/healthz`, `/readyz`): anyone when `auth.open_health`, else an admin key.
    Health,
    /// The metrics: anyone when `auth.open_metrics`, else an admin key.
    Metrics,
    /// The key this function reads from the request: read by `GET` and `HEAD`, written by every
    /// other method. Throttled.
    Key(Resource),
    /// Listing under the prefix this function reads from the request. Throttled.
    List(Resource),
    /// Any valid key, whatever its role and prefix: a route that touches no key (`/v1/kv/`, a
    /// key of no bytes, which is refused anyway), and paths no route serves. Throttled.
    Authenticated,
}

/// Reads the key or prefix a request touches, as raw bytes (the scope check needs no parsing).
pub(crate) type Resource = fn(&Request) -> Cow<'_, [u8]>;

impl Access {
    /// Whether the route is the API's, which per-client throttling limits; probes, scrapes and the
    /// contract are never throttled.
    fn throttled(self) -> bool {
        matches!(
            self,
            Access::Key(_) | Access::List(_) | Access::Authenticated
        )
    }
}

/// Each route's access, by its path (a fast hash: admission looks one up per request).
type Declared = HashMap<&'static str, Access, foldhash::fast::FixedState>;

/// The route table: the axum `Router` of the application's routes and each route's
/// [`Access`], added together so that neither goes without the other.
pub(crate) struct Routes {
    router: Router<AppState>,
    declared: Declared,
}

impl Routes {
    pub(crate) fn new() -> Self {
        Self {
            router: Router::new(),
            declared: Declared::default(),
        }
    }

    /// Serves `path` with `methods`, which need `access`.
    pub(crate) fn route(
        mut self,
        path: &'static str,
        access: Access,
        methods: MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, methods);
        let earlier = self.declared.insert(path, access);
        assert!(earlier.is_none(), "the route {path} is declared twice");
        self
    }

    /// The router, with every route behind the admission middleware ([`AdmitLayer`]). `not_found`
    /// answers paths no route serves and `method_not_allowed` the methods a route lacks, behind
    /// admission too: to a caller without a valid key they are 401 like any protected route, so a
    /// stranger learns nothing of what exists. A route that reaches the router without a
    /// declaration is refused.
    pub(crate) fn into_router<H, T, M, U>(
        self,
        admission: Admission,
        not_found: H,
        method_not_allowed: M,
    ) -> Router<AppState>
    where
        H: axum::handler::Handler<T, AppState>,
        T: 'static,
        M: axum::handler::Handler<U, AppState>,
        U: 'static,
    {
        let admit = AdmitLayer(Arc::new(Admitter {
            declared: self.declared,
            admission,
        }));
        self.router
            .method_not_allowed_fallback(method_not_allowed)
            .route_layer(admit.clone())
            .fallback(not_found.layer(admit))
    }
}

/// What admission needs besides the declarations.
#[derive(Clone, Default)]
pub(crate) struct Admission {
    /// API keys; `None`: authentication is off and every request is let in.
    pub(crate) auth: Option<HttpAuth>,
    /// Per-client throttling of the API's routes.
    pub(crate) throttle: Option<Arc<hexkv_resilience::Throttle<hexkv_core::Identity>>>,
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
    type Future = AdmitFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        match self.admitter.admit(&mut request) {
            Ok(()) => AdmitFuture::Admitted {
                inner: self.inner.call(request),
            },
            Err(refusal) => AdmitFuture::Refused {
                response: Some(refusal.into_response()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of [`Admit`]: the route's, or a refusal.
    #[project = AdmitProj]
    enum AdmitFuture<F> {
        Admitted { #[pin] inner: F },
        Refused { response: Option<Response> },
    }
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for AdmitFuture<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AdmitProj::Admitted { inner } => inner.poll(cx),
            AdmitProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

impl Admitter {
    /// Admits `request` by its route's declaration, leaving its [`Caller`] in its extensions,
    /// or says why not.
    fn admit(&self, request: &mut Request) -> Result<(), ApiError> {
        let access = match request.extensions().get::<MatchedPath>() {
            // The fallback: no route serves the path.
            None => Access::Authenticated,
            Some(route) => match self.declared.get(route.as_str()) {
                Some(access) => *access,
                None => {
                    tracing::error!(
                        route = route.as_str(),
                        "refused a request for a route that declares no access (a bug: declare \
                         it in the route table)"
                    );
                    return Err(ApiError::Undeclared);
                }
            },
        };
        let Admission { auth, throttle } = &self.admission;
        let open = match access {
            Access::Public => true,
            Access::Health => auth.as_ref().is_none_or(|a| a.open_health),
            Access::Metrics => auth.as_ref().is_none_or(|a| a.open_metrics),
            Access::Key(_) | Access::List(_) | Access::Authenticated => false,
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
            return Err(ApiError::Throttled(wait));
        }
        let checked = match access {
            Access::Key(resource) => {
                let key = resource(request);
                match *request.method() {
                    Method::GET | Method::HEAD => caller.authorize(Action::Read(&key)),
                    _ => caller.authorize(Action::Write(&key)),
                }
            }
            Access::List(resource) => caller.authorize(Action::List(&resource(request))),
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
fn identify(auth: Option<&HttpAuth>, request: &Request) -> Caller {
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

fn refuse(err: AuthError, name: Option<&str>) -> ApiError {
    hexkv_telemetry::auth_refused("http", err.reason(), &err, name);
    match err {
        AuthError::Forbidden { .. } => ApiError::PermissionDenied(err.to_string()),
        AuthError::Missing | AuthError::Invalid => ApiError::Unauthenticated(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// Every route of the table, with its access, and every path of the OpenAPI document: the
    /// same routes (`{key}` there is the `{*key}` wildcard here).
    #[test]
    fn every_served_route_is_declared_and_documented() {
        let options = crate::HttpOptions {
            max_body_bytes: 16,
            max_in_flight: 0,
            request_timeout: None,
        };
        let table = crate::route_table(&options, None, true);
        let mut declared: Vec<String> = table
            .declared
            .keys()
            .map(|path| path.replace("{*", "{"))
            .collect();
        declared.sort();
        let document: serde_json::Value =
            serde_json::from_str(&crate::openapi::document()).unwrap();
        let mut documented: Vec<String> = document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        // `/v1/kv/` is the key route's empty-key case (400 `invalid_key`), documented there.
        documented.push(crate::routes::EMPTY_KEY.to_owned());
        documented.sort();
        assert_eq!(declared, documented);
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
        let app = undeclared
            .into_router(
                Admission::default(),
                || async { ApiError::RouteNotFound },
                || async { ApiError::MethodNotAllowed },
            )
            .with_state(crate::AppState(Arc::new(crate::Shared {
                api: Arc::new(hexkv_core::MockKeyValueApi::new()),
                metrics: None,
            })));
        let call = |path: &'static str| {
            let app = app.clone();
            async move {
                app.oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
                    .await
                    .unwrap()
                    .status()
            }
        };
        assert_eq!(call("/declared").await, StatusCode::OK);
        assert_eq!(call("/undeclared").await, StatusCode::FORBIDDEN);
        assert_eq!(call("/nowhere").await, StatusCode::NOT_FOUND);
    }
}
