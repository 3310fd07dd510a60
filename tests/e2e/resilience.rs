//! The stability patterns of the real binary under load, on a PostgreSQL that hangs: the circuit
//! breaker turns waits into fast refusals and lets the service recover by itself, and load
//! shedding refuses the excess at once without memory growing with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hexkv_e2e::Server;
use hexkv_testkit::postgres::dedicated;
use reqwest::{Client, StatusCode, header};
use tokio::task::JoinSet;

use crate::data_dir;

fn start_on_postgres(data: &std::path::Path, url: &str, env: &[(&str, &str)]) -> Server {
    Server::start(data, &["--store", "postgres", "--postgres-url", url], env)
}

/// What one request of the load saw.
#[derive(Debug)]
struct Sample {
    /// When it was sent, since the load began.
    at: Duration,
    /// How long it took.
    took: Duration,
    status: StatusCode,
    /// A 503 whose problem says the breaker refused it without calling the store.
    circuit_open: bool,
    /// A 503 carried `Retry-After`.
    retry_after: bool,
    /// A write, not a read.
    write: bool,
    /// The problem's `code`, on an error.
    code: Option<String>,
}

/// The median of `durations` (`None` when empty).
fn median(mut durations: Vec<Duration>) -> Option<Duration> {
    durations.sort();
    durations.get(durations.len() / 2).copied()
}

