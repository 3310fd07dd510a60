//! OpenTelemetry traces over OTLP (cargo feature `otlp`).
//!
//! `tracing` spans become OpenTelemetry spans through `tracing-opentelemetry` and are exported in
//! batches over OTLP/gRPC. A request's span continues the trace of the caller's W3C
//! `traceparent` header (HTTP) or metadata (gRPC); inside it the service span
//! (`hexkv-server`'s `InstrumentedApi`) and the store span (its `InstrumentedStore`) are children, so
//! a trace reads request → service → store. The store and service spans are at DEBUG with the
//! target [`PORT_SPANS`](crate::PORT_SPANS), for traces only: the trace layer has its own filter,
//! independent of `log.level`.
//!
//! The standard variables apply: `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) when no
//! endpoint is configured, `OTEL_SERVICE_NAME` over the configured name, `OTEL_EXPORTER_OTLP_*`
//! for timeouts and headers as the exporter reads them.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::TelemetryError;

/// Trace export settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The OTLP/gRPC endpoint (`http://collector:4317`); `None`: `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// else `http://localhost:4317`.
    pub endpoint: Option<String>,
    /// `service.name` (`OTEL_SERVICE_NAME` wins when set).
    pub service_name: String,
    /// The share of new traces recorded, 0.0–1.0; a trace a caller started keeps the caller's
    /// decision (parent-based sampling).
    pub sample_ratio: f64,
}

/// The tracer provider, kept to flush it on shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Exports what is buffered and stops the exporter (blocking, up to the exporter's timeout).
    pub(crate) fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("hexkv: flushing traces failed: {e}");
        }
    }
}

/// The trace layer and its provider. Must run inside a tokio runtime (the exporter's channel
/// is driven by it).
pub(crate) fn layer<S>(
    settings: &TraceSettings,
) -> Result<(Box<dyn Layer<S> + Send + Sync>, Traces), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    use opentelemetry_otlp::WithExportConfig as _;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_timeout(Duration::from_secs(5));
    if let Some(endpoint) = &settings.endpoint {
        exporter = exporter.with_endpoint(endpoint.clone());
    }
    let exporter = exporter
        .build()
        .map_err(|e| TelemetryError::Traces(e.to_string()))?;
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| settings.service_name.clone());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio.clamp(0.0, 1.0),
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(service_name)
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("hexkv");
    let filter = Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target(crate::PORT_SPANS, tracing::Level::DEBUG);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter)
        .boxed();
    Ok((layer, Traces { provider }))
}

/// Reads W3C trace context from HTTP headers (or gRPC metadata, which travels as headers).
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes W3C trace context into HTTP headers.
struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` continue the trace the request's `traceparent` names, if it names one.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    // A span no subscriber records (traces off, a level that filters it) has nothing to join.
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
}

/// Adds the current span's trace context (`traceparent`, `tracestate`) to outgoing headers, so
/// the callee's spans join the caller's trace. Without an installed propagator it adds nothing.
pub fn inject_current(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers));
    });
}
