//! The client against the real services and store over sockets on 127.0.0.1: every operation over
//! both transports, and retries against a server that fails a set number of times.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hexkv_client::{Client, ClientError, ClientOptions, Precondition, RetryPolicy};
use hexkv_core::{
    DeleteOutcome, Entry, Key, KeyValueApi, KeyValueService, KvError, Limits, ListQuery, Page,
    PutOutcome, Readiness, Value,
};
use hexkv_grpc::{GrpcOptions, GrpcServices};
use hexkv_http::HttpOptions;
use hexkv_store_memory::{DurableOptions, MemoryStore};

const MAX_VALUE: usize = 1024;

/// Both front ends over one API, on port 0.
struct Servers {
    grpc: String,
    http: String,
}

async fn serve(api: Arc<dyn KeyValueApi>) -> Servers {
    let services = GrpcServices::new(
        Arc::clone(&api),
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
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let grpc_addr = grpc.local_addr().expect("addr");
    tokio::spawn(services.serve(grpc, std::future::pending()));

    let router = hexkv_http::router(
        api,
        HttpOptions {
            max_body_bytes: MAX_VALUE,
            max_in_flight: 0,
            request_timeout: None,
        },
    );
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http_addr = http.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(http, router).await });
    Servers {
        grpc: format!("http://{grpc_addr}"),
        http: format!("http://{http_addr}"),
    }
}

fn durable_service() -> (Arc<dyn KeyValueApi>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, _) = MemoryStore::open(&DurableOptions::new(dir.path())).expect("open");
    let service = KeyValueService::new(
        Arc::new(store),
        Limits {
            max_value_bytes: MAX_VALUE,
        },
    );
    (Arc::new(service), dir)
}

