//! Handler tests: the router in-process against a mocked `KeyValueApi`.
//!
//! Each test sets what the mock must receive (the parsed key, precondition or query) and checks
//! the HTTP response the adapter builds from the mock's answer.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use bytes::Bytes;
use hexkv_core::{
    Check, Cursor, DeleteOutcome, Entry, Key, KvError, ListItem, MockKeyValueApi, Page,
    Precondition, PutOutcome, Readiness, Value, Version,
};
use mockall::predicate::eq;
use serde_json::Value as Json;

use crate::{HttpOptions, router};

const LIMIT: usize = 16;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// Checks the problem+json shape and returns its `code`.
    fn problem_code(&self) -> String {
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let json = self.json();
        assert_eq!(json["status"], self.status.as_u16());
        assert_eq!(
            json["request_id"].as_str(),
            self.headers["x-request-id"].to_str().ok()
        );
        assert!(
            json["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:hexkv:problem:")
        );
        assert!(json["title"].is_string() && json["detail"].is_string());
        json["code"].as_str().unwrap().to_owned()
    }
}

async fn send(api: MockKeyValueApi, request: Request<Body>) -> Reply {
    use tower::ServiceExt as _;
    let app = router(
        Arc::new(api),
        HttpOptions {
            max_body_bytes: LIMIT,
            max_in_flight: 0,
            request_timeout: None,
        },
    );
    let response = app.oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(uri)
}

fn get(uri: &str) -> Request<Body> {
    request(Method::GET, uri).body(Body::empty()).unwrap()
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn entry(k: &str, v: &'static str, version: u64) -> Entry {
    Entry {
        key: key(k),
        value: Value::from(v),
        version: Version::new(version),
    }
}

#[tokio::test]
async fn get_returns_the_raw_value_with_its_etag() {
    let mut api = MockKeyValueApi::new();
    api.expect_get()
        .with(eq(key("users/42 x")))
        .returning(|_| Ok(entry("users/42 x", "hello", 7)));
    let reply = send(api, get("/v1/kv/users%2F42%20x")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::ETAG], "\"7\"");
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    assert_eq!(&reply.body[..], b"hello");
}

#[tokio::test]
async fn get_of_absent_key_is_a_404_problem() {
    let mut api = MockKeyValueApi::new();
    api.expect_get().returning(|_| Err(KvError::NotFound));
    let reply = send(api, get("/v1/kv/missing")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.problem_code(), "not_found");
}

#[tokio::test]
async fn get_with_matching_if_none_match_is_not_modified() {
    for (tag, expected) in [
        ("\"7\"", StatusCode::NOT_MODIFIED),
        ("W/\"7\"", StatusCode::NOT_MODIFIED),
        ("\"3\", \"7\"", StatusCode::NOT_MODIFIED),
        ("*", StatusCode::NOT_MODIFIED),
        ("\"6\"", StatusCode::OK),
    ] {
        let mut api = MockKeyValueApi::new();
        api.expect_get().returning(|_| Ok(entry("k", "v", 7)));
        let req = request(Method::GET, "/v1/kv/k")
            .header(header::IF_NONE_MATCH, tag)
            .body(Body::empty())
            .unwrap();
        let reply = send(api, req).await;
        assert_eq!(reply.status, expected, "If-None-Match: {tag}");
        assert_eq!(reply.headers[header::ETAG], "\"7\"");
        if expected == StatusCode::NOT_MODIFIED {
            assert!(reply.body.is_empty());
        }
    }
}

#[tokio::test]
async fn put_with_if_match_is_compare_and_swap() {
    let mut api = MockKeyValueApi::new();
    api.expect_put()
        .withf(|k, v, p| {
            k.as_str() == "a/b"
                && v.as_bytes() == b"\x00\xffbin"
                && *p == Precondition::Version(Version::new(5))
        })
        .returning(|_, _, _| {
            Ok(PutOutcome {
                version: Version::new(6),
                created: false,
            })
        });
    let req = request(Method::PUT, "/v1/kv/a/b")
        .header(header::IF_MATCH, "\"5\"")
        .body(Body::from(&b"\x00\xffbin"[..]))
        .unwrap();
    let reply = send(api, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::ETAG], "\"6\"");
    assert!(reply.headers.get(header::LOCATION).is_none());
    assert_eq!(
        reply.json(),
        serde_json::json!({"key": "a/b", "version": 6})
    );
}

