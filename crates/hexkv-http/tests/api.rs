//! The router over a real socket on 127.0.0.1, with the real service and durable memory store.

use std::net::SocketAddr;
use std::sync::Arc;

use hexkv_core::{KeyValueService, Limits};
use hexkv_http::{HttpOptions, router};
use hexkv_store_memory::{DurableOptions, MemoryStore};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value as Json, json};

const MAX_VALUE: usize = 64 * 1024;

struct App {
    addr: SocketAddr,
    client: Client,
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
        let app = router(
            Arc::new(service),
            HttpOptions {
                max_body_bytes: MAX_VALUE,
                max_in_flight: 0,
                request_timeout: None,
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            client: Client::new(),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn json(response: reqwest::Response) -> Json {
    serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON")
}

#[tokio::test]
async fn a_key_through_its_whole_life() {
    let app = App::start().await;
    let url = app.url("/v1/kv/users/42/profile");

    let created = app.client.put(&url).body("v1").send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let etag1 = created.headers()[header::ETAG].to_str().unwrap().to_owned();
    let body = json(created).await;
    assert_eq!(body["key"], "users/42/profile");

    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.headers()[header::ETAG].to_str().unwrap(), etag1);
    assert_eq!(&got.bytes().await.unwrap()[..], b"v1");

    let unchanged = app
        .client
        .get(&url)
        .header(header::IF_NONE_MATCH, &etag1)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

    let swapped = app
        .client
        .put(&url)
        .header(header::IF_MATCH, &etag1)
        .body(vec![0u8, 1, 2, 255])
        .send()
        .await
        .unwrap();
    assert_eq!(swapped.status(), StatusCode::OK);
    let etag2 = swapped.headers()[header::ETAG].to_str().unwrap().to_owned();
    assert_ne!(etag1, etag2);

    let stale = app
        .client
        .put(&url)
        .header(header::IF_MATCH, &etag1)
        .body("lost")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let problem = json(stale).await;
    assert_eq!(
        format!("\"{}\"", problem["current_version"]),
        etag2,
        "412 carries the current version"
    );

    let exists = app
        .client
        .put(&url)
        .header(header::IF_NONE_MATCH, "*")
        .body("lost")
        .send()
        .await
        .unwrap();
    assert_eq!(exists.status(), StatusCode::PRECONDITION_FAILED);

    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(&got.bytes().await.unwrap()[..], &[0u8, 1, 2, 255]);

    for _ in 0..2 {
        let deleted = app.client.delete(&url).send().await.unwrap();
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    }
    let gone = app.client.get(&url).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        gone.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

#[tokio::test]
async fn listing_pages_through_a_prefix() {
    let app = App::start().await;
    for name in ["b/1", "a/3", "a/1", "a/2", "a/é"] {
        let response = app
            .client
            .put(app.url(&format!("/v1/kv/{name}")))
            .body("x")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
    let page = json(
        app.client
            .get(app.url("/v1/kv?prefix=a%2F&limit=3"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let keys: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a/1", "a/2", "a/3"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let page = json(
        app.client
            .get(app.url(&format!("/v1/kv?prefix=a%2F&limit=3&cursor={cursor}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["items"][0]["key"], "a/é");
    assert_eq!(page["next_cursor"], Json::Null);
}

#[tokio::test]
async fn oversized_values_are_refused_and_change_nothing() {
    let app = App::start().await;
    let url = app.url("/v1/kv/big");
    app.client.put(&url).body("small").send().await.unwrap();

    let too_big = app
        .client
        .put(&url)
        .body(vec![b'x'; MAX_VALUE + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(too_big).await["code"], "value_too_large");

    // Without a Content-Length (chunked), the limit holds while streaming.
    let chunks = futures_stream(vec![vec![b'y'; MAX_VALUE / 2]; 3]);
    let streamed = app
        .client
        .put(&url)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let at_limit = app
        .client
        .put(&url)
        .body(vec![b'z'; MAX_VALUE])
        .send()
        .await
        .unwrap();
    assert_eq!(at_limit.status(), StatusCode::OK);
    let got = app.client.get(&url).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().len(), MAX_VALUE);
}

fn futures_stream(
    chunks: Vec<Vec<u8>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks.into_iter().map(Ok))
}

#[tokio::test]
async fn health_endpoints_answer() {
    let app = App::start().await;
    let live = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        json(ready).await,
        json!({"status": "ready", "checks": [
            {"name": "store", "ok": true},
            {"name": "draining", "ok": true}
        ]})
    );
}
