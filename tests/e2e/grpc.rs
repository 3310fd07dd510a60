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

/// `grpc.listen = http.listen`: one listener serves REST, gRPC (HTTP/2) and gRPC-Web (here over
/// HTTP/1.1, as a browser may), told apart by content type; a page of an origin that
/// `cors.allowed_origins` lists (from the environment) gets its preflight and the answer's
/// gRPC status.
#[tokio::test]
async fn one_listener_serves_rest_grpc_and_grpc_web() {
    use prost::Message as _;

    let (_tmp, data) = data_dir();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap().to_string();
    drop(free);
    let page = "https://console.example";
    let server = Server::start_on(
        &data,
        (&addr, &addr),
        &[],
        &[(
            "HEXKV_CORS__ALLOWED_ORIGINS",
            r#"["https://console.example"]"#,
        )],
    );
    assert_eq!(server.url(""), format!("http://{addr}"));
    assert_eq!(server.grpc_endpoint(), format!("http://{addr}"));

    let http = Client::new();
    let (status, _) = put(&http, &server, "one/port", b"v".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let mut grpc = KeyValueClient::connect(server.grpc_endpoint())
        .await
        .unwrap();
    let entry = grpc
        .get(pb::GetRequest {
            key: Bytes::from_static(b"one/port"),
        })
        .await
        .unwrap()
        .into_inner()
        .entry
        .unwrap();
    assert_eq!(&entry.value[..], b"v");

    // gRPC-Web: the message in a 5-byte frame; the answer's message, then its trailers.
    let message = pb::GetRequest {
        key: Bytes::from_static(b"one/port"),
    }
    .encode_to_vec();
    let mut body = vec![0];
    body.extend_from_slice(&(message.len() as u32).to_be_bytes());
    body.extend_from_slice(&message);
    let browser = Client::builder().http1_only().build().unwrap();
    let preflight = browser
        .request(
            reqwest::Method::OPTIONS,
            format!("http://{addr}/hexkv.v1.KeyValue/Get"),
        )
        .header("origin", page)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(preflight.headers()["access-control-allow-origin"], page);
    let web = browser
        .post(format!("http://{addr}/hexkv.v1.KeyValue/Get"))
        .header("origin", page)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(web.status(), StatusCode::OK);
    assert_eq!(web.headers()["access-control-allow-origin"], page);
    let exposed = web.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("grpc-status"), "{exposed}");
    assert_eq!(web.headers()["content-type"], "application/grpc-web+proto");
    let answer = web.bytes().await.unwrap();
    assert_eq!(answer[0], 0, "a message frame first");
    let len = u32::from_be_bytes(answer[1..5].try_into().unwrap()) as usize;
    let got = pb::GetResponse::decode(&answer[5..5 + len]).unwrap();
    assert_eq!(&got.entry.unwrap().value[..], b"v");
    let trailers = &answer[5 + len..];
    assert_eq!(trailers[0], 0x80, "then the trailers frame");
    assert!(
        String::from_utf8_lossy(&trailers[5..]).contains("grpc-status:0"),
        "{trailers:?}"
    );

    // The probes answer on it too.
    let ready = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}
