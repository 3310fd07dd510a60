//! The `Application` over a real socket, as a service's composition root uses it: a handler
//! that panics answers 500 problem+json and the service keeps serving; the platform's routes
//! answer beside the service's (one test: the process's telemetry starts once).

use hexkv_platform::app::{Application, PlatformOnly};
use hexkv_platform::http::access::{Access, Routes};

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_service_goes_on() {
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
        );
    let app = Application::<PlatformOnly>::new("platformtest", "test", None)
        .unwrap()
        .http(
            "http",
            "http.listen",
            "127.0.0.1:0".parse().unwrap(),
            routes,
        )
        .unwrap();
    let addr = app.local_addr("http").unwrap();
    let shutdown = hexkv_platform::shutdown::Shutdown::default();
    let served = tokio::spawn(app.run_until(shutdown.clone()));
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

    shutdown.requested.cancel();
    served.await.unwrap().unwrap();
}
