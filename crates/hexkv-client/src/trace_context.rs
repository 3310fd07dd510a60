//! W3C trace context on outgoing calls (feature `otlp`): the `traceparent` (and `tracestate`) of
//! the caller's current `tracing` span, so the server's spans join the caller's trace. Nothing
//! is added unless the application installed an OpenTelemetry propagator
//! (`opentelemetry::global::set_text_map_propagator`) and its span is recorded by
//! `tracing-opentelemetry`.

use opentelemetry::propagation::Injector;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct Metadata<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Adds the current trace context to a gRPC call's metadata.
pub(crate) fn inject_grpc(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Metadata(metadata));
    });
}

#[cfg(feature = "http")]
struct Headers<'a>(&'a mut reqwest::header::HeaderMap);

#[cfg(feature = "http")]
impl Injector for Headers<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The current trace context as HTTP headers (empty without a propagator or a recorded span).
#[cfg(feature = "http")]
pub(crate) fn http_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Headers(&mut headers));
    });
    headers
}