async fn clients(servers: &Servers, options: ClientOptions) -> [(&'static str, Client); 2] {
    let grpc = Client::connect(servers.grpc.clone(), options)
        .await
        .expect("connect");
    let http = Client::http(servers.http.clone(), options).expect("http client");
    [("grpc", grpc), ("http", http)]
}

#[tokio::test]
async fn a_key_through_its_life_with_typed_errors_over_both_transports() {
    let (api, _dir) = durable_service();
    let servers = serve(api).await;
    for (transport, client) in clients(&servers, ClientOptions::default()).await {
        let k = |s: &str| format!("{transport}/{s}");
        let created = client
            .put(&k("users/1"), &b"\x00binary\xff"[..], Precondition::Absent)
            .await
            .unwrap();
        assert!(created.created, "{transport}");
        let entry = client.get(&k("users/1")).await.unwrap();
        assert_eq!(&entry.value[..], b"\x00binary\xff", "{transport}");
        assert_eq!(entry.version, created.version, "{transport}");
        assert_eq!(entry.key, k("users/1"));

        let swapped = client
            .put(&k("users/1"), "v2", Precondition::Version(created.version))
            .await
            .unwrap();
        assert!(!swapped.created);
        match client
            .put(&k("users/1"), "v3", Precondition::Version(created.version))
            .await
        {
            Err(ClientError::PreconditionFailed { current }) => {
                assert_eq!(current, Some(swapped.version), "{transport}");
            }
            other => panic!("{transport}: expected PreconditionFailed, got {other:?}"),
        }
        match client
            .put(&k("absent"), "v", Precondition::Version(swapped.version))
            .await
        {
            Err(ClientError::PreconditionFailed { current: None }) => {}
            other => panic!("{transport}: expected PreconditionFailed, got {other:?}"),
        }

        match client.get("bad\nkey").await {
            Err(ClientError::InvalidArgument { field, .. }) => assert_eq!(field, "key"),
            other => panic!("{transport}: expected InvalidArgument, got {other:?}"),
        }
        match client
            .put(&k("big"), vec![0u8; MAX_VALUE + 1], Precondition::None)
            .await
        {
            Err(ClientError::TooLarge { .. }) => {}
            other => panic!("{transport}: expected TooLarge, got {other:?}"),
        }

        // Keys that need escaping in a URL.
        let odd = k("a/../b c?#%é");
        client.put(&odd, "odd", Precondition::None).await.unwrap();
        assert_eq!(&client.get(&odd).await.unwrap().value[..], b"odd");

        for s in ["users/2", "users/3"] {
            client.put(&k(s), "x", Precondition::None).await.unwrap();
        }
        let first = client.list(&k("users/"), 2, None).await.unwrap();
        assert_eq!(first.items.len(), 2, "{transport}");
        assert_eq!(first.items[0].0, k("users/1"));
        let rest = client
            .list(&k("users/"), 2, first.next_cursor.as_deref())
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 1, "{transport}");
        assert_eq!(rest.items[0].0, k("users/3"));
        assert_eq!(rest.next_cursor, None);

        let deleted = client
            .delete(&k("users/1"), Precondition::None)
            .await
            .unwrap();
        let again = client
            .delete(&k("users/1"), Precondition::None)
            .await
            .unwrap();
        match transport {
            "grpc" => assert_eq!((deleted, again), (Some(true), Some(false))),
            _ => assert_eq!((deleted, again), (None, None)),
        }
        assert!(matches!(
            client.get(&k("users/1")).await,
            Err(ClientError::NotFound)
        ));
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_or_unavailable() {
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

    let http = Client::http(format!("http://127.0.0.1:{port}"), options).unwrap();
    let err = http.get("k").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(
        Client::http("ftp://x", options),
        Err(ClientError::Connect(_))
    ));
}

/// A service that answers `Unavailable` (with a retry hint) to its first `failures` calls, then
/// passes calls on; it records when each call arrived.
///
/// With no hint of its own, the server still sends one (1 s over REST, where `Retry-After` counts
/// whole seconds), so each retry over HTTP takes at least a second.
struct Flaky {
    inner: Arc<dyn KeyValueApi>,
    failures: AtomicUsize,
    hint: Option<Duration>,
    arrivals: Mutex<Vec<Instant>>,
    /// A failing write is applied, then answered as outcome unknown (its answer "lost").
    lose_answers: std::sync::atomic::AtomicBool,
}

impl Flaky {
    fn new(inner: Arc<dyn KeyValueApi>, failures: usize, hint: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            failures: AtomicUsize::new(failures),
            hint,
            arrivals: Mutex::new(Vec::new()),
            lose_answers: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn arrive(&self) -> Result<(), KvError> {
        self.arrivals.lock().unwrap().push(Instant::now());
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            Err(KvError::Unavailable {
                reason: "injected failure".into(),
                retry_after: self.hint,
            })
        } else {
            Ok(())
        }
    }

    fn reset(&self, failures: usize) {
        self.failures.store(failures, Ordering::SeqCst);
        self.arrivals.lock().unwrap().clear();
    }

    fn gaps(&self) -> Vec<Duration> {
        let arrivals = self.arrivals.lock().unwrap();
        arrivals.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

#[async_trait]
impl KeyValueApi for Flaky {
    async fn get(&self, key: &Key) -> Result<Entry, KvError> {
        self.arrive()?;
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: hexkv_core::Precondition,
    ) -> Result<PutOutcome, KvError> {
        if let Err(refused) = self.arrive() {
            if !self.lose_answers.load(Ordering::SeqCst) {
                return Err(refused);
            }
            self.inner.put(key, value, precondition).await?;
            return Err(KvError::OutcomeUnknown {
                reason: "injected: the answer was lost".into(),
            });
        }
        self.inner.put(key, value, precondition).await
    }
    async fn delete(
        &self,
        key: &Key,
        precondition: hexkv_core::Precondition,
    ) -> Result<DeleteOutcome, KvError> {
        self.arrive()?;
        self.inner.delete(key, precondition).await
    }
    async fn list(
        &self,
        query: &ListQuery,
        client: &hexkv_core::Identity,
    ) -> Result<Page, KvError> {
        self.arrive()?;
        self.inner.list(query, client).await
    }
    async fn readiness(&self) -> Readiness {
        self.inner.readiness().await
    }
}

/// A [`Flaky`] service with `hint` over a durable store, served on both front ends, and client
/// options with fast retries.
async fn flaky_servers(
    hint: Option<Duration>,
) -> (Arc<Flaky>, Servers, ClientOptions, tempfile::TempDir) {
    let (inner, dir) = durable_service();
    let flaky = Flaky::new(inner, 0, hint);
    let servers = serve(flaky.clone()).await;
    let options = ClientOptions {
        retry: fast_retries(),
        ..ClientOptions::default()
    };
    (flaky, servers, options, dir)
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(40),
        max_elapsed: Duration::from_secs(30),
        ..RetryPolicy::default()
    }
}

#[tokio::test]
async fn reads_are_retried_until_the_server_recovers_and_attempts_are_capped() {
    let (flaky, servers, options, _dir) = flaky_servers(Some(Duration::from_millis(10))).await;
    for (transport, client) in clients(&servers, options).await {
        flaky.reset(0);
        client.put("k", "v", Precondition::None).await.unwrap();

        // Two failures, then success on the third and last allowed attempt.
        flaky.reset(2);
        let entry = client.get("k").await.unwrap();
        assert_eq!(&entry.value[..], b"v", "{transport}");
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 3, "{transport}");

        // Failing for good: the client gives up after three attempts with the server's error.
        flaky.reset(usize::MAX);
        let err = client.list("", 0, None).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Unavailable { .. }),
            "{transport}: {err:?}"
        );
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 3, "{transport}");
    }
}

