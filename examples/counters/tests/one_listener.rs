//! REST and gRPC on one listener: the same address given to both (`grpc.listen =
//! http.listen`), told apart by content type, as the platform's `Application` serves them
//! (one test: the process's telemetry starts once).
#![cfg(feature = "memory")]

use std::sync::Arc;

use hexkv_example_counters::grpc::{pb, services};
use hexkv_example_counters::http::{Counter, routes};
use hexkv_example_counters::memory::MemoryCounters;
use hexkv_example_counters::settings::Settings;
use hexkv_example_counters::{CounterService, NAME};
use hexkv_platform::app::Application;
use pb::counters_client::CountersClient;

#[tokio::test]
async fn rest_and_grpc_share_an_address() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let service = CounterService::new(Arc::new(MemoryCounters::default()));
    let app = Application::<Settings>::new(NAME, "test", None)
        .unwrap()
        .http("http", "http.listen", addr, routes(service.clone()))
        .unwrap()
        .grpc("grpc", "grpc.listen", addr, services(service))
        .unwrap();
    assert_eq!(app.addresses(), [("http", addr)], "one listener");
    let shutdown = hexkv_platform::shutdown::Shutdown::default();
    let served = tokio::spawn(app.run_until(shutdown.clone()));

    let added = reqwest::Client::new()
        .post(format!("http://{addr}/v1/counters/shared"))
        .header("content-type", "application/json")
        .body(r#"{"delta": 5}"#)
        .send()
        .await
        .unwrap();
    let added: Counter = serde_json::from_slice(&added.bytes().await.unwrap()).unwrap();
    assert_eq!(added.value, 5);
    let mut grpc = CountersClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let read = grpc
        .get(pb::GetRequest {
            name: "shared".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.value, 5);

    shutdown.requested.cancel();
    served.await.unwrap().unwrap();
}
