//! The REST front end over a real socket on 127.0.0.1, with the real service and memory store,
//! served by the platform's `Application` as the binary serves it (one test: the process's
//! telemetry starts once).
#![cfg(feature = "memory")]

use std::sync::Arc;

use hexkv_example_counters::CounterService;
use hexkv_example_counters::http::{Counter, routes};
use hexkv_example_counters::memory::MemoryCounters;
use hexkv_example_counters::settings::Settings;
use hexkv_platform::app::Application;
use reqwest::StatusCode;
use serde_json::Value as Json;

#[tokio::test]
async fn counters_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counters.toml");
    // A burst of 8 per client, then one request a minute: the end of the test is throttled.
    std::fs::write(
        &file,
        "[http]\nlisten = \"127.0.0.1:0\"\n[limits]\nthrottle_per_minute = 1\nthrottle_burst = 8\n",
    )
    .unwrap();
    let service = CounterService::new(Arc::new(MemoryCounters::default()));
    let app = Application::<Settings>::new(hexkv_example_counters::NAME, "test", Some(file))
        .unwrap()
        .http(
            "http",
            "http.listen",
            "127.0.0.1:0".parse().unwrap(),
            routes(service),
        )
        .unwrap();
    let addr = app.local_addr("http").unwrap();
    let shutdown = hexkv_platform::shutdown::Shutdown::default();
    let served = tokio::spawn(app.run_until(shutdown.clone()));
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");

    let add = |delta: &str| {
        http.post(url("/v1/counters/page.views"))
            .header("content-type", "application/json")
            .body(format!(r#"{{"delta": {delta}}}"#))
            .send()
    };
    let response = add("3").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let counter: Counter = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(
        counter,
        Counter {
            name: "page.views".into(),
            value: 3
        }
    );
    let response = http
        .get(url("/v1/counters/page.views"))
        .send()
        .await
        .unwrap();
    let counter: Counter = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(counter.value, 3);

    // Every refusal is problem+json with its code.
    for (response, status, code) in [
        (
            add("0").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_delta",
        ),
        (
            add("\"x\"").await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            http.get(url("/v1/counters/Nope")).send().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            http.get(url("/v1/counters/never")).send().await.unwrap(),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        assert_eq!(response.status(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body: Json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["request_id"].is_string());
    }

    // The platform's refusals are problem+json too, under the service's name.
    let response = http.get(url("/v1/nothing")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "route_not_found");
    assert_eq!(
        body["type"],
        format!(
            "urn:{}:problem:route-not-found",
            hexkv_example_counters::NAME
        )
    );

    // Past its burst the client is throttled on the service's routes, with Retry-After...
    let mut response = http
        .get(url("/v1/counters/page.views"))
        .send()
        .await
        .unwrap();
    for _ in 0..8 {
        if response.status() != StatusCode::OK {
            break;
        }
        response = http
            .get(url("/v1/counters/page.views"))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let body: Json = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "throttled");
    // ...but never on the platform's.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = http.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hexkv_requests_throttled_total{protocol=\"http\"} 1"),
        "{metrics}"
    );

    shutdown.requested.cancel();
    served.await.unwrap().unwrap();
}
