//! How a gRPC listener is observed: a `request` span with the service, the method and the
//! request id, and the metrics `hexkv_grpc_request_duration_seconds` (whose `_count` counts
//! the calls) by service, method and status code. Only the RPCs the process serves are labels
//! (the [`GrpcObserve`] is told them); any other path is `unknown`, since clients choose paths
//! and labels must stay few.
//!
//! The request id is the client's `x-request-id` metadata when it sends a sane one, else a new
//! one; either way it is returned in the response metadata. The code is read from the response
//! headers (a trailers-only answer: every error a service returns, and every refusal of the
//! load-shedding, timeout and throttling layers); a response without it is a success whose status
//! comes in the trailers, `OK`. For the streaming health `Watch`, the latency is the time to the
//! first response headers.

use std::sync::Arc;

use hexkv_telemetry::request_id::{REQUEST_ID_HEADER, from_client};
use hexkv_telemetry::{Finished, Observe, Started};
use metrics::Label;
use tonic::codegen::http::{Request, Response};

/// The [`Observe`] of a gRPC listener, knowing the RPCs it serves.
#[derive(Debug, Clone)]
pub struct GrpcObserve {
    known: Arc<[(&'static str, &'static str)]>,
}

/// The RPCs of the standard services the platform serves beside a service's own: health and
/// reflection.
pub const STANDARD_RPCS: &[(&str, &str)] = &[
    ("grpc.health.v1.Health", "Check"),
    ("grpc.health.v1.Health", "Watch"),
    (
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    ),
];

impl GrpcObserve {
    /// Observes calls, labelling those of `known` (`(service, method)`: add
    /// [`STANDARD_RPCS`] when health and reflection are served) by their names.
    pub fn new(known: impl Into<Arc<[(&'static str, &'static str)]>>) -> Self {
        Self {
            known: known.into(),
        }
    }

    /// `(service, method)` of a request path `/service/method`.
    fn rpc(&self, path: &str) -> (&'static str, &'static str) {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        self.known
            .iter()
            .find(|(s, m)| *s == service && *m == method)
            .copied()
            .unwrap_or(("unknown", "unknown"))
    }
}

/// The canonical name of a gRPC status code.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

impl Observe for GrpcObserve {
    const DURATION: &'static str = hexkv_telemetry::metrics::GRPC_DURATION;
    const STATUS_LABEL: &'static str = "code";

    fn start<B>(&self, request: &Request<B>) -> Started {
        let (service, method) = self.rpc(request.uri().path());
        // Marked sensitive, so HPACK never indexes it (see `from_client`).
        let id = from_client(request.headers().get(&REQUEST_ID_HEADER));
        let span = tracing::info_span!(
            "request",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            protocol = "grpc",
            rpc.service = service,
            rpc.method = method,
            request_id = id.to_str().unwrap_or("-"),
            status = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        Started {
            span,
            // Room for the code label pushed at the end.
            labels: {
                let mut labels = Vec::with_capacity(3);
                labels.push(Label::new("service", service));
                labels.push(Label::new("method", method));
                labels
            },
            response_header: Some((REQUEST_ID_HEADER, id)),
        }
    }

    fn finish<B>(&self, response: &Response<B>) -> Finished {
        let code = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Finished {
            status: code_name(code).into(),
            // The codes that say the server, not the request, failed.
            server_error: matches!(code, 2 | 4 | 13 | 14 | 15),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe() -> GrpcObserve {
        GrpcObserve::new(vec![("shop.v1.Orders", "Get")])
    }

    #[test]
    fn known_rpcs_only() {
        let observe = observe();
        assert_eq!(
            observe.rpc("/shop.v1.Orders/Get"),
            ("shop.v1.Orders", "Get")
        );
        assert_eq!(observe.rpc("/shop.v1.Orders/Nope"), ("unknown", "unknown"));
        assert_eq!(observe.rpc("/x"), ("unknown", "unknown"));
        assert_eq!(observe.rpc(""), ("unknown", "unknown"));
    }

    #[test]
    fn the_request_id_is_never_indexed() {
        let request = Request::builder()
            .uri("/shop.v1.Orders/Get")
            .body(())
            .unwrap();
        let started = observe().start(&request);
        let (name, id) = started.response_header.expect("a request id");
        assert_eq!(name, REQUEST_ID_HEADER);
        assert!(id.is_sensitive());
        assert_eq!(id.len(), 33);

        let given = Request::builder()
            .uri("/shop.v1.Orders/Get")
            .header(&REQUEST_ID_HEADER, "client-chosen-id")
            .body(())
            .unwrap();
        let (_, id) = observe().start(&given).response_header.unwrap();
        assert_eq!(id, "client-chosen-id");
        assert!(id.is_sensitive());
    }

    #[test]
    fn codes_by_name() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(14), "UNAVAILABLE");
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
