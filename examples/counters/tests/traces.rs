//! Traces of the counters binary, received by an OTLP collector started inside the test: a
//! request that carries a W3C `traceparent` becomes a server span of that trace, named by its
//! route, under the service's name, and arrives by the time the process has exited (the
//! platform flushes the exporter at shutdown).

mod common;

use std::process::{Command, Stdio};

use hexkv_telemetry::collector::{Collector, SpanKind, attribute, hex};

// Worker threads serve the collector while this thread waits for the binary to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_s_span_joins_the_caller_s_trace() {
    let collector = Collector::default();
    let endpoint = format!("http://{}", collector.start().await);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hexkv-example-counters"))
        .env("COUNTERS_HTTP__LISTEN", "127.0.0.1:0")
        .env("COUNTERS_GRPC__LISTEN", "127.0.0.1:0")
        .env("COUNTERS_TELEMETRY__TRACES", "true")
        .env("COUNTERS_TELEMETRY__OTLP_ENDPOINT", &endpoint)
        .env("COUNTERS_LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_SDK_DISABLED")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, _) = common::listening(&mut child);

    let trace_id = [0x4b_u8; 16];
    let parent = [0x42_u8; 8];
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/counters/traced"))
        .header("content-type", "application/json")
        .header(
            "traceparent",
            format!("00-{}-{}-01", hex(&trace_id), hex(&parent)),
        )
        .body(r#"{"delta": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");

    let spans = collector.trace(&trace_id);
    let request = spans
        .iter()
        .find(|(_, span)| span.name == "POST /v1/counters/{name}")
        .unwrap_or_else(|| panic!("the request's span, among {spans:#?}"));
    let (service, span) = request;
    assert_eq!(service, hexkv_example_counters::NAME);
    assert_eq!(span.parent_span_id, parent);
    assert_eq!(span.kind(), SpanKind::Server);
    assert_eq!(
        attribute(span, "route").as_deref(),
        Some("/v1/counters/{name}")
    );
}
