//! Crash testing: the real binary under concurrent PUT and DELETE load, `kill -9`ed at random
//! moments, round after round on one data directory (compacting as it goes), checked against what
//! the clients were told.
//!
//! Each client owns its keys and writes each key sequentially, so for every key the client's
//! record says exactly what is allowed after a crash: the key's last acknowledged write, or the
//! one write to it that was in flight when the process died (logged but not yet acknowledged).
//! Anything else — a lost acknowledged write, an older value, a value never sent, a version that
//! goes back — fails the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hexkv_e2e::Server;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Client, StatusCode};

use crate::{data_dir, get};

const CLIENTS: usize = 8;
const KEYS_PER_CLIENT: usize = 16;
const ROUNDS: usize = 12;
/// The whole test stops starting rounds after this long (it still checks the last one).
const TIME_BUDGET: Duration = Duration::from_secs(90);

/// What a key may hold: its last acknowledged state and the write in flight, if any.
#[derive(Debug, Clone, Default)]
struct KeyRecord {
    /// `Some((version, value))` after an acknowledged put, `None` after a delete (or never).
    acked: Option<(u64, Vec<u8>)>,
    /// The highest version this key was acknowledged at, deletes aside.
    acked_version: u64,
    /// A write sent but not answered: `Some(value)` for a put, `None` for a delete.
    in_flight: Option<Option<Vec<u8>>>,
}

type Record = Arc<Mutex<HashMap<String, KeyRecord>>>;

fn key_name(client: usize, k: usize) -> String {
    format!("c{client}/k{k}")
}

/// One client: writes its keys in a random order until the server goes away, keeping the record.
async fn client_loop(client: usize, url: String, record: Record, seed: u64, round: usize) {
    let http = Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut rng = StdRng::seed_from_u64(seed ^ ((round * CLIENTS + client) as u64));
    for n in 0u64.. {
        let key = key_name(client, rng.random_range(0..KEYS_PER_CLIENT));
        let delete = rng.random_bool(0.25);
        let value = format!(
            "{key}#r{round}#n{n}#{}",
            "v".repeat(rng.random_range(0..200))
        )
        .into_bytes();
        record
            .lock()
            .expect("record")
            .entry(key.clone())
            .or_default()
            .in_flight = Some((!delete).then(|| value.clone()));
        let url = format!("{url}/v1/kv/{key}");
        let sent = if delete {
            http.delete(url).send().await
        } else {
            http.put(url).body(value.clone()).send().await
        };
        // No answer: the server died with this write in flight; it stays recorded as such.
        let Ok(response) = sent else { return };
        let status = response.status();
        let version = crate::etag(&response);
        let mut record = record.lock().expect("record");
        let entry = record.get_mut(&key).expect("recorded");
        match (delete, status) {
            (true, StatusCode::NO_CONTENT) => {
                entry.acked = None;
                entry.in_flight = None;
            }
            (false, StatusCode::OK | StatusCode::CREATED) => {
                let version = version.expect("ETag on a write");
                assert!(version > entry.acked_version, "{key}: versions must rise");
                entry.acked = Some((version, value));
                entry.acked_version = version;
                entry.in_flight = None;
            }
            // The connection broke while the answer was on its way: still in flight.
            _ if status.is_server_error() => return,
            _ => panic!("{key}: unexpected {status}"),
        }
    }
}

/// Checks every key against the record after a restart, and makes the record agree with what
/// survived (an in-flight write that landed becomes the key's state).
async fn verify(http: &Client, server: &Server, record: &Record, round: usize) -> u64 {
    let keys: Vec<(String, KeyRecord)> = record
        .lock()
        .expect("record")
        .iter()
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    let mut highest = 0;
    let mut landed = 0;
    for (key, expected) in keys {
        let found = get(http, server, &key).await;
        let in_flight_landed = match (&found, &expected.in_flight) {
            _ if found == expected.acked => false,
            (None, Some(None)) => true,
            (Some((version, value)), Some(Some(sent))) if value == sent => {
                assert!(
                    *version > expected.acked_version,
                    "round {round}: {key}: an unacknowledged write at version {version} is not \
                     newer than the acknowledged version {}",
                    expected.acked_version
                );
                true
            }
            _ => panic!(
                "round {round}: {key}: found {found:?}, but the last acknowledged state is \
                 {:?} and the write in flight {:?}",
                expected.acked, expected.in_flight
            ),
        };
        if let Some((version, _)) = &found {
            highest = highest.max(*version);
        }
        let mut record = record.lock().expect("record");
        let entry = record.get_mut(&key).expect("recorded");
        if in_flight_landed {
            landed += 1;
            entry.acked = found.clone();
            if let Some((version, _)) = &found {
                entry.acked_version = *version;
            }
        }
        entry.in_flight = None;
    }
    highest = highest.max(
        record
            .lock()
            .expect("record")
            .values()
            .map(|r| r.acked_version)
            .max()
            .unwrap_or(0),
    );
    eprintln!("crash round {round}: verified; {landed} in-flight writes had landed");
    highest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    crash_rounds(&[]).await;
}

/// Under `fsync = never` each request writes its own record: a process crash must still lose
/// nothing acknowledged (only an OS crash may).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_fsync_never_loses_nothing_acknowledged() {
    crash_rounds(&["--fsync", "never"]).await;
}

async fn crash_rounds(flags: &[&str]) {
    let seed = std::env::var("HEXKV_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    eprintln!("crash test seed {seed} (set HEXKV_CRASH_SEED to repeat another)");
    let mut rng = StdRng::seed_from_u64(seed);
    let (_tmp, data) = data_dir();
    // Compact often, so some kills land in the middle of a compaction.
    let env = [("HEXKV_STORE__MEMORY__COMPACTION__MIN_LOG_BYTES", "65536")];
    let record: Record = Arc::default();
    let http = Client::new();
    // Build the binary (if this is the suite's first use of it) before the time budget starts.
    hexkv_e2e::hexkv_bin();
    let started = Instant::now();
    let mut rounds = 0;
    while rounds < ROUNDS && started.elapsed() < TIME_BUDGET {
        let server = Server::start(&data, flags, &env);
        if rounds > 0 {
            let highest = verify(&http, &server, &record, rounds).await;
            // Versions continue above everything that survived.
            let (status, version) =
                crate::put(&http, &server, "probe", b"after restart".to_vec()).await;
            assert!(status.is_success());
            assert!(
                version.expect("ETag") > highest,
                "versions went back after a crash"
            );
        }
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                tokio::spawn(client_loop(
                    c,
                    server.url(""),
                    Arc::clone(&record),
                    seed,
                    rounds,
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
        server.kill9();
        for client in clients {
            client.await.expect("client");
        }
        rounds += 1;
    }
    let server = Server::start(&data, flags, &env);
    verify(&http, &server, &record, rounds).await;
    let snapshots = std::fs::read_dir(&data)
        .expect("data dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        })
        .count();
    eprintln!(
        "crash test {flags:?}: {rounds} kills survived; snapshots in the data directory: {snapshots}"
    );
    assert!(rounds >= 3, "too few rounds ran in the time budget");
}
