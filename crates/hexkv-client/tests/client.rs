//! The client against the real gRPC service and store over a socket on 127.0.0.1.

use std::sync::Arc;

use hexkv_client::{Client, ClientError, ClientOptions, Precondition, RetryPolicy};
use hexkv_core::{KeyValueService, Limits};
use hexkv_grpc::{GrpcOptions, GrpcServices};
use hexkv_store_memory::{DurableOptions, MemoryStore};

const MAX_VALUE: usize = 1024;

async fn start() -> (Client, tempfile::TempDir) {
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
        },
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(services.serve(listener, std::future::pending()));
    let client = Client::connect(format!("http://{addr}"), ClientOptions::default())
        .await
        .expect("connect");
    (client, dir)
}

#[tokio::test]
async fn a_key_through_its_life_with_typed_errors() {
    let (client, _dir) = start().await;

    let created = client
        .put("users/1", &b"\x00binary\xff"[..], Precondition::Absent)
        .await
        .unwrap();
    assert!(created.created);
    let entry = client.get("users/1").await.unwrap();
    assert_eq!(&entry.value[..], b"\x00binary\xff");
    assert_eq!(entry.version, created.version);

    let swapped = client
        .put("users/1", "v2", Precondition::Version(created.version))
        .await
        .unwrap();
    match client
        .put("users/1", "v3", Precondition::Version(created.version))
        .await
    {
        Err(ClientError::PreconditionFailed { current }) => {
            assert_eq!(current, Some(swapped.version));
        }
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }

    match client.get("bad\nkey").await {
        Err(ClientError::InvalidArgument { field, .. }) => assert_eq!(field, "key"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    match client
        .put("big", vec![0u8; MAX_VALUE + 1], Precondition::None)
        .await
    {
        Err(ClientError::TooLarge { .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }

    for k in ["users/2", "users/3"] {
        client.put(k, "x", Precondition::None).await.unwrap();
    }
    let first = client.list("users/", 2, None).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let rest = client
        .list("users/", 2, first.next_cursor.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.next_cursor, None);

    assert!(client.delete("users/1", Precondition::None).await.unwrap());
    assert!(!client.delete("users/1", Precondition::None).await.unwrap());
    assert!(matches!(
        client.get("users/1").await,
        Err(ClientError::NotFound)
    ));
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let options = ClientOptions {
        retry: RetryPolicy::none(),
        ..ClientOptions::default()
    };
    let result = Client::connect(format!("http://127.0.0.1:{port}"), options).await;
    assert!(matches!(result, Err(ClientError::Connect(_))));
}
