//! How a REST front end is observed: a `request` span with the method, the matched route and the
//! request id, and the metrics `hexkv_http_request_duration_seconds` (whose `_count` counts
//! the requests) by method, route and status.

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response};
use hexkv_telemetry::{Finished, Observe, Started};
use metrics::{Label, SharedString};

use super::request_id::REQUEST_ID_HEADER;

/// The `route` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The [`Observe`] of a REST front end, for layers inside an axum `Router` (`Router::layer`),
/// which run after routing.
///
/// The `route` label is the pattern of the route the router matched (its `MatchedPath`:
/// `/v1/counters/{name}`), never the raw path: what a path names is not logged, and labels
/// stay few. A request no
/// route serves is `unmatched`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpObserve;

impl HttpObserve {
    /// Labels each request with the route an axum `Router` matched.
    pub fn matched_path() -> Self {
        Self
    }
}

/// A route as a label, allocated once per route: the labels of every route the router has are
/// kept (routes are few and fixed, and `MatchedPath` lends its text only).
fn route_label(route: &str) -> SharedString {
    use std::collections::HashMap;
    use std::sync::{Arc, OnceLock, PoisonError, RwLock};

    type Labels = HashMap<Box<str>, Arc<str>, foldhash::fast::FixedState>;
    static LABELS: OnceLock<RwLock<Labels>> = OnceLock::new();
    let labels = LABELS.get_or_init(Default::default);
    if let Some(label) = labels
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(route)
    {
        return SharedString::from(Arc::clone(label));
    }
    let label: Arc<str> = Arc::from(route);
    labels
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(route.into())
        .or_insert_with(|| Arc::clone(&label));
    SharedString::from(label)
}

/// A method as a label: the standard ones by name, anything else as `other` (clients choose
/// methods, and labels must stay few).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// A status as a label, without an allocation for the common statuses.
fn status_label(status: u16) -> SharedString {
    let known = match status {
        200 => "200",
        201 => "201",
        204 => "204",
        304 => "304",
        400 => "400",
        404 => "404",
        405 => "405",
        412 => "412",
        413 => "413",
        414 => "414",
        429 => "429",
        500 => "500",
        503 => "503",
        504 => "504",
        other => return SharedString::from_owned(other.to_string()),
    };
    SharedString::const_str(known)
}

impl Observe for HttpObserve {
    const DURATION: &'static str = hexkv_telemetry::metrics::HTTP_DURATION;
    const STATUS_LABEL: &'static str = "status";

    fn start<B>(&self, request: &Request<B>) -> Started {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, MatchedPath::as_str);
        let request_id = request
            .headers()
            .get(&REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        let method = method_label(request.method());
        let span = tracing::info_span!(
            "request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            protocol = "http",
            method,
            route,
            request_id,
            status = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        Started {
            span,
            // Room for the status label pushed at the end.
            labels: {
                let mut labels = Vec::with_capacity(3);
                labels.push(Label::new("method", method));
                labels.push(Label::new("route", route_label(route)));
                labels
            },
            response_header: None,
        }
    }

    fn finish<B>(&self, response: &Response<B>) -> Finished {
        let status = response.status();
        Finished {
            status: status_label(status.as_u16()),
            server_error: status.is_server_error(),
        }
    }
}
