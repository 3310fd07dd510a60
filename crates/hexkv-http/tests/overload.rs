//! The front-end limits over a real socket: load shedding past `max_in_flight`, and the request
//! timeout.

use std::sync::Arc;

use hexkv_http::{HttpOptions, router};
use hexkv_testkit::GatedApi;
use reqwest::{Client, StatusCode, header};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_excess_is_refused_at_once_and_the_admitted_complete() {
    let api = Arc::new(GatedApi::default());
    let app = router(
        Arc::clone(&api) as Arc<dyn hexkv_core::KeyValueApi>,
        HttpOptions {
            max_body_bytes: 1024,
            max_in_flight: 2,
            request_timeout: None,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1/kv/k", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new();

    // Two requests are admitted and wait at the gate.
    let admitted: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    api.wait_entered(2).await;

    // With both slots taken, more requests are refused while the gate is still closed, so they
    // cannot have waited for a slot.
    for _ in 0..5 {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert!(r.headers().contains_key("x-request-id"));
        let problem: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(problem["code"], "overloaded");
        assert!(problem["request_id"].is_string(), "{problem}");
    }
    assert_eq!(api.entered(), 2, "refused requests never reached the API");
    // Probes are not shed: a liveness probe refused under load would get a busy replica
    // restarted.
    let base = url.trim_end_matches("/v1/kv/k");
    for probe in ["/healthz", "/readyz"] {
        let r = client.get(format!("{base}{probe}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{probe} while shedding");
    }

    api.open();
    for request in admitted {
        let r = request.await.unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(&r.bytes().await.unwrap()[..], b"v");
    }
    // The slots are free again.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_timeout_gets_504_and_is_cancelled() {
    let api = Arc::new(GatedApi::default()); // the gate never opens
    let app = router(
        Arc::clone(&api) as Arc<dyn hexkv_core::KeyValueApi>,
        HttpOptions {
            max_body_bytes: 1024,
            max_in_flight: 1,
            request_timeout: Some(std::time::Duration::from_millis(200)),
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1/kv/k", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client::new();
    for attempt in 0..3 {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
        let problem: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(problem["code"], "deadline_exceeded");
        // The timed-out request gave its in-flight slot back (max_in_flight is 1): the next one
        // reached the API rather than being shed.
        assert_eq!(api.entered(), attempt + 1);
    }
    // A write cut off the same way may still be applied by the store: it says so.
    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let r = client
            .request(method.clone(), &url)
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT, "{method}");
        let problem: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(problem["code"], "outcome_unknown", "{method}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("may or may not have been applied"),
            "{problem}"
        );
    }
}

/// Served with `into_make_service_with_connect_info`, each request carries its client's address:
/// throttling counts two clients on two loopback addresses apart (without the address both
/// would be the one `addr:unknown` client).
#[tokio::test]
async fn throttling_tells_clients_apart_by_address() {
    use hexkv_core::KvError;
    let mut api = hexkv_core::MockKeyValueApi::new();
    api.expect_get().returning(|_| Err(KvError::NotFound));
    let app = hexkv_http::router_with(
        Arc::new(api),
        HttpOptions {
            max_body_bytes: 1024,
            max_in_flight: 0,
            request_timeout: None,
        },
        hexkv_http::Extras {
            // One request a minute per client.
            throttle: Some(Arc::new(hexkv_resilience::Throttle::new(1, 1, 100))),
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/v1/kv/k", listener.local_addr().unwrap());
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let first = Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 1]))
        .build()
        .unwrap();
    assert_eq!(
        first.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let again = first.get(&url).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    let second = Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    assert_eq!(
        second.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "another address is another client"
    );
}
