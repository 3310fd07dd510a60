//! The binary on PostgreSQL: many replicas on one database, a database that is not there at
//! start, and one that goes away and comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hexkv_e2e::Server;
use hexkv_testkit::postgres::{database, dedicated};
use reqwest::{Client, StatusCode, header};

use crate::data_dir;

fn postgres_args(url: &str) -> Vec<String> {
    vec![
        "--store".into(),
        "postgres".into(),
        "--postgres-url".into(),
        url.into(),
    ]
}

fn start(data: &std::path::Path, url: &str, env: &[(&str, &str)]) -> Server {
    let args = postgres_args(url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(data, &args, env)
}

/// Reads the counter: its value and ETag (`None` when absent).
async fn read_counter(client: &Client, server: &Server) -> Option<(u64, String)> {
    let r = client
        .get(server.url("/v1/kv/counter"))
        .send()
        .await
        .unwrap();
    if r.status() == StatusCode::NOT_FOUND {
        return None;
    }
    assert_eq!(r.status(), StatusCode::OK);
    let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
    let value = String::from_utf8(r.bytes().await.unwrap().to_vec())
        .unwrap()
        .parse()
        .unwrap();
    Some((value, etag))
}

/// GETs `path` until it answers 200 (the service recovered by itself), within a generous
/// deadline; returns the body.
async fn recovered(client: &Client, server: &Server, path: &str) -> bytes::Bytes {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = client.get(server.url(path)).send().await.unwrap();
        if r.status() == StatusCode::OK {
            return r.bytes().await.unwrap();
        }
        assert!(Instant::now() < deadline, "never recovered: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two processes, one database, many clients each doing read-increment-compare-and-swap on one
/// key: the final count equals the number of successful swaps. No update is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_keep_compare_and_swap_correct() {
    let Some(db) = database().await else { return };
    let (_tmp, data) = data_dir();
    let a = Arc::new(start(&data.join("a"), db.url(), &[]));
    let b = Arc::new(start(&data.join("b"), db.url(), &[]));
    let client = Client::new();
    let created = client
        .put(a.url("/v1/kv/counter"))
        .header(header::IF_NONE_MATCH, "*")
        .body("0")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    const CLIENTS: usize = 8;
    const SWAPS_EACH: u64 = 25;
    let successes = Arc::new(AtomicU64::new(0));
    let conflicts = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let server = Arc::clone(if i % 2 == 0 { &a } else { &b });
        let (client, successes, conflicts) = (
            client.clone(),
            Arc::clone(&successes),
            Arc::clone(&conflicts),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = 0;
            while mine < SWAPS_EACH {
                let (value, etag) = read_counter(&client, &server).await.unwrap();
                let r = client
                    .put(server.url("/v1/kv/counter"))
                    .header(header::IF_MATCH, etag)
                    .body((value + 1).to_string())
                    .send()
                    .await
                    .unwrap();
                match r.status() {
                    StatusCode::OK => {
                        mine += 1;
                        successes.fetch_add(1, Ordering::Relaxed);
                    }
                    StatusCode::PRECONDITION_FAILED => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let successes = successes.load(Ordering::Relaxed);
    assert_eq!(successes, CLIENTS as u64 * SWAPS_EACH);
    for server in [&a, &b] {
        let (value, _) = read_counter(&client, server).await.unwrap();
        assert_eq!(value, successes, "lost updates");
    }
    // With eight clients on one key some swaps must have lost a race: the test exercised
    // contention, not a sequence.
    eprintln!(
        "{successes} swaps, {} conflicts",
        conflicts.load(Ordering::Relaxed)
    );
}

#[test]
fn an_unreachable_database_at_start_is_a_clear_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_tmp, data) = data_dir();
    let url = format!("postgres://hexkv:hunter2@127.0.0.1:{port}/kv");
    let args = postgres_args(&url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let failure = match Server::try_start(&data, &args, &[]) {
        Ok(_) => panic!("started without its database"),
        Err(failure) => failure,
    };
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure.stderr.contains(&format!(
            "cannot connect to PostgreSQL at hexkv@127.0.0.1:{port}/kv"
        )),
        "{}",
        failure.stderr
    );
    let everything = format!("{}{}", failure.stderr, failure.stdout);
    assert!(!everything.contains("hunter2"), "the password leaked");
}

/// The database stops: requests get 503 within the acquire timeout and `/readyz` fails; it comes
/// back: the same process serves again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_fast_while_the_database_is_down_and_recover() {
    let Some((cluster, db)) = dedicated().await else {
        return;
    };
    let (_tmp, data) = data_dir();
    let server = start(
        &data,
        db.url(),
        &[("HEXKV_STORE__POSTGRES__ACQUIRE_TIMEOUT_MS", "1000")],
    );
    let client = Client::new();
    let put = |body: &'static str| client.put(server.url("/v1/kv/k")).body(body).send();
    assert!(put("before").await.unwrap().status().is_success());

    cluster.stop().unwrap();
    let started = Instant::now();
    let r = client.get(server.url("/v1/kv/k")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let problem: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(problem["code"], "unavailable");
    assert_eq!(
        put("while down").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Each answer came within the 1 s acquire timeout; the bound leaves room for a slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    cluster.start().unwrap();
    assert_eq!(
        &recovered(&client, &server, "/v1/kv/k").await[..],
        b"before"
    );
    assert!(put("after").await.unwrap().status().is_success());
    // Readiness follows within its cache window (resilience.store.check_cache_ms).
    recovered(&client, &server, "/readyz").await;
    drop(server);
    drop(db);
}

/// Input PostgreSQL would choke on (a NUL in a key, an oversized value, a huge key) is refused by
/// the domain first, with the same status and problem code as on the embedded store, and
/// nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_same_answers_as_on_the_memory_store() {
    let Some(db) = database().await else { return };
    let (_tmp, data) = data_dir();
    let limit = [("HEXKV_LIMITS__MAX_VALUE_BYTES", "1024")];
    let on_postgres = start(&data.join("pg"), db.url(), &limit);
    let on_memory = Server::start(&data.join("mem"), &[], &limit);
    let client = Client::new();
    let long_key = "k".repeat(1025);
    let cases: Vec<(&str, reqwest::Method, String, Vec<u8>)> = vec![
        (
            "NUL in a key",
            reqwest::Method::PUT,
            "/v1/kv/a%00b".into(),
            b"v".to_vec(),
        ),
        (
            "control character",
            reqwest::Method::GET,
            "/v1/kv/a%07b".into(),
            vec![],
        ),
        (
            "invalid UTF-8",
            reqwest::Method::PUT,
            "/v1/kv/a%FFb".into(),
            b"v".to_vec(),
        ),
        (
            "key too long",
            reqwest::Method::PUT,
            format!("/v1/kv/{long_key}"),
            b"v".to_vec(),
        ),
        (
            "value too large",
            reqwest::Method::PUT,
            "/v1/kv/big".into(),
            vec![0; 1025],
        ),
        (
            "bad limit",
            reqwest::Method::GET,
            "/v1/kv?limit=0".into(),
            vec![],
        ),
        (
            "bad cursor",
            reqwest::Method::GET,
            "/v1/kv?cursor=%%%".into(),
            vec![],
        ),
        (
            "prefix with NUL",
            reqwest::Method::GET,
            "/v1/kv?prefix=a%00".into(),
            vec![],
        ),
    ];
    for (what, method, path, body) in cases {
        let mut answers = Vec::new();
        for server in [&on_memory, &on_postgres] {
            let r = client
                .request(method.clone(), server.url(&path))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = r.status();
            let problem: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            assert!(status.is_client_error(), "{what}: {status}");
            answers.push((status, problem["code"].clone()));
        }
        assert_eq!(answers[0], answers[1], "{what}: memory vs postgres");
    }
    let listed = client.get(on_postgres.url("/v1/kv")).send().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&listed.bytes().await.unwrap()).unwrap();
    assert_eq!(body["items"], serde_json::json!([]), "nothing was written");
}

/// The database hangs (every PostgreSQL process frozen with SIGSTOP): the first request waits
/// out its per-attempt timeouts, which open the circuit breaker; from then on requests fail with
/// 503 at once instead of each waiting for the timeout, and `/readyz` fails. When the database
/// thaws, a probe closes the breaker and the same process serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_database_trips_the_breaker_and_requests_fail_fast() {
    let Some((cluster, db)) = dedicated().await else {
        return;
    };
    let (_tmp, data) = data_dir();
    let server = start(
        &data,
        db.url(),
        &[
            ("HEXKV_RESILIENCE__STORE__TIMEOUT_MS", "1000"),
            ("HEXKV_RESILIENCE__STORE__RETRY_ATTEMPTS", "1"),
            ("HEXKV_RESILIENCE__STORE__BREAKER_CONSECUTIVE_FAILURES", "3"),
            ("HEXKV_RESILIENCE__STORE__BREAKER_OPEN_MS", "1000"),
            ("HEXKV_RESILIENCE__STORE__BREAKER_MAX_OPEN_MS", "1000"),
        ],
    );
    let client = Client::new();
    let get = || client.get(server.url("/v1/kv/k")).send();
    assert!(
        client
            .put(server.url("/v1/kv/k"))
            .body("v")
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );

    cluster.pause().unwrap();
    // Three requests time out (each about 1 s): the breaker opens.
    for _ in 0..3 {
        let started = Instant::now();
        let r = get().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }
    // Now the breaker refuses at once, without waiting for the store: the detail says so. The
    // latency is printed (about a millisecond here), not asserted.
    let started = Instant::now();
    let r = get().await.unwrap();
    let fast = started.elapsed();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let problem: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("circuit open"),
        "{problem}"
    );
    eprintln!("refusal with the breaker open: {fast:?} (timeout 1 s)");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    cluster.resume().unwrap();
    assert_eq!(&recovered(&client, &server, "/v1/kv/k").await[..], b"v");
    recovered(&client, &server, "/readyz").await;
    drop(server);
    drop(db);
}
