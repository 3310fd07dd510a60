//! The gRPC front end of the real binary, beside REST over one store.

use bytes::Bytes;
use hexkv_e2e::Server;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use reqwest::{Client, StatusCode};
use tonic::Code;

use crate::{data_dir, put};

#[tokio::test]
async fn both_front_ends_serve_one_store() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let http = Client::new();
    let mut grpc = KeyValueClient::connect(server.grpc_endpoint())
        .await
        .unwrap();

    let (status, version) = put(&http, &server, "shared/key", b"from REST".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let entry = grpc
        .get(pb::GetRequest {
            key: Bytes::from_static(b"shared/key"),
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(&entry.value[..], b"from REST");
    assert_eq!(Some(entry.version), version);

    let written = grpc
        .put(pb::PutRequest {
            key: Bytes::from_static(b"shared/key"),
            value: Bytes::from_static(b"from gRPC"),
            precondition: Some(pb::Precondition {
                condition: Some(pb::precondition::Condition::Version(entry.version)),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        crate::get(&http, &server, "shared/key").await,
        Some((written.version, b"from gRPC".to_vec()))
    );

    let bad = grpc
        .get(pb::GetRequest {
            key: Bytes::from_static(b"bad\x00key"),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}