/// Polls `done` until it holds, within a generous deadline.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Eight clients write and read their own keys without pause while every PostgreSQL process is
/// frozen (SIGSTOP) and later thawed. Once a few requests have waited out the store timeout (a
/// read: 503 `unavailable`; a write, which the database may still apply: 503 `outcome_unknown`),
/// the breaker opens and requests are refused with 503 `unavailable` and `Retry-After` at once,
/// far below the timeout; `/readyz` is 503; no request gets any other error. When the database thaws, the same
/// process serves again, and every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_load_a_hung_database_turns_into_fast_refusals_then_recovers() {
    const WORKERS: usize = 8;
    let Some((cluster, db)) = dedicated().await else {
        return;
    };
    let (_tmp, data) = data_dir();
    let server = Arc::new(start_on_postgres(
        &data,
        db.url(),
        &[
            ("HEXKV_RESILIENCE__STORE__TIMEOUT_MS", "1000"),
            ("HEXKV_RESILIENCE__STORE__RETRY_ATTEMPTS", "1"),
            ("HEXKV_RESILIENCE__STORE__BREAKER_CONSECUTIVE_FAILURES", "3"),
            ("HEXKV_RESILIENCE__STORE__BREAKER_OPEN_MS", "500"),
            ("HEXKV_RESILIENCE__STORE__BREAKER_MAX_OPEN_MS", "1000"),
        ],
    ));
    let client = Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let refusals = Arc::new(AtomicU64::new(0));
    // Milliseconds since `epoch` of the latest success (0: none yet).
    let last_success = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();

    let mut workers = JoinSet::new();
    for worker in 0..WORKERS {
        let (client, server, stop) = (client.clone(), Arc::clone(&server), Arc::clone(&stop));
        let (refusals, last_success) = (Arc::clone(&refusals), Arc::clone(&last_success));
        workers.spawn(async move {
            let url = server.url(&format!("/v1/kv/w{worker}"));
            let mut samples = Vec::new();
            let mut acknowledged = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let write = n.is_multiple_of(2);
                let request = if write {
                    client.put(&url).body((n + 1).to_string())
                } else {
                    client.get(&url)
                };
                let at = epoch.elapsed();
                let response = request.send().await.expect("the server answers");
                let status = response.status();
                let retry_after = response.headers().contains_key(header::RETRY_AFTER);
                let body = response.bytes().await.expect("body");
                let took = epoch.elapsed() - at;
                let problem = serde_json::from_slice::<serde_json::Value>(&body).ok();
                let circuit_open = status == StatusCode::SERVICE_UNAVAILABLE
                    && problem
                        .as_ref()
                        .and_then(|p| p["detail"].as_str().map(|d| d.contains("circuit open")))
                        .unwrap_or(false);
                let code = problem
                    .as_ref()
                    .and_then(|p| p["code"].as_str().map(str::to_owned));
                if status.is_success() {
                    if write {
                        acknowledged = n + 1;
                    }
                    last_success.fetch_max(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                }
                if circuit_open {
                    refusals.fetch_add(1, Ordering::Relaxed);
                }
                samples.push(Sample {
                    at,
                    took,
                    status,
                    circuit_open,
                    retry_after,
                    write,
                    code,
                });
                n += 1;
            }
            (worker, acknowledged, samples)
        });
    }

    // Healthy load first.
    until("successes under load", || {
        last_success.load(Ordering::Relaxed) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let paused_at = epoch.elapsed();
    cluster.pause().unwrap();
    until("the breaker to refuse a request", || {
        refusals.load(Ordering::Relaxed) > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    let resumed_at = epoch.elapsed();
    cluster.resume().unwrap();
    until("a success after the database thawed", || {
        last_success.load(Ordering::Relaxed) > resumed_at.as_millis() as u64 + 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);

    let mut samples = Vec::new();
    let mut acknowledged = vec![0; WORKERS];
    while let Some(joined) = workers.join_next().await {
        let (worker, acked, mut mine) = joined.unwrap();
        acknowledged[worker] = acked;
        samples.append(&mut mine);
    }

    for sample in &samples {
        let expected = if sample.status.is_success() || sample.status == StatusCode::NOT_FOUND {
            true
        } else if sample.status != StatusCode::SERVICE_UNAVAILABLE {
            false
        } else if sample.code.as_deref() == Some("outcome_unknown") {
            // A write that waited out the store timeout was sent to the database, which may yet
            // apply it: it says so, and promises no retry is safe (no `Retry-After`).
            sample.write && !sample.retry_after
        } else {
            // Refused, nothing changed: retry after the hint.
            sample.code.as_deref() == Some("unavailable") && sample.retry_after
        };
        assert!(expected, "an unexpected answer: {sample:?}");
        if sample.at + sample.took < paused_at {
            assert!(
                sample.status.is_success() || sample.status == StatusCode::NOT_FOUND,
                "a failure before the database hung: {sample:?}"
            );
        }
    }
    let refused: Vec<Duration> = samples
        .iter()
        .filter(|s| s.circuit_open)
        .map(|s| s.took)
        .collect();
    let waited: Vec<Duration> = samples
        .iter()
        .filter(|s| s.status == StatusCode::SERVICE_UNAVAILABLE && !s.circuit_open)
        .map(|s| s.took)
        .collect();
    let (refused_n, waited_n) = (refused.len(), waited.len());
    let refused_median = median(refused).expect("refusals");
    let waited_median = median(waited).expect("requests that waited out the timeout");
    eprintln!(
        "{} requests: {refused_n} refused by the breaker (median {refused_median:?}), \
         {waited_n} waited out the 1 s timeout (median {waited_median:?})",
        samples.len()
    );
    // The breaker answers without waiting for the store; those that reached it waited a second.
    assert!(refused_median < waited_median);

    // Every acknowledged write survived; a later one (sent, not acknowledged, then applied when
    // the database thawed) may have replaced it.
    for (worker, acked) in acknowledged.into_iter().enumerate() {
        let r = client
            .get(server.url(&format!("/v1/kv/w{worker}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let value: u64 = std::str::from_utf8(&r.bytes().await.unwrap())
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            value >= acked,
            "worker {worker}: {value} < acknowledged {acked}"
        );
    }
    // Readiness follows within its cache window.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
    drop(db);
}

/// Waves of concurrent GETs against a database that hangs, with `limits.max_in_flight` 8 and
/// timeouts far away: exactly 8 requests are admitted and wait; every other one is refused at
/// once with 503 `overloaded` and `Retry-After`; the process's memory does not grow with the
/// refused requests; when the database thaws, the 8 admitted requests complete with 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_refused_at_once_and_memory_stays_bounded() {
    const MAX_IN_FLIGHT: usize = 8;
    const WAVES: usize = 5;
    const BURST: usize = 200;
    let Some((cluster, db)) = dedicated().await else {
        return;
    };
    let (_tmp, data) = data_dir();
    let server = Arc::new(start_on_postgres(
        &data,
        db.url(),
        &[
            ("HEXKV_LIMITS__MAX_IN_FLIGHT", "8"),
            ("HEXKV_LIMITS__REQUEST_TIMEOUT_MS", "600000"),
            ("HEXKV_RESILIENCE__STORE__TIMEOUT_MS", "600000"),
            ("HEXKV_STORE__POSTGRES__ACQUIRE_TIMEOUT_MS", "600000"),
        ],
    ));
    let client = Client::new();
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
    // Warm up with the same concurrency (connections, buffers, pool), then measure.
    let mut warm = JoinSet::new();
    for _ in 0..BURST {
        let (client, server) = (client.clone(), Arc::clone(&server));
        warm.spawn(async move { client.get(server.url("/v1/kv/k")).send().await.unwrap() });
    }
    while let Some(r) = warm.join_next().await {
        let status = r.unwrap().status();
        assert!(
            status == StatusCode::OK || status == StatusCode::SERVICE_UNAVAILABLE,
            "{status}"
        );
    }
    let baseline = server.rss_bytes();

    cluster.pause().unwrap();
    let refused = Arc::new(AtomicU64::new(0));
    let mut requests = JoinSet::new();
    let mut rss = Vec::new();
    let mut refusal_times = Vec::new();
    for wave in 1..=WAVES {
        let (sent_tx, mut sent_rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..BURST {
            let (client, server) = (client.clone(), Arc::clone(&server));
            let (refused, sent_tx) = (Arc::clone(&refused), sent_tx.clone());
            requests.spawn(async move {
                let started = Instant::now();
                let r = client.get(server.url("/v1/kv/k")).send().await.unwrap();
                let status = r.status();
                let retry_after = r.headers().contains_key(header::RETRY_AFTER);
                let body = r.bytes().await.unwrap();
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(problem["code"], "overloaded", "{problem}");
                    assert!(retry_after, "503 without Retry-After");
                    refused.fetch_add(1, Ordering::Relaxed);
                    let _ = sent_tx.send(started.elapsed());
                }
                (status, body)
            });
        }
        drop(sent_tx);
        // Every request of this wave but the admitted ones is refused.
        let expected = wave * BURST - MAX_IN_FLIGHT;
        until("the excess to be refused", || {
            refused.load(Ordering::Relaxed) as usize >= expected
        })
        .await;
        while let Ok(took) = sent_rx.try_recv() {
            refusal_times.push(took);
        }
        rss.push(server.rss_bytes());
    }
    // The admitted requests are still waiting on the frozen database.
    assert_eq!(
        refused.load(Ordering::Relaxed) as usize,
        WAVES * BURST - MAX_IN_FLIGHT
    );
    assert_eq!(requests.len(), WAVES * BURST);
    for _ in 0..WAVES * BURST - MAX_IN_FLIGHT {
        requests.join_next().await.unwrap().unwrap();
    }
    assert_eq!(
        requests.len(),
        MAX_IN_FLIGHT,
        "admitted requests finished early"
    );

    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let growth = rss.last().unwrap().saturating_sub(rss[0]);
    eprintln!(
        "RSS: {:.1} MiB before, after each wave of {BURST}: {:?} MiB; refusals: median {:?}",
        mib(baseline),
        rss.iter()
            .map(|&b| (mib(b) * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        median(refusal_times).unwrap()
    );
    // Refused requests leave nothing behind: four more waves add less than 8 MiB.
    assert!(
        growth < 8 * 1024 * 1024,
        "memory grew by {:.1} MiB over {} refused requests",
        mib(growth),
        (WAVES - 1) * BURST
    );

    cluster.resume().unwrap();
    while let Some(r) = requests.join_next().await {
        let (status, body) = r.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"v");
    }
    drop(server);
    drop(db);
}
