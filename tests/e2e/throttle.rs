//! Per-client throttling in the real binary: one client over its rate gets 429 (and
//! RESOURCE_EXHAUSTED over gRPC, the same bucket), another client is unaffected.

use bytes::Bytes;
use hexkv_e2e::Server;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use reqwest::{Client, StatusCode, header};
use tonic::Code;

use crate::data_dir;

#[tokio::test]
async fn a_client_over_its_rate_is_refused_and_another_is_not() {
    let (_tmp, data) = data_dir();
    // One request a minute after a burst of three: nothing replenishes during the test.
    let server = Server::start(
        &data,
        &[],
        &[
            ("HEXKV_LIMITS__THROTTLE_PER_MINUTE", "1"),
            ("HEXKV_LIMITS__THROTTLE_BURST", "3"),
        ],
    );
    let client = Client::new();
    let get = |key: &'static str| {
        client
            .get(server.url("/v1/kv/k"))
            .header("x-api-key", key)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(get("alice").await.unwrap().status(), StatusCode::NOT_FOUND);
    }
    let refused = get("alice").await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let header_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let after: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "Retry-After: {after}");
    let problem: serde_json::Value =
        serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(problem["code"], "throttled");
    // The refusal carries its request id, in the body and the header, like every other answer.
    let request_id = problem["request_id"].as_str().expect("a request id");
    assert_eq!(request_id, header_id);

    // Another client has its own bucket.
    assert_eq!(get("bob").await.unwrap().status(), StatusCode::NOT_FOUND);

    // gRPC counts against the same bucket.
    let mut grpc = KeyValueClient::connect(server.grpc_endpoint())
        .await
        .unwrap();
    let mut request = tonic::Request::new(pb::GetRequest {
        key: Bytes::from_static(b"k"),
    });
    request
        .metadata_mut()
        .insert("x-api-key", "alice".parse().unwrap());
    let status = grpc.get(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}