#[tokio::test]
async fn put_create_only_answers_201_with_location() {
    let mut api = MockKeyValueApi::new();
    api.expect_put()
        .withf(|k, _, p| k.as_str() == "new key?" && *p == Precondition::Absent)
        .returning(|_, _, _| {
            Ok(PutOutcome {
                version: Version::new(1),
                created: true,
            })
        });
    let req = request(Method::PUT, "/v1/kv/new%20key%3F")
        .header(header::IF_NONE_MATCH, "*")
        .body(Body::from("v"))
        .unwrap();
    let reply = send(api, req).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.headers[header::LOCATION], "/v1/kv/new%20key%3F");
}

#[tokio::test]
async fn failed_preconditions_answer_412_with_the_current_version() {
    for (current, expected) in [(Some(9), serde_json::json!(9)), (None, Json::Null)] {
        let mut api = MockKeyValueApi::new();
        api.expect_put().returning(move |_, _, _| {
            Err(KvError::PreconditionFailed {
                current: current.map(Version::new),
            })
        });
        let req = request(Method::PUT, "/v1/kv/k")
            .header(header::IF_MATCH, "\"8\"")
            .body(Body::from("v"))
            .unwrap();
        let reply = send(api, req).await;
        assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(reply.problem_code(), "precondition_failed");
        assert_eq!(reply.json()["current_version"], expected);
    }
}

/// `If-Match` with `If-None-Match: *` can never hold (the key must exist and be absent): 412 with
/// the current version, as RFC 9110 evaluates the two, and nothing written.
#[tokio::test]
async fn both_preconditions_at_once_never_hold() {
    for (current, expected) in [(Some(4), serde_json::json!(4)), (None, Json::Null)] {
        let mut api = MockKeyValueApi::new();
        api.expect_put().never();
        api.expect_get()
            .with(eq(key("k")))
            .returning(move |k| match current {
                Some(v) => Ok(entry(k.as_str(), "v", v)),
                None => Err(KvError::NotFound),
            });
        let req = request(Method::PUT, "/v1/kv/k")
            .header(header::IF_MATCH, "\"4\"")
            .header(header::IF_NONE_MATCH, "*")
            .body(Body::from("v"))
            .unwrap();
        let reply = send(api, req).await;
        assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(reply.problem_code(), "precondition_failed");
        assert_eq!(reply.json()["current_version"], expected);
    }
}

#[tokio::test]
async fn malformed_precondition_headers_are_400_and_touch_nothing() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("if-match", "5")], "PUT"),
        (&[("if-match", "\"five\"")], "PUT"),
        (&[("if-match", "W/\"5\"")], "PUT"),
        (&[("if-match", "*")], "PUT"),
        (&[("if-match", "\"99999999999999999999999\"")], "PUT"),
        (&[("if-none-match", "\"1\"")], "PUT"),
        (&[("if-none-match", "*")], "DELETE"),
        (&[("if-match", "\"1\""), ("if-match", "\"2\"")], "DELETE"),
    ];
    for (headers, method) in cases {
        let mut api = MockKeyValueApi::new();
        api.expect_put().never();
        api.expect_delete().never();
        let mut req = request(method.parse().unwrap(), "/v1/kv/k");
        for (name, value) in *headers {
            req = req.header(*name, *value);
        }
        let reply = send(api, req.body(Body::from("v")).unwrap()).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{method} {headers:?}"
        );
        assert_eq!(reply.problem_code(), "invalid_header");
    }
}

#[tokio::test]
async fn invalid_keys_get_precise_statuses_and_touch_nothing() {
    let long = format!("/v1/kv/{}", "k".repeat(1025));
    let cases = [
        ("/v1/kv/", StatusCode::BAD_REQUEST, "invalid_key"),
        (long.as_str(), StatusCode::URI_TOO_LONG, "key_too_long"),
        ("/v1/kv/a%0Ab", StatusCode::BAD_REQUEST, "invalid_key"),
        ("/v1/kv/a%7Fb", StatusCode::BAD_REQUEST, "invalid_key"),
        ("/v1/kv/%FF%FE", StatusCode::BAD_REQUEST, "invalid_key"),
    ];
    for (uri, status, code) in cases {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            let mut api = MockKeyValueApi::new();
            api.expect_get().never();
            api.expect_put().never();
            api.expect_delete().never();
            let reply = send(
                api,
                request(method.clone(), uri).body(Body::from("v")).unwrap(),
            )
            .await;
            assert_eq!(reply.status, status, "{method} {uri}");
            assert_eq!(reply.problem_code(), code);
        }
    }
}

