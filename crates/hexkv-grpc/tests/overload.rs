//! The front-end limits over a real socket: load shedding past `max_in_flight`, and the request
//! timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use hexkv_grpc::{GrpcOptions, GrpcServices, pb};
use hexkv_testkit::GatedApi;
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_excess_is_refused_at_once_and_the_admitted_complete() {
    let api = Arc::new(GatedApi::default());
    let services = GrpcServices::new(
        Arc::clone(&api) as Arc<dyn hexkv_core::KeyValueApi>,
        GrpcOptions {
            max_value_bytes: 1024,
            max_in_flight: 2,
            request_timeout: None,
            in_flight: None,
            auth: None,
            throttle: None,
        },
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(services.serve(listener, std::future::pending()));
    let client = KeyValueClient::connect(endpoint).await.unwrap();
    let get = |mut client: KeyValueClient<tonic::transport::Channel>| async move {
        client
            .get(pb::GetRequest {
                key: Bytes::from_static(b"k"),
            })
            .await
    };

    let admitted: Vec<_> = (0..2).map(|_| tokio::spawn(get(client.clone()))).collect();
    api.wait_entered(2).await;

    for _ in 0..5 {
        let status = get(client.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        let hint = status
            .get_error_details()
            .retry_info()
            .and_then(|r| r.retry_delay);
        assert_eq!(hint, Some(Duration::from_secs(1)));
    }
    assert_eq!(api.entered(), 2, "refused calls never reached the API");

    api.open();
    for call in admitted {
        let entry = call.await.unwrap().unwrap().into_inner().entry.unwrap();
        assert_eq!(&entry.value[..], b"v");
    }
    get(client.clone()).await.expect("the slots are free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_timeout_gets_deadline_exceeded() {
    let api = Arc::new(GatedApi::default()); // the gate never opens
    let services = GrpcServices::new(
        Arc::clone(&api) as Arc<dyn hexkv_core::KeyValueApi>,
        GrpcOptions {
            max_value_bytes: 1024,
            max_in_flight: 1,
            request_timeout: Some(Duration::from_millis(200)),
            in_flight: None,
            auth: None,
            throttle: None,
        },
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(services.serve(listener, std::future::pending()));
    let mut client = KeyValueClient::connect(endpoint).await.unwrap();
    for attempt in 0..3 {
        let status = client
            .get(pb::GetRequest {
                key: Bytes::from_static(b"k"),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
        assert_eq!(api.entered(), attempt + 1, "the slot was given back");
    }
}
