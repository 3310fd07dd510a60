//! API keys over a real socket: who gets in, and what each key may do.

use std::net::SocketAddr;
use std::sync::Arc;

use hexkv_core::{KeyValueService, Limits};
use hexkv_http::{Extras, HttpOptions, router_with};
use hexkv_platform::auth::AuthPolicy;
use hexkv_store_memory::MemoryStore;
use hexkv_testkit::auth::{ADMIN, APP, READER};
use reqwest::{Client, StatusCode, header};
use serde_json::Value as Json;

async fn start(open_metrics: bool) -> SocketAddr {
    let service = KeyValueService::new(
        Arc::new(MemoryStore::ephemeral(4)),
        Limits {
            max_value_bytes: 1024,
        },
    );
    // The process's recorder (this test binary's own), so the middleware's counters show.
    static METRICS: std::sync::OnceLock<hexkv_telemetry::Metrics> = std::sync::OnceLock::new();
    let metrics = METRICS
        .get_or_init(|| hexkv_telemetry::Metrics::install("test", "").expect("recorder"))
        .clone();
    let app = router_with(
        Arc::new(service),
        HttpOptions {
            max_body_bytes: 1024,
            max_in_flight: 0,
            request_timeout: None,
        },
        Extras {
            metrics: Some(metrics),
            auth: Some(AuthPolicy {
                authenticator: Arc::new(hexkv_testkit::auth::authenticator()),
                open_health: true,
                open_metrics,
            }),
            ..Extras::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn call(
    addr: SocketAddr,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Json) {
    let mut request = Client::new()
        .request(method, format!("http://{addr}{path}"))
        .body("v");
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
    (status, headers, json)
}

#[tokio::test]
async fn no_key_or_a_wrong_one_is_401_with_a_challenge() {
    let addr = start(true).await;
    for key in [None, Some("not-a-key"), Some("")] {
        let (status, headers, body) = call(addr, reqwest::Method::GET, "/v1/kv/a", key).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer realm=\"hexkv\"");
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(body["code"], "unauthenticated");
        assert!(body["request_id"].is_string());
    }
    // Not "Bearer": refused too, and the key is never echoed.
    let response = Client::new()
        .get(format!("http://{addr}/v1/kv/a"))
        .header(header::AUTHORIZATION, format!("Basic {READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(!response.text().await.unwrap().contains(READER));
    // Unknown routes do not tell a stranger what exists.
    let (status, _, _) = call(addr, reqwest::Method::GET, "/secret", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn roles_and_prefixes_decide_what_a_key_may_do() {
    let addr = start(true).await;
    use reqwest::Method;
    // The app key writes inside its prefix only.
    let (status, _, _) = call(addr, Method::PUT, "/v1/kv/app/one", Some(APP)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = call(addr, Method::PUT, "/v1/kv/other", Some(APP)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "permission_denied");
    assert!(
        body["detail"].as_str().unwrap().contains("\"app/\""),
        "{body}"
    );
    // Percent-encoding does not get around the prefix.
    let (status, _, _) = call(addr, Method::PUT, "/v1/kv/%61pp/two", Some(APP)).await;
    assert_eq!(status, StatusCode::CREATED, "%61 is 'a': inside the prefix");
    let (status, _, _) = call(addr, Method::PUT, "/v1/kv/ap%70x/two", Some(APP)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Listing: inside the prefix, not everything.
    let (status, _, body) = call(addr, Method::GET, "/v1/kv?prefix=app/", Some(APP)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 2);
    let (status, _, _) = call(addr, Method::GET, "/v1/kv", Some(APP)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The reader reads anything and writes nothing.
    let (status, _, _) = call(addr, Method::GET, "/v1/kv/app/one", Some(READER)).await;
    assert_eq!(status, StatusCode::OK);
    for method in [Method::PUT, Method::DELETE] {
        let (status, _, body) = call(addr, method, "/v1/kv/app/one", Some(READER)).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body["detail"].as_str().unwrap().contains("role is read"));
    }
    // The admin does everything.
    let (status, _, _) = call(addr, Method::DELETE, "/v1/kv/app/one", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn health_is_open_and_metrics_protected_when_configured() {
    let addr = start(false).await;
    use reqwest::Method;
    for probe in ["/healthz", "/readyz"] {
        let (status, _, _) = call(addr, Method::GET, probe, None).await;
        assert_eq!(status, StatusCode::OK, "{probe}");
    }
    let (status, _, _) = call(addr, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(addr, Method::GET, "/metrics", Some(READER)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "metrics need the admin role");
    let response = Client::new()
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    // The refusals above were counted by reason (other tests in this binary count too).
    for reason in ["missing", "forbidden"] {
        let line = format!(r#"hexkv_auth_failures_total{{protocol="http",reason="{reason}"}} "#);
        let count: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {reason} count in:\n{text}"));
        assert!(count >= 1);
    }
}

/// Every operation the served OpenAPI document lists, and every other method on its paths, is
/// admitted by its route's declaration: without a key only the open routes answer; a read key
/// may not write; a key confined to `app/` may not touch what lies outside it.
#[tokio::test]
async fn every_documented_route_is_admitted_by_its_declaration() {
    use reqwest::Method;
    let addr = start(false).await;
    let (status, _, document) = call(addr, Method::GET, "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "the contract is public");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 6, "{paths:?}");
    // The probes are open (`auth.open_health`), the contract always is; metrics are not here.
    let open = ["/healthz", "/readyz", "/openapi.json"];
    for (path, _) in paths {
        let concrete = path.replace("{key}", "other/x");
        for method in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::POST,
            Method::PATCH,
        ] {
            let (status, _, _) = call(addr, method.clone(), &concrete, None).await;
            if open.contains(&path.as_str()) {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
            }
            // A write key confined to `app/` touches nothing outside it, whatever the method.
            if path.starts_with("/v1/kv") {
                let (status, _, _) = call(addr, method.clone(), &concrete, Some(APP)).await;
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {concrete} as app");
            }
            // A read key writes nothing: every method but GET and HEAD is a write.
            if path == "/v1/kv/{key}" && !matches!(method, Method::GET | Method::HEAD) {
                let (status, _, _) = call(addr, method.clone(), &concrete, Some(READER)).await;
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {concrete} as reader"
                );
            }
        }
    }
}