#[tokio::test]
async fn oversized_body_is_413_and_touches_nothing() {
    let mut api = MockKeyValueApi::new();
    api.expect_put().never();
    let req = request(Method::PUT, "/v1/kv/k")
        .body(Body::from(vec![b'x'; LIMIT + 1]))
        .unwrap();
    let reply = send(api, req).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.problem_code(), "value_too_large");
}

#[tokio::test]
async fn delete_is_204_whether_or_not_the_key_existed() {
    for outcome in [
        DeleteOutcome::Absent,
        DeleteOutcome::Deleted {
            version: Version::new(3),
        },
    ] {
        let mut api = MockKeyValueApi::new();
        api.expect_delete()
            .with(eq(key("k")), eq(Precondition::None))
            .returning(move |_, _| Ok(outcome));
        let reply = send(
            api,
            request(Method::DELETE, "/v1/kv/k")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert!(reply.body.is_empty());
    }
}

#[tokio::test]
async fn list_passes_the_parsed_query_and_encodes_the_cursor() {
    let cursor = Cursor::after(key("p/b"));
    let encoded = cursor.encode();
    let mut api = MockKeyValueApi::new();
    let expected = cursor.clone();
    api.expect_list()
        .withf(move |q, _| q.prefix() == "p/ x" && q.limit() == 2 && q.cursor() == Some(&expected))
        .returning(|_, _| {
            Ok(Page {
                items: vec![
                    ListItem {
                        key: key("p/c"),
                        version: Version::new(4),
                    },
                    ListItem {
                        key: key("p/d"),
                        version: Version::new(2),
                    },
                ],
                next_cursor: Some(Cursor::after(key("p/d"))),
            })
        });
    let reply = send(
        api,
        get(&format!(
            "/v1/kv?prefix=p%2F+x&limit=2&cursor={encoded}&other=1"
        )),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let json = reply.json();
    assert_eq!(
        json["items"],
        serde_json::json!([{"key": "p/c", "version": 4}, {"key": "p/d", "version": 2}])
    );
    let next = Cursor::decode(json["next_cursor"].as_str().unwrap()).unwrap();
    assert_eq!(next.after_key(), &key("p/d"));
}

#[tokio::test]
async fn malformed_list_queries_are_400() {
    for query in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "limit=-1",
        "cursor=garbage",
        "prefix=a&prefix=b",
        "prefix=%FF",
        "prefix=%01",
    ] {
        let mut api = MockKeyValueApi::new();
        api.expect_list().never();
        let reply = send(api, get(&format!("/v1/kv?{query}"))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.problem_code(), "invalid_query", "{query}");
    }
}

#[tokio::test]
async fn unavailable_is_503_with_retry_after() {
    let mut api = MockKeyValueApi::new();
    api.expect_get().returning(|_| {
        Err(KvError::Unavailable {
            reason: "disk full".into(),
            retry_after: Some(Duration::from_millis(2500)),
        })
    });
    let reply = send(api, get("/v1/kv/k")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.headers[header::RETRY_AFTER], "3");
    assert_eq!(reply.problem_code(), "unavailable");
}

#[tokio::test]
async fn internal_errors_leak_nothing() {
    let mut api = MockKeyValueApi::new();
    api.expect_get()
        .returning(|_| Err(KvError::Internal("secret table name".into())));
    let reply = send(api, get("/v1/kv/k")).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.problem_code(), "internal");
    assert!(!String::from_utf8_lossy(&reply.body).contains("secret"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let reply = send(MockKeyValueApi::new(), get("/v2/nothing")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.problem_code(), "route_not_found");

    let req = request(Method::POST, "/v1/kv/k")
        .body(Body::empty())
        .unwrap();
    let reply = send(MockKeyValueApi::new(), req).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.problem_code(), "method_not_allowed");
    assert_eq!(reply.headers[header::ALLOW], "GET,HEAD,PUT,DELETE");

    // The other routes say what they allow too.
    for (uri, allowed) in [("/healthz", "GET,HEAD"), ("/v1/kv", "GET,HEAD")] {
        let req = request(Method::POST, uri).body(Body::empty()).unwrap();
        let reply = send(MockKeyValueApi::new(), req).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{uri}");
        assert_eq!(reply.problem_code(), "method_not_allowed");
        assert_eq!(reply.headers[header::ALLOW], allowed, "{uri}");
    }
}

#[tokio::test]
async fn head_of_a_key_is_its_get_without_the_body() {
    let mut api = MockKeyValueApi::new();
    api.expect_get()
        .with(eq(key("a/b")))
        .returning(|_| Ok(entry("a/b", "hello", 3)));
    let req = request(Method::HEAD, "/v1/kv/a/b")
        .body(Body::empty())
        .unwrap();
    let reply = send(api, req).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers[header::ETAG], "\"3\"");
    assert_eq!(reply.headers[header::CONTENT_LENGTH], "5");
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn client_request_ids_are_kept() {
    let mut api = MockKeyValueApi::new();
    api.expect_get().returning(|_| Err(KvError::NotFound));
    let req = request(Method::GET, "/v1/kv/k")
        .header("x-request-id", "trace-abc.123")
        .body(Body::empty())
        .unwrap();
    let reply = send(api, req).await;
    assert_eq!(reply.headers["x-request-id"], "trace-abc.123");
    assert_eq!(reply.json()["request_id"], "trace-abc.123");
}

#[tokio::test]
async fn readiness_reports_each_check() {
    let mut api = MockKeyValueApi::new();
    api.expect_readiness().returning(|| Readiness {
        checks: vec![Check {
            name: "store",
            ok: false,
            detail: Some("connection refused".into()),
        }],
    });
    let reply = send(api, get("/readyz")).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.json()["status"], "not_ready");
    assert_eq!(reply.json()["checks"][0]["name"], "store");
    assert_eq!(reply.json()["checks"][0]["detail"], "connection refused");
    // Draining is the platform's check, beside the store's.
    assert_eq!(reply.json()["checks"][1]["name"], "draining");
    assert_eq!(reply.json()["checks"][1]["ok"], true);

    let mut api = MockKeyValueApi::new();
    api.expect_readiness().never();
    let reply = send(api, get("/healthz")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["status"], "ok");
}

