//! The REST front end over a real socket on 127.0.0.1, with the real service and memory store.

use std::sync::Arc;

use hexkv_example_counters::CounterService;
use hexkv_example_counters::http::{Counter, router};
use hexkv_example_counters::memory::MemoryCounters;
use reqwest::StatusCode;
use serde_json::Value as Json;

#[tokio::test]
async fn counters_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = CounterService::new(Arc::new(MemoryCounters::default()));
    let readiness = Arc::new(hexkv_platform::health::Readiness::new());
    tokio::spawn(async move { axum::serve(listener, router(service, readiness)).await });
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
}