#[tokio::test]
async fn writes_are_retried_only_when_the_caller_opts_in() {
    let (flaky, servers, options, _dir) = flaky_servers(Some(Duration::from_millis(10))).await;
    for (transport, client) in clients(&servers, options).await {
        flaky.reset(1);
        let err = client.put("w", "1", Precondition::None).await.unwrap_err();
        assert!(err.is_transient(), "{transport}: {err:?}");
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 1, "{transport}");
    }
    let opted_in = ClientOptions {
        retry: RetryPolicy {
            retry_writes: true,
            ..fast_retries()
        },
        ..ClientOptions::default()
    };
    for (transport, client) in clients(&servers, opted_in).await {
        flaky.reset(1);
        client.put("w", "1", Precondition::None).await.unwrap();
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 2, "{transport}");
    }
}

/// With retries of writes on, a conditional write is retried after a refusal (nothing changed),
/// but not after an answer of outcome unknown: it was applied, and a retry would have failed its
/// own precondition. An unconditional write is retried after either.
#[tokio::test]
async fn conditional_writes_whose_outcome_is_unknown_are_not_retried() {
    let (flaky, servers, _, _dir) = flaky_servers(Some(Duration::from_millis(10))).await;
    let opted_in = ClientOptions {
        retry: RetryPolicy {
            retry_writes: true,
            ..fast_retries()
        },
        ..ClientOptions::default()
    };
    for (transport, client) in clients(&servers, opted_in).await {
        let key = format!("cas-{transport}");
        flaky.lose_answers.store(false, Ordering::SeqCst);
        flaky.reset(0);
        let first = client.put(&key, "1", Precondition::Absent).await.unwrap();

        // Refused once: retried, and the compare-and-swap goes through.
        flaky.reset(1);
        let second = client
            .put(&key, "2", Precondition::Version(first.version))
            .await
            .unwrap();
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 2, "{transport}");

        // Applied, then its answer lost: the client says so and does not retry.
        flaky.lose_answers.store(true, Ordering::SeqCst);
        flaky.reset(1);
        let err = client
            .put(&key, "3", Precondition::Version(second.version))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::OutcomeUnknown { .. }),
            "{transport}: {err:?}"
        );
        assert!(err.is_transient() && !err.changed_nothing(), "{transport}");
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 1, "{transport}");
        flaky.reset(0);
        assert_eq!(&client.get(&key).await.unwrap().value[..], b"3", "applied");

        // An unconditional write may be written again.
        flaky.reset(1);
        client.put(&key, "4", Precondition::None).await.unwrap();
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 2, "{transport}");
    }
}

#[tokio::test]
async fn the_servers_retry_hint_is_a_floor_on_the_delay() {
    // gRPC carries the hint exactly (RetryInfo); REST in whole seconds (Retry-After, at least 1).
    let (flaky, servers, options, _dir) = flaky_servers(Some(Duration::from_millis(300))).await;
    let floors = [
        ("grpc", Duration::from_millis(300)),
        ("http", Duration::from_secs(1)),
    ];
    for ((transport, client), (_, floor)) in
        clients(&servers, options).await.into_iter().zip(floors)
    {
        flaky.reset(1);
        let err = client.get("nothing").await.unwrap_err();
        assert!(matches!(err, ClientError::NotFound), "{transport}: {err:?}");
        let gaps = flaky.gaps();
        assert_eq!(gaps.len(), 1, "{transport}");
        // Without the hint the delay would be at most 5 ms (the first ceiling).
        assert!(gaps[0] >= floor, "{transport}: retried after {:?}", gaps[0]);
    }
}

#[tokio::test]
async fn a_hint_past_the_time_cap_ends_the_retries() {
    let (flaky, servers, mut options, _dir) = flaky_servers(Some(Duration::from_secs(60))).await;
    options.retry.max_elapsed = Duration::from_secs(10);
    for (transport, client) in clients(&servers, options).await {
        flaky.reset(usize::MAX);
        let started = Instant::now();
        let err = client.get("k").await.unwrap_err();
        assert!(err.is_transient(), "{transport}: {err:?}");
        assert_eq!(flaky.arrivals.lock().unwrap().len(), 1, "{transport}");
        // It gave up at once rather than sleeping past the cap.
        assert!(started.elapsed() < Duration::from_secs(10), "{transport}");
    }
}
