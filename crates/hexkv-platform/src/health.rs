//! Health for orchestrators: liveness answers while the process serves; readiness asks the
//! checks a service registered, and fails once the service drains.
//!
//! - `GET /healthz` ([`healthz`]) touches nothing: a database outage must not get every replica
//!   restarted.
//! - `GET /readyz` ([`readyz`]) runs every [`ReadinessCheck`] of the [`Readiness`] registry and
//!   answers 503 when one fails or when draining has begun ([`Readiness::begin_draining`], which
//!   [`Servers::run`](crate::servers::Servers::run)'s `draining` step calls), so the load
//!   balancer takes the replica out before its listeners close.
//!
//! - `GET /metrics` ([`fn@metrics`]) is the Prometheus exposition of the process's recorder.
//!
//! The health routes answer `{"status": …, "checks": [{"name", "ok", "detail"?}]}` with `Cache-Control:
//! no-store`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::access::{Access, Routes};

/// What a readiness check answers: `Err` says why the service should get no traffic.
pub type CheckResult = Result<(), String>;

/// One thing the service needs to serve (its store reachable, a cache warm…).
pub trait ReadinessCheck: Send + Sync + 'static {
    /// Runs the check; keep it quick (probes time out).
    fn check(&self) -> Pin<Box<dyn Future<Output = CheckResult> + Send + '_>>;
}

impl<F, Fut> ReadinessCheck for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    fn check(&self) -> Pin<Box<dyn Future<Output = CheckResult> + Send + '_>> {
        Box::pin(self())
    }
}

/// One check's outcome, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The registry of a service's readiness checks, and whether it drains.
#[derive(Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Box<dyn ReadinessCheck>)>,
    draining: AtomicBool,
}

impl Readiness {
    /// No checks: ready until draining.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check named `name` (shown in `/readyz`).
    pub fn with_check(mut self, name: &'static str, check: impl ReadinessCheck) -> Self {
        self.checks.push((name, Box::new(check)));
        self
    }

    /// From now on the service is not ready: it is shutting down.
    pub fn begin_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Runs every check (in the order added), then `draining`.
    pub async fn check(&self) -> Vec<Checked> {
        let mut checked = Vec::with_capacity(self.checks.len() + 1);
        for (name, check) in &self.checks {
            let result = check.check().await;
            checked.push(Checked {
                name,
                ok: result.is_ok(),
                detail: result.err(),
            });
        }
        let draining = self.draining.load(Ordering::SeqCst);
        checked.push(Checked {
            name: "draining",
            ok: !draining,
            detail: draining.then(|| "the service is shutting down".to_owned()),
        });
        checked
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    checks: &'a [Checked],
}

fn answer(status: StatusCode, body: &Health<'_>) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Response {
    answer(
        StatusCode::OK,
        &Health {
            status: "ok",
            checks: &[],
        },
    )
}

/// `GET /readyz`: 200 when every check passes and the service is not draining, else 503.
pub async fn readyz(State(readiness): State<Arc<Readiness>>) -> Response {
    let checks = readiness.check().await;
    let ready = checks.iter().all(|c| c.ok);
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not_ready")
    };
    answer(
        status,
        &Health {
            status: word,
            checks: &checks,
        },
    )
}

/// `GET /metrics`: the Prometheus text exposition of `metrics` (the process's recorder).
pub async fn metrics(State(metrics): State<hexkv_telemetry::Metrics>) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        metrics.render(),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `/metrics` over the process's recorder, declared [`Access::Metrics`], to merge into the
/// service's route table.
pub fn metrics_route<S: Clone + Send + Sync + 'static>(
    recorder: hexkv_telemetry::Metrics,
) -> Routes<S> {
    Routes::new().route(
        "/metrics",
        Access::Metrics,
        axum::routing::get(metrics).with_state(recorder),
    )
}

/// `/openapi.json`: the service's OpenAPI `document`, declared [`Access::Public`], to merge
/// into the service's route table.
pub fn openapi_route<S: Clone + Send + Sync + 'static>(document: Arc<str>) -> Routes<S> {
    Routes::new().route(
        "/openapi.json",
        Access::Public,
        axum::routing::get(move || {
            let document = Arc::clone(&document);
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    )],
                    document.to_string(),
                )
            }
        }),
    )
}

/// `/healthz` and `/readyz` over `readiness`, declared [`Access::Health`], to merge into the
/// service's route table.
pub fn routes<S: Clone + Send + Sync + 'static>(readiness: Arc<Readiness>) -> Routes<S> {
    Routes::new()
        .route("/healthz", Access::Health, axum::routing::get(healthz))
        .route(
            "/readyz",
            Access::Health,
            axum::routing::get(readyz).with_state(Arc::clone(&readiness)),
        )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    async fn get(app: axum::Router, path: &str) -> (StatusCode, serde_json::Value, bool) {
        use tower::ServiceExt as _;
        let response = app
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let no_store = response.headers()[header::CACHE_CONTROL] == "no-store";
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap(), no_store)
    }

    #[tokio::test]
    async fn readiness_follows_the_checks_and_draining_while_liveness_stays() {
        let store_up = Arc::new(AtomicBool::new(true));
        let readiness = Arc::new(Readiness::new().with_check("store", {
            let store_up = Arc::clone(&store_up);
            move || {
                let up = store_up.load(Ordering::SeqCst);
                async move {
                    if up {
                        Ok(())
                    } else {
                        Err("store unreachable".to_owned())
                    }
                }
            }
        }));
        let app: axum::Router = routes(Arc::clone(&readiness)).into_router(
            crate::http::access::Admission::default(),
            || async { StatusCode::NOT_FOUND },
            || async { StatusCode::METHOD_NOT_ALLOWED },
        );

        let (status, body, no_store) = get(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ready");
        assert_eq!(body["checks"][0]["name"], "store");
        assert!(no_store);

        store_up.store(false, Ordering::SeqCst);
        let (status, body, _) = get(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"][0]["detail"], "store unreachable");

        store_up.store(true, Ordering::SeqCst);
        readiness.begin_draining();
        let (status, body, _) = get(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"][1]["name"], "draining");
        assert_eq!(body["checks"][1]["ok"], false);

        let (status, body, no_store) = get(app, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert!(no_store);
    }
}
