//! The REST front end on arbitrary requests: method, path and query, the headers it reads, and
//! a body. Whatever comes in, the answer is a status below 500 (a panic would be caught and
//! turned into a 500, so this also finds panics) over a fresh ephemeral store.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use hexkv_core::{KeyValueService, Limits};
use hexkv_http::HttpOptions;
use hexkv_store_memory::MemoryStore;
use tower::ServiceExt as _;

#[derive(Debug, Arbitrary)]
struct Input {
    method: u8,
    /// Appended to one of a few route prefixes, so most inputs reach a handler.
    route: u8,
    path: Vec<u8>,
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
}

const METHODS: &[&str] = &["GET", "PUT", "DELETE", "POST", "HEAD", "PATCH", "OPTIONS"];
const ROUTES: &[&str] = &[
    "/v1/kv/", "/v1/kv?", "/v1/kv", "/", "/healthz", "/readyz", "",
];
const HEADERS: &[&str] = &[
    "if-match",
    "if-none-match",
    "content-type",
    "content-length",
    "x-request-id",
    "x-api-key",
    "traceparent",
    "accept",
    "transfer-encoding",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    })
}

fn request(input: &Input) -> Option<http::Request<axum::body::Body>> {
    let mut uri = ROUTES[input.route as usize % ROUTES.len()]
        .as_bytes()
        .to_vec();
    uri.extend_from_slice(&input.path);
    let uri = http::Uri::try_from(uri).ok()?;
    let mut builder = http::Request::builder()
        .method(METHODS[input.method as usize % METHODS.len()])
        .uri(uri);
    for (name, value) in &input.headers {
        let value = http::HeaderValue::from_bytes(value).ok()?;
        builder = builder.header(HEADERS[*name as usize % HEADERS.len()], value);
    }
    builder
        .body(axum::body::Body::from(input.body.clone()))
        .ok()
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let Some(request) = request(&input) else {
        return;
    };
    let limits = Limits {
        max_value_bytes: 1024,
    };
    let api = Arc::new(KeyValueService::new(
        Arc::new(MemoryStore::ephemeral(4)),
        limits,
    ));
    let router = hexkv_http::router(
        api,
        HttpOptions {
            max_body_bytes: 1024,
            max_in_flight: 0,
            request_timeout: None,
        },
    );
    runtime().block_on(async move {
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        assert!(
            status.as_u16() < 500,
            "{status}: {}",
            String::from_utf8_lossy(&body)
        );
    });
});
