//! The REST API of the real binary.

use hexkv_e2e::Server;
use reqwest::{Client, StatusCode};

use crate::{data_dir, get, put};

#[tokio::test]
async fn put_get_list_delete() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let client = Client::new();

    let (status, v1) = put(&client, &server, "app/config/color", b"blue".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, v2) = put(&client, &server, "app/config/size", b"XL".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(v2 > v1);
    assert_eq!(
        get(&client, &server, "app/config/color").await,
        Some((v1.unwrap(), b"blue".to_vec()))
    );

    let listing: serde_json::Value = client
        .get(server.url("/v1/kv?prefix=app/config/"))
        .send()
        .await
        .unwrap()
        .json_bytes()
        .await;
    assert_eq!(
        listing["items"],
        serde_json::json!([
            {"key": "app/config/color", "version": v1},
            {"key": "app/config/size", "version": v2},
        ])
    );

    let deleted = client
        .delete(server.url("/v1/kv/app/config/color"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&client, &server, "app/config/color").await, None);

    let problem = client
        .get(server.url("/v1/kv/bad%00key"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        problem.headers()["content-type"],
        "application/problem+json"
    );
}

trait JsonBytes {
    async fn json_bytes(self) -> serde_json::Value;
}

impl JsonBytes for reqwest::Response {
    async fn json_bytes(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.expect("body")).expect("JSON")
    }
}
