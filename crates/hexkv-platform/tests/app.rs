//! The `Application` over a real socket, as a service's composition root uses it: a handler
//! that panics answers 500 problem+json and the service keeps serving; the platform's routes
//! answer beside the service's; browsers of the origins `[cors]` allows may call across origins,
//! others may not; at shutdown, long-lived responses (server-sent events, a gRPC
//! health `Watch`) end when the listeners close, long before the drain's deadline. One test,
//! for the process's telemetry starts once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::response::sse::{Event, Sse};
use hexkv_platform::app::{Application, PlatformOnly};
use hexkv_platform::grpc::services::GrpcServices;
use hexkv_platform::http::access::{Access, Routes};
use hexkv_platform::shutdown::{Drain, Shutdown};
use tokio_stream::StreamExt as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn the_application_serves_then_drains() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("platformtest.toml");
    // A drain that waited for the streams would take ten minutes.
    std::fs::write(
        &file,
        "[log]\nlevel = \"warn\"\n\
         [shutdown]\nreadiness_delay_ms = 0\ndrain_timeout_ms = 600000\n\
         [cors]\nallowed_origins = [\"https://console.example\"]\n",
    )
    .unwrap();
    let routes = Routes::new()
        .route(
            "/v1/boom",
            Access::Public,
            axum::routing::get(|| async {
                if true {
                    panic!("a bug");
                }
                "unreachable"
            }),
        )
        .route(
            "/v1/fine",
            Access::Public,
            axum::routing::get(|| async { "fine" }),
        )
        .route(
            "/v1/events",
            Access::Public,
            axum::routing::get(|drain: Drain| async move {
                let first =
                    tokio_stream::iter([Ok::<_, Infallible>(Event::default().data("first"))]);
                Sse::new(drain.end(first.chain(tokio_stream::pending())))
            }),
        );
    let app = Application::<PlatformOnly>::new("platformtest", "test", Some(file))
        .unwrap()
        .http(
            "http",
            "http.listen",
            "127.0.0.1:0".parse().unwrap(),
            routes,
        )
        .unwrap()
        .grpc(
            "grpc",
            "grpc.listen",
            "127.0.0.1:0".parse().unwrap(),
            GrpcServices::new(),
        )
        .unwrap();
    let addr = app.local_addr("http").unwrap();
    let grpc = app.local_addr("grpc").unwrap();
    let shutdown = Shutdown::default();
    let served = tokio::spawn(app.run_until(shutdown.clone()));

    a_panicking_handler_is_a_500_problem_and_the_service_goes_on(addr).await;
    only_the_allowed_origins_may_call_from_a_browser(addr).await;
    long_lived_responses_end_when_the_listeners_close(addr, grpc, shutdown, served).await;
}

async fn a_panicking_handler_is_a_500_problem_and_the_service_goes_on(addr: SocketAddr) {
    let http = reqwest::Client::new();
    let response = http
        .get(format!("http://{addr}/v1/boom"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR
    );
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "internal");
    assert_eq!(body["type"], "urn:platformtest:problem:internal");
    assert_eq!(body["request_id"], id.as_str());
    assert!(!body.to_string().contains("a bug"), "{body}");

    let fine = http
        .get(format!("http://{addr}/v1/fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.text().await.unwrap(), "fine");
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let missing = http
        .get(format!("http://{addr}/v1/none"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
}

async fn only_the_allowed_origins_may_call_from_a_browser(addr: SocketAddr) {
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("http://{addr}/v1/fine"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization, idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://console.example").await.unwrap();
    assert_eq!(allowed.status(), reqwest::StatusCode::OK);
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://console.example")
    );
    assert!(
        header(&allowed, "access-control-allow-methods")
            .unwrap()
            .contains("PUT")
    );
    let headers = header(&allowed, "access-control-allow-headers").unwrap();
    assert!(
        headers.contains("authorization") && headers.contains("idempotency-key"),
        "{headers}"
    );
    assert_eq!(
        header(&allowed, "access-control-max-age").as_deref(),
        Some("600")
    );

    let refused = preflight("https://elsewhere.example").await.unwrap();
    assert_eq!(header(&refused, "access-control-allow-origin"), None);

    let call = |origin: &'static str| {
        http.get(format!("http://{addr}/v1/fine"))
            .header("origin", origin)
            .send()
    };
    let allowed = call("https://console.example").await.unwrap();
    assert_eq!(
        header(&allowed, "access-control-allow-origin").as_deref(),
        Some("https://console.example")
    );
    let exposed = header(&allowed, "access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("etag"),
        "{exposed}"
    );
    assert_eq!(allowed.text().await.unwrap(), "fine");
    // The call is served (CORS is the browser's to enforce), without the header that would let
    // another origin's script read it.
    let other = call("https://elsewhere.example").await.unwrap();
    assert_eq!(header(&other, "access-control-allow-origin"), None);
}

async fn long_lived_responses_end_when_the_listeners_close(
    addr: SocketAddr,
    grpc: SocketAddr,
    shutdown: Shutdown,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut events = reqwest::Client::new()
        .get(format!("http://{addr}/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), reqwest::StatusCode::OK);
    let first = events.chunk().await.unwrap().expect("the first event");
    assert_eq!(std::str::from_utf8(&first).unwrap(), "data: first\n\n");

    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let serving = watch.next().await.unwrap().unwrap();
    assert_eq!(serving.status, ServingStatus::Serving as i32);

    shutdown.requested.cancel();
    let ended = async {
        // The body ends cleanly: no error, no more bytes.
        assert_eq!(events.chunk().await.unwrap(), None);
        // NOT_SERVING when readiness fails (unless the close came first), then the stream's end.
        let mut last = watch.next().await.expect("the watch's end");
        if let Ok(status) = &last {
            assert_eq!(status.status, ServingStatus::NotServing as i32);
            last = watch.next().await.expect("the watch's end");
        }
        let status = last.expect_err("ended by the drain");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        let details = tonic_types::StatusExt::get_error_details(&status);
        assert_eq!(details.error_info().unwrap().reason, "DRAINING");
        assert!(watch.next().await.is_none());
        served.await.unwrap().unwrap();
    };
    tokio::time::timeout(Duration::from_secs(120), ended)
        .await
        .expect("the streams ended when the listeners closed, not at the drain's deadline");
}
