//! The gRPC services over a real socket on 127.0.0.1, with the real service and durable store.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hexkv_core::{KeyValueService, Limits};
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use hexkv_grpc::pb::precondition::Condition;
use hexkv_grpc::{GrpcHealth, GrpcOptions, GrpcServices, pb};
use hexkv_store_memory::{DurableOptions, MemoryStore};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

const MAX_VALUE: usize = 64 * 1024;

struct App {
    addr: SocketAddr,
    health: GrpcHealth,
    _dir: tempfile::TempDir,
}

impl App {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = MemoryStore::open(&DurableOptions::new(dir.path())).expect("open");
        let service = KeyValueService::new(
            Arc::new(store),
            Limits {
                max_value_bytes: MAX_VALUE,
            },
        );
        let services = GrpcServices::new(
            Arc::new(service),
            GrpcOptions {
                max_value_bytes: MAX_VALUE,
                max_in_flight: 0,
                request_timeout: None,
                in_flight: None,
                auth: None,
                throttle: None,
            },
        )
        .await;
        let health = services.health();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(services.serve(listener, std::future::pending()));
        Self {
            addr,
            health,
            _dir: dir,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    async fn client(&self) -> KeyValueClient<Channel> {
        KeyValueClient::new(self.channel().await).max_decoding_message_size(4 * MAX_VALUE)
    }
}

fn put(key: &str, value: &'static [u8], condition: Option<Condition>) -> pb::PutRequest {
    pb::PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(value),
        precondition: condition.map(|c| pb::Precondition { condition: Some(c) }),
    }
}

#[tokio::test]
async fn every_rpc_with_preconditions() {
    let app = App::start().await;
    let mut client = app.client().await;

    let created = client
        .put(put(
            "users/1",
            b"\x00ada",
            Some(Condition::Absent(pb::precondition::Absent {})),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(created.created);

    let got = client
        .get(pb::GetRequest {
            key: Bytes::from_static(b"users/1"),
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(
        (&got.value[..], got.version),
        (&b"\x00ada"[..], created.version)
    );

    let swapped = client
        .put(put(
            "users/1",
            b"grace",
            Some(Condition::Version(created.version)),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!swapped.created && swapped.version > created.version);

    let stale = client
        .put(put(
            "users/1",
            b"lost",
            Some(Condition::Version(created.version)),
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    let details = stale.get_error_details();
    assert_eq!(
        details.error_info().unwrap().metadata["current_version"],
        swapped.version.to_string()
    );

    let exists = client
        .put(put(
            "users/1",
            b"lost",
            Some(Condition::Absent(pb::precondition::Absent {})),
        ))
        .await
        .unwrap_err();
    assert_eq!(exists.code(), Code::FailedPrecondition);

    let deleted = client
        .delete(pb::DeleteRequest {
            key: Bytes::from_static(b"users/1"),
            precondition: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(deleted.deleted && deleted.version > swapped.version);
    let again = client
        .delete(pb::DeleteRequest {
            key: Bytes::from_static(b"users/1"),
            precondition: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.deleted);

    let missing = client
        .get(pb::GetRequest {
            key: Bytes::from_static(b"users/1"),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

#[tokio::test]
async fn list_pages_through_a_prefix() {
    let app = App::start().await;
    let mut client = app.client().await;
    for k in ["a/3", "a/1", "b/1", "a/2"] {
        client.put(put(k, b"v", None)).await.unwrap();
    }
    let mut keys = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list(pb::ListRequest {
                prefix: Bytes::from_static(b"a/"),
                limit: 2,
                cursor,
            })
            .await
            .unwrap()
            .into_inner();
        keys.extend(
            page.items
                .iter()
                .map(|i| String::from_utf8(i.key.to_vec()).unwrap()),
        );
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(keys, ["a/1", "a/2", "a/3"]);
}

#[tokio::test]
async fn oversized_values_are_refused_and_change_nothing() {
    let app = App::start().await;
    let mut client = app.client().await;
    client.put(put("k", b"small", None)).await.unwrap();
    for size in [MAX_VALUE + 1, 2 * MAX_VALUE] {
        let status = client
            .put(pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from(vec![b'x'; size]),
                precondition: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::ResourceExhausted,
            "{size} bytes: {status:?}"
        );
        // Just over the value limit the service refuses it; far over, the message limit does,
        // before the message is read.
        if size > MAX_VALUE + 4096 {
            assert!(
                status.message().contains("the request message is"),
                "{status:?}"
            );
        }
    }
    let got = client
        .get(pb::GetRequest {
            key: Bytes::from_static(b"k"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&got.entry.unwrap().value[..], b"small");
}

#[tokio::test]
async fn health_follows_the_handle() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let app = App::start().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", "hexkv.v1.KeyValue"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    app.health.set_serving(false).await;
    let status = health
        .check(HealthCheckRequest {
            service: "hexkv.v1.KeyValue".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::NotServing as i32);
}

#[tokio::test]
async fn reflection_lists_the_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = App::start().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response: {response:?}");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"hexkv.v1.KeyValue"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}

/// A call of `path` with a `GetRequest`, as any client may send.
async fn raw_get(app: &App, path: &'static str) -> Result<pb::GetResponse, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel().await);
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(pb::GetRequest {
            key: Bytes::from_static(b"k"),
        }),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        tonic_prost::ProstCodec::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn unknown_services_and_methods_are_unimplemented() {
    let app = App::start().await;
    app.client()
        .await
        .put(put("k", b"v", None))
        .await
        .expect("put");
    // The key-value service is answered before tonic's routes, the other services through them.
    let entry = raw_get(&app, "/hexkv.v1.KeyValue/Get")
        .await
        .expect("get")
        .entry
        .expect("entry");
    assert_eq!(entry.value, Bytes::from_static(b"v"));
    for path in [
        "/hexkv.v1.KeyValue/Nope",
        "/hexkv.v1.KeyValueX/Get",
        "/hexkv.v1.Nope/Get",
        "/grpc.health.v1.Health/Nope",
    ] {
        let status = raw_get(&app, path).await.expect_err(path);
        assert_eq!(status.code(), Code::Unimplemented, "{path}: {status:?}");
    }
}

#[tokio::test]
async fn every_call_gets_its_own_request_id_or_the_one_it_sent() {
    let app = App::start().await;
    let mut client = app.client().await;
    client.put(put("id", b"v", None)).await.expect("put");
    // More calls on one connection than the header table holds ids: each id arrives whole and
    // differs from every other (none is taken from, or confused with, an earlier one).
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let response = client
            .get(pb::GetRequest {
                key: Bytes::from_static(b"id"),
            })
            .await
            .expect("get");
        let id = response.metadata().get("x-request-id").expect("an id");
        let id = id.to_str().expect("ascii").to_owned();
        assert_eq!(id.len(), 33, "{id}");
        assert!(seen.insert(id), "an id came back twice");
    }
    let mut request = tonic::Request::new(pb::GetRequest {
        key: Bytes::from_static(b"id"),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let response = client.get(request).await.expect("get");
    assert_eq!(
        response
            .metadata()
            .get("x-request-id")
            .expect("the id sent"),
        "trace-me-42"
    );
}