/// A refused write and one whose answer was lost get different codes: `unavailable` promises
/// nothing changed, `outcome_unknown` does not.
#[tokio::test]
async fn an_unknown_outcome_is_not_reported_as_a_refusal() {
    let mut api = MockKeyValueApi::new();
    api.expect_put().returning(|_, _, _| {
        Err(KvError::OutcomeUnknown {
            reason: "the database connection broke before the write was confirmed".into(),
        })
    });
    let reply = send(
        api,
        request(Method::PUT, "/v1/kv/k")
            .header(header::IF_MATCH, "\"3\"")
            .body(Body::from("v"))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.problem_code(), "outcome_unknown");

    let mut api = MockKeyValueApi::new();
    api.expect_put().returning(|_, _, _| {
        Err(KvError::Unavailable {
            reason: "the breaker is open".into(),
            retry_after: None,
        })
    });
    let reply = send(
        api,
        request(Method::PUT, "/v1/kv/k")
            .body(Body::from("v"))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.problem_code(), "unavailable");
}

/// A listing the service turns off for this client (the `list_keys` flag) is 404
/// `feature_disabled`, and the service is told who asked.
#[tokio::test]
async fn a_listing_the_service_turns_off_is_404_feature_disabled() {
    let mut api = MockKeyValueApi::new();
    api.expect_list()
        .withf(|_, client| *client == hexkv_core::Identity::Unknown)
        .returning(|_, _| Err(KvError::FeatureDisabled(hexkv_core::flags::LIST_KEYS)));
    let reply = send(api, get("/v1/kv")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.problem_code(), "feature_disabled");
}

/// Every route of the table, with its access, and the platform's routes beside them are every
/// path of the OpenAPI document: the same routes (`{key}` there is the `{*key}` wildcard here).
#[test]
fn every_served_route_is_declared_and_documented() {
    let table = crate::routes(Arc::new(MockKeyValueApi::new()));
    let platform = hexkv_platform::health::routes::<()>(Arc::default())
        .merge(hexkv_platform::health::metrics_route(
            hexkv_telemetry::Metrics::local().unwrap().1,
        ))
        .merge(hexkv_platform::health::openapi_route(Arc::from("{}")));
    let mut declared: Vec<String> = table
        .paths()
        .chain(platform.paths())
        .map(|path| path.replace("{*", "{"))
        .collect();
    declared.sort();
    let document: serde_json::Value = serde_json::from_str(&crate::openapi::document()).unwrap();
    let mut documented: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // `/v1/kv/` is the key route's empty-key case (400 `invalid_key`), documented there.
    documented.push(crate::routes::EMPTY_KEY.to_owned());
    documented.sort();
    assert_eq!(declared, documented);
}
