//! End-to-end tests of the real `hexkv` binary: REST over real sockets, restarts, `kill -9`,
//! damaged logs, graceful shutdown, configuration errors, the command-line client, and replicas
//! on PostgreSQL.

mod auth;
mod bench;
mod cli;
mod connections;
mod contract;
mod crash;
mod disk;
mod durability;
mod grpc;
mod lifecycle;
mod observability;
mod postgres;
mod reload;
mod resilience;
mod rest;
mod throttle;
mod tls;
mod traces;

use hexkv_e2e::Server;
use reqwest::Client;

/// A fresh temporary directory and a data directory inside it.
pub fn data_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    (tmp, data)
}

/// PUTs `value` under `key`; returns the status and the version from the ETag, if any.
pub async fn put(
    client: &Client,
    server: &Server,
    key: &str,
    value: Vec<u8>,
) -> (reqwest::StatusCode, Option<u64>) {
    let response = client
        .put(server.url(&format!("/v1/kv/{key}")))
        .body(value)
        .send()
        .await
        .expect("PUT");
    (response.status(), etag(&response))
}

/// The server's `/metrics` page (Prometheus text).
pub async fn metrics_text(client: &Client, server: &Server) -> String {
    client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics text")
}

/// The version in a response's ETag.
pub fn etag(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("etag")?
        .to_str()
        .ok()?
        .trim_matches('"')
        .parse()
        .ok()
}

/// GETs `key`: `None` on 404, else the version and the bytes.
pub async fn get(client: &Client, server: &Server, key: &str) -> Option<(u64, Vec<u8>)> {
    let response = client
        .get(server.url(&format!("/v1/kv/{key}")))
        .send()
        .await
        .expect("GET");
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let version = etag(&response).expect("ETag");
    Some((version, response.bytes().await.expect("body").to_vec()))
}
