//! Service tests: the gRPC handlers in-process against a mocked `KeyValueApi`, one per status
//! mapping.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hexkv_core::{
    Entry, Key, KvError, ListQueryError, MockKeyValueApi, Precondition, PutOutcome, Value,
    ValueError, Version,
};
use mockall::predicate::eq;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::pb::key_value_server::KeyValue;
use crate::{KeyValueGrpc, pb, status};
use hexkv_platform::grpc::access::{Access, admitted};

fn service(api: MockKeyValueApi) -> KeyValueGrpc {
    KeyValueGrpc::new(Arc::new(api))
}

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

async fn get_status(api: MockKeyValueApi, k: &[u8]) -> Status {
    service(api)
        .get(admitted(
            Access::Read,
            pb::GetRequest {
                key: Bytes::copy_from_slice(k),
            },
        ))
        .await
        .unwrap_err()
}

fn violation_field(status: &Status) -> String {
    let details = status.get_error_details();
    let bad = details.bad_request().expect("BadRequest details");
    bad.field_violations[0].field.clone()
}

#[tokio::test]
async fn get_returns_the_entry() {
    let mut api = MockKeyValueApi::new();
    api.expect_get().with(eq(key("a/b"))).returning(|_| {
        Ok(Entry {
            key: Key::new("a/b").unwrap(),
            value: Value::from(vec![0u8, 255]),
            version: Version::new(9),
        })
    });
    let response = service(api)
        .get(admitted(
            Access::Read,
            pb::GetRequest {
                key: Bytes::from_static(b"a/b"),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let entry = response.entry.unwrap();
    assert_eq!(&entry.key[..], b"a/b");
    assert_eq!(&entry.value[..], &[0u8, 255]);
    assert_eq!(entry.version, 9);
}

#[tokio::test]
async fn not_found_is_not_found() {
    let mut api = MockKeyValueApi::new();
    api.expect_get().returning(|_| Err(KvError::NotFound));
    assert_eq!(get_status(api, b"k").await.code(), Code::NotFound);
}

#[tokio::test]
async fn failed_precondition_carries_the_current_version() {
    for (current, expected) in [(Some(7), "7"), (None, "")] {
        let mut api = MockKeyValueApi::new();
        api.expect_put()
            .withf(|_, _, p| *p == Precondition::Version(Version::new(3)))
            .returning(move |_, _, _| {
                Err(KvError::PreconditionFailed {
                    current: current.map(Version::new),
                })
            });
        let status = service(api)
            .put(admitted(
                Access::Write,
                pb::PutRequest {
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"v"),
                    precondition: Some(pb::Precondition {
                        condition: Some(pb::precondition::Condition::Version(3)),
                    }),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(info.reason, status::PRECONDITION_FAILED);
        assert_eq!(info.metadata[status::CURRENT_VERSION], expected);
    }
}

#[tokio::test]
async fn invalid_keys_are_invalid_argument_naming_the_field_and_touch_nothing() {
    let long = vec![b'k'; 1025];
    for bad in [&b""[..], b"a\nb", b"\xff\xfe", &long] {
        let mut api = MockKeyValueApi::new();
        api.expect_get().never();
        let status = get_status(api, bad).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert_eq!(violation_field(&status), "key");
        assert!(
            status.message().starts_with("key: "),
            "{}",
            status.message()
        );
    }
}

#[tokio::test]
async fn oversized_values_are_resource_exhausted() {
    let mut api = MockKeyValueApi::new();
    api.expect_put().returning(|_, _, _| {
        Err(KvError::InvalidValue(ValueError::TooLarge {
            len: 10,
            max: 4,
        }))
    });
    let status = service(api)
        .put(admitted(
            Access::Write,
            pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"0123456789"),
                precondition: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(violation_field(&status), "value");
}

#[tokio::test]
async fn malformed_list_requests_name_the_field() {
    let cases = [
        (
            pb::ListRequest {
                limit: 1001,
                ..Default::default()
            },
            "limit",
        ),
        (
            pb::ListRequest {
                cursor: "garbage".into(),
                ..Default::default()
            },
            "cursor",
        ),
        (
            pb::ListRequest {
                prefix: Bytes::from_static(b"\x01"),
                ..Default::default()
            },
            "prefix",
        ),
        (
            pb::ListRequest {
                prefix: Bytes::from_static(b"\xff"),
                ..Default::default()
            },
            "prefix",
        ),
    ];
    for (request, field) in cases {
        let mut api = MockKeyValueApi::new();
        api.expect_list().never();
        let status = service(api)
            .list(admitted(Access::List, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violation_field(&status), field);
    }
}

#[tokio::test]
async fn unavailable_carries_a_retry_delay() {
    let mut api = MockKeyValueApi::new();
    api.expect_get().returning(|_| {
        Err(KvError::Unavailable {
            reason: "disk full".into(),
            retry_after: Some(Duration::from_secs(2)),
        })
    });
    let status = get_status(api, b"k").await;
    assert_eq!(status.code(), Code::Unavailable);
    let details = status.get_error_details();
    let retry = details.retry_info().expect("RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn internal_errors_leak_nothing() {
    let mut api = MockKeyValueApi::new();
    api.expect_get()
        .returning(|_| Err(KvError::Internal("secret table name".into())));
    let status = get_status(api, b"k").await;
    assert_eq!(status.code(), Code::Internal);
    assert!(!status.message().contains("secret"));
}

#[tokio::test]
async fn put_passes_the_precondition_and_reports_creation() {
    let mut api = MockKeyValueApi::new();
    api.expect_put()
        .withf(|k, v, p| k.as_str() == "k" && v.as_bytes() == b"v" && *p == Precondition::Absent)
        .returning(|_, _, _| {
            Ok(PutOutcome {
                version: Version::new(1),
                created: true,
            })
        });
    let response = service(api)
        .put(admitted(
            Access::Write,
            pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                precondition: Some(pb::Precondition {
                    condition: Some(pb::precondition::Condition::Absent(
                        pb::precondition::Absent {},
                    )),
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.version, response.created), (1, true));
}

#[test]
fn list_query_errors_map_to_their_fields() {
    let status = status(KvError::InvalidQuery(ListQueryError::Cursor));
    assert_eq!(violation_field(&status), "cursor");
}

#[tokio::test]
async fn accepted_connections_have_nagles_algorithm_off() {
    use tokio_stream::StreamExt as _;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain_client = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(!plain_client.nodelay().unwrap(), "the default is on");

    let mut incoming = Box::pin(crate::without_nagle(listener));
    let accepted = incoming.next().await.unwrap().unwrap();
    assert!(accepted.nodelay().unwrap());
    drop(plain_client);
}

/// Refusals and a lost answer are both UNAVAILABLE, told apart by their `ErrorInfo` reason.
#[tokio::test]
async fn an_unknown_outcome_is_told_apart_from_a_refusal() {
    let reason = |status: &Status| {
        status
            .get_error_details()
            .error_info()
            .map(|info| (info.domain.clone(), info.reason.clone()))
    };
    let mut api = MockKeyValueApi::new();
    api.expect_put().returning(|_, _, _| {
        Err(KvError::OutcomeUnknown {
            reason: "lost".into(),
        })
    });
    let status = service(api)
        .put(admitted(
            Access::Write,
            pb::PutRequest {
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v"),
                precondition: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        reason(&status),
        Some(("hexkv".to_owned(), "OUTCOME_UNKNOWN".to_owned()))
    );
    assert!(status.get_error_details().retry_info().is_none());
    for (err, expected) in [
        (
            KvError::Unavailable {
                reason: "down".into(),
                retry_after: None,
            },
            "UNAVAILABLE",
        ),
        (KvError::ReadOnly, "READ_ONLY"),
    ] {
        let status = status::status(err);
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(reason(&status).unwrap().1, expected);
    }
}

#[tokio::test]
async fn a_listing_the_service_turns_off_is_unimplemented() {
    let mut api = MockKeyValueApi::new();
    api.expect_list()
        .returning(|_, _| Err(KvError::FeatureDisabled(hexkv_core::flags::LIST_KEYS)));
    let status = service(api)
        .list(admitted(
            Access::List,
            pb::ListRequest {
                prefix: Bytes::new(),
                limit: 0,
                cursor: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("list_keys"), "{status:?}");
}
