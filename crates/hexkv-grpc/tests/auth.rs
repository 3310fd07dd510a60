//! API keys over gRPC on a real socket: UNAUTHENTICATED without a key, PERMISSION_DENIED
//! outside the key's role or prefix, and the health service open or protected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hexkv_core::{KeyValueService, Limits};
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use hexkv_grpc::{GrpcOptions, GrpcServices, pb};
use hexkv_platform::auth::AuthPolicy;
use hexkv_store_memory::MemoryStore;
use hexkv_testkit::auth::{ADMIN, APP, READER};
use tonic::Code;
use tonic::transport::Channel;

async fn start(open_health: bool) -> SocketAddr {
    let service = KeyValueService::new(
        Arc::new(MemoryStore::ephemeral(4)),
        Limits {
            max_value_bytes: 1024,
        },
    );
    let services = GrpcServices::new(
        Arc::new(service),
        GrpcOptions {
            max_value_bytes: 1024,
            max_in_flight: 0,
            request_timeout: None,
            in_flight: None,
            auth: Some(AuthPolicy {
                authenticator: Arc::new(hexkv_testkit::auth::authenticator()),
                open_health,
                open_metrics: true,
            }),
            throttle: None,
        },
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(services.serve(listener, std::future::pending()));
    addr
}

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {key}").parse().expect("metadata"),
        );
    }
    request
}

fn put(key: &str) -> pb::PutRequest {
    pb::PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"v"),
        precondition: None,
    }
}

#[tokio::test]
async fn calls_need_a_valid_key() {
    let addr = start(true).await;
    let mut client = KeyValueClient::new(channel(addr).await);
    for key in [None, Some("wrong")] {
        let err = client
            .get(with_key(
                pb::GetRequest {
                    key: Bytes::from_static(b"a"),
                },
                key,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{key:?}: {err:?}");
        assert!(!err.message().contains("wrong"), "the key is never echoed");
    }
}

#[tokio::test]
async fn roles_and_prefixes_decide_what_a_key_may_do() {
    let addr = start(true).await;
    let mut client = KeyValueClient::new(channel(addr).await);
    client
        .put(with_key(put("app/x"), Some(APP)))
        .await
        .expect("inside the prefix");
    let err = client
        .put(with_key(put("other"), Some(APP)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .list(with_key(pb::ListRequest::default(), Some(APP)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "listing everything");
    let page = client
        .list(with_key(
            pb::ListRequest {
                prefix: Bytes::from_static(b"app/"),
                ..Default::default()
            },
            Some(APP),
        ))
        .await
        .expect("listing inside the prefix")
        .into_inner();
    assert_eq!(page.items.len(), 1);

    let err = client
        .delete(with_key(
            pb::DeleteRequest {
                key: Bytes::from_static(b"app/x"),
                precondition: None,
            },
            Some(READER),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("role is read"), "{}", err.message());
    client
        .get(with_key(
            pb::GetRequest {
                key: Bytes::from_static(b"app/x"),
            },
            Some(READER),
        ))
        .await
        .expect("the reader reads");
}

#[tokio::test]
async fn health_is_open_or_needs_the_admin_role() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let check = || with_key(HealthCheckRequest::default(), None);

    let open = start(true).await;
    HealthClient::new(channel(open).await)
        .check(check())
        .await
        .expect("open health");

    let protected = start(false).await;
    let mut health = HealthClient::new(channel(protected).await);
    let err = health.check(check()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = health
        .check(with_key(HealthCheckRequest::default(), Some(READER)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    health
        .check(with_key(HealthCheckRequest::default(), Some(ADMIN)))
        .await
        .expect("the admin checks health");
}

/// The RPCs the server actually serves, as its reflection service lists them (`/package.Service/Method`).
async fn served_rpcs(addr: SocketAddr) -> Vec<String> {
    use prost::Message as _;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let mut client = ServerReflectionClient::new(channel(addr).await);
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let mut answers = client
        .server_reflection_info(with_key(
            tokio_stream::iter([ask(MessageRequest::ListServices(String::new()))]),
            Some(ADMIN),
        ))
        .await
        .expect("reflection, as admin")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("no service list");
    };
    let mut rpcs = Vec::new();
    for service in list.service {
        let mut answers = client
            .server_reflection_info(with_key(
                tokio_stream::iter([ask(MessageRequest::FileContainingSymbol(
                    service.name.clone(),
                ))]),
                Some(ADMIN),
            ))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("no descriptor of {}", service.name);
        };
        for bytes in files.file_descriptor_proto {
            let file = prost_types::FileDescriptorProto::decode(&bytes[..]).unwrap();
            for described in &file.service {
                let name = format!("{}.{}", file.package(), described.name());
                if name == service.name {
                    for method in &described.method {
                        rpcs.push(format!("/{name}/{}", method.name()));
                    }
                }
            }
        }
    }
    rpcs.sort();
    rpcs.dedup();
    rpcs
}

/// Every RPC the server serves declares what it needs: called without a key, each is refused
/// as UNAUTHENTICATED (an RPC without a declaration would be UNIMPLEMENTED, not served).
#[tokio::test]
async fn every_served_rpc_is_declared() {
    let addr = start(false).await;
    let rpcs = served_rpcs(addr).await;
    for expected in [
        "/hexkv.v1.KeyValue/Get",
        "/hexkv.v1.KeyValue/List",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    ] {
        assert!(rpcs.iter().any(|r| r == expected), "{expected} in {rpcs:?}");
    }
    for rpc in rpcs {
        let mut grpc = tonic::client::Grpc::new(channel(addr).await);
        grpc.ready().await.expect("ready");
        let err = grpc
            .unary(
                tonic::Request::new(()),
                rpc.parse().expect("path"),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .expect_err("refused without a key");
        assert_eq!(err.code(), Code::Unauthenticated, "{rpc}: {err:?}");
    }
}
