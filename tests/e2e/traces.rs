//! Traces of the real binary, received by an OTLP collector started inside the test: a REST
//! request that carries a `traceparent`, and a gRPC call from the client SDK inside a traced
//! span, each become a trace request → service → store with the caller's span as parent, and
//! the spans arrive by the time the process has exited (flushed on shutdown). The standard
//! OpenTelemetry switches (`OTEL_TRACES_EXPORTER`, `OTEL_SDK_DISABLED`) turn export on and off
//! as platforms that inject them expect.

use std::time::{Duration, Instant};

use hexkv_client::{Client, ClientOptions, Precondition};
use hexkv_e2e::Server;
use hexkv_telemetry::collector::{Collector, Span, SpanKind, attribute, hex};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::trace::TracerProvider as _;
use reqwest::StatusCode;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::data_dir;

/// The one span of `spans` named `name`.
fn named<'a>(spans: &'a [(String, Span)], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "spans named {name:?} in {:#?}",
        spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
    );
    found[0]
}

// Worker threads serve the collector while this thread waits for the server to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_service_and_store_spans_arrive_with_their_parents() {
    let collector = Collector::default();
    let endpoint = format!("http://{}", collector.start().await);
    let (_tmp, data) = data_dir();
    let server = Server::start(
        &data,
        &[],
        &[
            ("HEXKV_TELEMETRY__TRACES", "true"),
            ("HEXKV_TELEMETRY__SERVICE_NAME", "hexkv-under-test"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ],
    );

    // REST, with a W3C traceparent from an imaginary caller.
    let trace_id = [0x4b_u8; 16];
    let caller_span = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];
    let traceparent = format!("00-{}-{}-01", hex(&trace_id), hex(&caller_span));
    let r = reqwest::Client::new()
        .put(server.url("/v1/kv/traced"))
        .header("traceparent", &traceparent)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // gRPC through the SDK, inside a span of this process: the SDK sends its context.
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("e2e")));
    let _subscriber = tracing::subscriber::set_default(subscriber);
    let client = Client::connect(&server.grpc_endpoint(), ClientOptions::default())
        .await
        .unwrap();
    let span = tracing::info_span!("caller");
    let caller = span.context().span().span_context().clone();
    assert!(caller.is_valid());
    client
        .put("from-sdk", "v", Precondition::None)
        .instrument(span)
        .await
        .unwrap();

    // Stop the server right away: the spans still buffered are exported on shutdown.
    assert!(server.terminate().success());

    // The REST trace: the caller's span → the request → the service → the store.
    let deadline = Instant::now() + Duration::from_secs(30);
    while collector.trace(&trace_id).len() < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rest = collector.trace(&trace_id);
    let request = named(&rest, "PUT /v1/kv/{*key}");
    assert_eq!(
        request.parent_span_id, caller_span,
        "the caller is the parent"
    );
    assert_eq!(request.kind, SpanKind::Server as i32);
    assert_eq!(attribute(request, "status").as_deref(), Some("201"));
    let service = named(&rest, "service put");
    assert_eq!(service.parent_span_id, request.span_id);
    let store = named(&rest, "store put");
    assert_eq!(store.parent_span_id, service.span_id);
    assert_eq!(store.kind, SpanKind::Client as i32);
    assert_eq!(attribute(store, "db.system").as_deref(), Some("memory"));
    assert_eq!(attribute(store, "db.operation").as_deref(), Some("put"));
    assert!(rest.iter().all(|(name, _)| name == "hexkv-under-test"));

    // The gRPC trace continues the SDK caller's.
    let grpc_trace = collector.trace(&caller.trace_id().to_bytes());
    let call = named(&grpc_trace, "hexkv.v1.KeyValue/Put");
    assert_eq!(call.parent_span_id, caller.span_id().to_bytes());
    let service = named(&grpc_trace, "service put");
    assert_eq!(service.parent_span_id, call.span_id);
    named(&grpc_trace, "store put");
}

/// Starts hexkv with `env` (and the collector's endpoint), makes one traced REST request, stops
/// it, and returns the spans of that request's trace the collector received: the exporter
/// flushes on shutdown, so after the exit, what has not arrived was never sent.
async fn spans_exported_with(env: &[(&str, &str)]) -> Vec<(String, Span)> {
    let collector = Collector::default();
    let endpoint = format!("http://{}", collector.start().await);
    let (_tmp, data) = data_dir();
    let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    vars.extend_from_slice(env);
    let server = Server::start(&data, &[], &vars);
    let trace_id = [0x5c_u8; 16];
    let traceparent = format!("00-{}-{}-01", hex(&trace_id), hex(&[0x11; 8]));
    let r = reqwest::Client::new()
        .put(server.url("/v1/kv/switched"))
        .header("traceparent", &traceparent)
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert!(server.terminate().success());
    // The exporter's last export was answered (the collector keeps spans before it answers)
    // before the process exited.
    collector.trace(&trace_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_exporter_variable_alone_turns_export_on() {
    // What the OpenTelemetry Operator injects, and nothing of hexkv's own.
    let spans = spans_exported_with(&[("OTEL_TRACES_EXPORTER", "otlp")]).await;
    named(&spans, "PUT /v1/kv/{*key}");
    named(&spans, "store put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hexkv_s_own_setting_wins_over_the_exporter_variable() {
    let spans = spans_exported_with(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("HEXKV_TELEMETRY__TRACES", "true"),
    ])
    .await;
    named(&spans, "PUT /v1/kv/{*key}");
    let spans = spans_exported_with(&[
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("HEXKV_TELEMETRY__TRACES", "false"),
    ])
    .await;
    assert!(spans.is_empty(), "exported although turned off: {spans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_switch_and_none_export_nothing() {
    for env in [
        &[("OTEL_TRACES_EXPORTER", "none")][..],
        &[
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_SDK_DISABLED", "true"),
        ][..],
        &[
            ("HEXKV_TELEMETRY__TRACES", "true"),
            ("OTEL_SDK_DISABLED", "true"),
        ][..],
        &[][..],
    ] {
        let spans = spans_exported_with(env).await;
        assert!(spans.is_empty(), "{env:?} exported {spans:?}");
    }
}
