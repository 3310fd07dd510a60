//! How the gRPC adapter is observed: a `request` span with the service, the method and the
//! request id, and the metrics `hexkv_grpc_request_duration_seconds` (whose `_count` counts
//! the calls) by service, method and status code.
//!
//! The request id is the client's `x-request-id` metadata when it sends a sane one, else a new
//! one; either way it is returned in the response metadata. The code is read from the response
//! headers (a trailers-only answer: every error hexkv returns, and every refusal of the
//! load-shedding, timeout and throttling layers); a response without it is a success whose status
//! comes in the trailers, `OK`. For the streaming health `Watch`, the latency is the time to the
//! first response headers.

use hexkv_telemetry::request_id::{REQUEST_ID_HEADER, from_client};
use hexkv_telemetry::{Finished, Observe, Started};
use metrics::Label;
use tonic::codegen::http::{Request, Response};

/// The [`Observe`] of the gRPC adapter.
#[derive(Debug, Clone, Copy)]
pub struct GrpcObserve;

/// The RPCs hexkv serves, as `(service, method)`: anything else is labelled `unknown`, since
/// clients choose paths and labels must stay few.
const KNOWN: &[(&str, &str)] = &[
    ("hexkv.v1.KeyValue", "Get"),
    ("hexkv.v1.KeyValue", "Put"),
    ("hexkv.v1.KeyValue", "Delete"),
    ("hexkv.v1.KeyValue", "List"),
    ("grpc.health.v1.Health", "Check"),
    ("grpc.health.v1.Health", "Watch"),
    (
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
    ),
];

/// `(service, method)` of a request path `/service/method`.
fn rpc(path: &str) -> (&'static str, &'static str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (service, method) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    KNOWN
        .iter()
        .find(|(s, m)| *s == service && *m == method)
        .copied()
        .unwrap_or(("unknown", "unknown"))
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
        let (service, method) = rpc(request.uri().path());
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

    #[test]
    fn known_rpcs_only() {
        assert_eq!(rpc("/hexkv.v1.KeyValue/Get"), ("hexkv.v1.KeyValue", "Get"));
        assert_eq!(rpc("/hexkv.v1.KeyValue/Nope"), ("unknown", "unknown"));
        assert_eq!(rpc("/x"), ("unknown", "unknown"));
        assert_eq!(rpc(""), ("unknown", "unknown"));
    }

    #[test]
    fn the_request_id_is_never_indexed() {
        let request = Request::builder()
            .uri("/hexkv.v1.KeyValue/Get")
            .body(())
            .unwrap();
        let started = GrpcObserve.start(&request);
        let (name, id) = started.response_header.expect("a request id");
        assert_eq!(name, REQUEST_ID_HEADER);
        assert!(id.is_sensitive());
        assert_eq!(id.len(), 33);

        let given = Request::builder()
            .uri("/hexkv.v1.KeyValue/Get")
            .header(&REQUEST_ID_HEADER, "client-chosen-id")
            .body(())
            .unwrap();
        let (_, id) = GrpcObserve.start(&given).response_header.unwrap();
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
