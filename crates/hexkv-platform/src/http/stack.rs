//! [`HttpStack`]: what the platform puts around a service's routes on a REST listener, as one
//! value, so that the [`Application`](crate::app::Application) and a standalone router (a test,
//! a service embedding its routes in its own server) build the same thing.
//!
//! ```mermaid
//! flowchart LR
//!   Q[request] --> L["request id → observe (MatchedPath) → caught panics"]
//!   L --> R{"axum Router"}
//!   R --> A["admission (route_layer): declaration → caller → throttle → role and prefix"]
//!   A -- "the service's routes" --> G["request timeout → load shedding → body limit"] --> H[handler]
//!   A -- "/healthz /readyz /metrics /openapi.json" --> P[the platform's handlers]
//!   R -- no route --> F["fallback, behind admission: 401 to strangers, else 404"]
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse as _;
use hexkv_resilience::InFlightLimit;
use tower::ServiceBuilder;

use crate::health::Readiness;
use crate::http::access::{Admission, Routes};
use crate::http::problem::Problem;

/// What surrounds a service's routes; see the module docs.
#[derive(Clone)]
pub struct HttpStack {
    /// Who may call what, and the per-caller throttle.
    pub admission: Admission,
    /// Load shedding's bound for the service's routes.
    pub in_flight: Arc<InFlightLimit>,
    /// A request of the service's still running after this long is answered 504 and
    /// cancelled: `deadline_exceeded` for a read, `outcome_unknown` for a write, which may
    /// still have been applied. `None`: no limit.
    pub request_timeout: Option<Duration>,
    /// The largest body the service's routes read (413 past it).
    pub max_body_bytes: usize,
    /// `/readyz`'s checks.
    pub readiness: Arc<Readiness>,
    /// `/metrics`, when the process records metrics.
    pub metrics: Option<hexkv_telemetry::Metrics>,
    /// `/openapi.json`, when the service has a document.
    pub openapi: Option<Arc<str>>,
}

impl HttpStack {
    /// The service's `routes` with the request limits, the platform's routes beside them, every
    /// route behind admission, and every request observed.
    pub fn router(&self, routes: Routes) -> axum::Router {
        let guarded = routes.layer(
            ServiceBuilder::new()
                .layer(hexkv_resilience::DeadlineLayer::optional(
                    self.request_timeout,
                    hexkv_resilience::ByRequest(|request: &axum::extract::Request| {
                        // A write past its deadline may still be applied, and says so.
                        let read = request.method().is_safe();
                        move || {
                            metrics::counter!(
                                hexkv_telemetry::metrics::TIMED_OUT,
                                "protocol" => "http"
                            )
                            .increment(1);
                            let problem = if read {
                                Problem::deadline_exceeded()
                            } else {
                                Problem::outcome_unknown()
                            };
                            problem.into_response()
                        }
                    }),
                ))
                .layer(hexkv_resilience::LoadShedLayer::with_limit(
                    Arc::clone(&self.in_flight),
                    || {
                        metrics::counter!(hexkv_telemetry::metrics::SHED, "protocol" => "http")
                            .increment(1);
                        Problem::overloaded().into_response()
                    },
                ))
                // Bodies over the limit are refused as they are read (413).
                .layer(axum::extract::DefaultBodyLimit::max(self.max_body_bytes)),
        );
        let mut platform = crate::health::routes(Arc::clone(&self.readiness));
        if let Some(recorder) = &self.metrics {
            platform = platform.merge(crate::health::metrics_route(recorder.clone()));
        }
        if let Some(document) = &self.openapi {
            platform = platform.merge(crate::health::openapi_route(Arc::clone(document)));
        }
        guarded
            .merge(platform)
            .into_router(
                self.admission.clone(),
                || async { Problem::route_not_found() },
                || async { Problem::method_not_allowed() },
            )
            .layer(
                ServiceBuilder::new()
                    .layer(crate::http::request_id::RequestIdLayer)
                    .layer(hexkv_telemetry::ObserveLayer::new(
                        crate::http::observe::HttpObserve::matched_path(),
                    ))
                    .map_response(axum::response::IntoResponse::into_response)
                    .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked)),
            )
    }
}

/// A handler that panicked (a bug): 500 `internal`, logged with the panic's message.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a request handler panicked");
    Problem::internal().into_response()
}
