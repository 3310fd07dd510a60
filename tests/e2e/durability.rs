//! Durability of the real binary: restarts, `kill -9` under load, torn and corrupted logs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hexkv_e2e::Server;
use reqwest::{Client, StatusCode};
use tokio::sync::Mutex;

use crate::{data_dir, get, put};

#[tokio::test]
async fn restart_keeps_data_and_versions() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let client = Client::new();
    let mut written = Vec::new();
    for i in 0..20 {
        let key = format!("k{}", i % 7);
        let value = format!("value {i}").into_bytes();
        let (status, version) = put(&client, &server, &key, value.clone()).await;
        assert!(status.is_success());
        written.push((key, version.unwrap(), value));
    }
    assert!(server.terminate().success());

    let server = Server::start(&data, &[], &[]);
    let mut latest: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
    for (key, version, value) in written {
        latest.insert(key, (version, value));
    }
    let highest = latest.values().map(|(v, _)| *v).max().unwrap();
    for (key, expected) in &latest {
        assert_eq!(get(&client, &server, key).await.as_ref(), Some(expected));
    }
    let (_, next) = put(&client, &server, "after-restart", b"x".to_vec()).await;
    assert!(next.unwrap() > highest, "versions continue after a restart");
}

/// Writers PUT as fast as they can; the server is killed with SIGKILL mid-stream. After a
/// restart, every write that was acknowledged is there with its value and version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_loses_no_acknowledged_write() {
    const WRITERS: usize = 16;
    const KILL_AFTER: usize = 400;
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let client = Client::new();
    let acked = Arc::new(Mutex::new(Vec::<(String, u64, Vec<u8>)>::new()));
    let count = Arc::new(AtomicUsize::new(0));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = client.clone();
            let url = server.url("");
            let acked = Arc::clone(&acked);
            let count = Arc::clone(&count);
            tokio::spawn(async move {
                // Bounded: each writer stops after 10 000 writes or at the first failure
                // (the server is gone).
                for i in 0..10_000 {
                    let key = format!("w{w}/{i}");
                    let value = format!("{w}:{i}:{}", "x".repeat(i % 50)).into_bytes();
                    let sent = client
                        .put(format!("{url}/v1/kv/{key}"))
                        .body(value.clone())
                        .send()
                        .await;
                    let Ok(response) = sent else { return };
                    if response.status() != StatusCode::CREATED {
                        return;
                    }
                    let version = crate::etag(&response).expect("ETag");
                    acked.lock().await.push((key, version, value));
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    while count.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill9();
    for w in writers {
        w.await.unwrap();
    }

    let acked = acked.lock().await.clone();
    assert!(acked.len() >= KILL_AFTER);
    let server = Server::start(&data, &[], &[]);
    for (key, version, value) in &acked {
        assert_eq!(
            get(&client, &server, key).await,
            Some((*version, value.clone())),
            "acknowledged write {key} v{version} lost"
        );
    }
}

/// The log segment a new data directory starts with.
const FIRST_SEGMENT: &str = "kv-0000000001.log";

/// The byte offsets of the records in a log file (after the 16-byte header).
fn record_offsets(log: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 16;
    while at + 8 <= log.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(log[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    offsets
}

async fn write_three(data: &std::path::Path) -> Vec<u8> {
    let server = Server::start(data, &[], &[]);
    let client = Client::new();
    for key in ["a", "b", "c"] {
        let (status, _) = put(
            &client,
            &server,
            key,
            format!("value of {key}").into_bytes(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert!(server.terminate().success());
    std::fs::read(data.join(FIRST_SEGMENT)).expect("log")
}

#[tokio::test]
async fn torn_last_record_is_cut_with_a_warning() {
    let (_tmp, data) = data_dir();
    let log = write_three(&data).await;
    let offsets = record_offsets(&log);
    // Cut the last record in half, as a crash in the middle of a write leaves it.
    let torn = offsets[2] + (log.len() - offsets[2]) / 2;
    std::fs::write(data.join(FIRST_SEGMENT), &log[..torn]).unwrap();

    let server = Server::start(&data, &[], &[]);
    let client = Client::new();
    assert!(get(&client, &server, "a").await.is_some());
    assert!(get(&client, &server, "b").await.is_some());
    assert_eq!(get(&client, &server, "c").await, None);
    let logs = server.logs();
    assert!(
        logs.contains("torn record") && logs.contains(r#""level":"WARN""#),
        "expected a warning about the torn record:\n{logs}"
    );
    // The log was cut cleanly: new writes land and survive another restart.
    let (status, _) = put(&client, &server, "d", b"after".to_vec()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(server.terminate().success());
    let server = Server::start(&data, &[], &[]);
    assert_eq!(
        get(&client, &server, "d").await.map(|(_, v)| v),
        Some(b"after".to_vec())
    );
}

#[tokio::test]
async fn corrupted_middle_record_stops_the_start() {
    let (_tmp, data) = data_dir();
    let mut log = write_three(&data).await;
    let offsets = record_offsets(&log);
    log[offsets[1] + 20] ^= 0x55; // a byte inside the second record
    std::fs::write(data.join(FIRST_SEGMENT), &log).unwrap();

    let failure = match Server::try_start(&data, &[], &[]) {
        Ok(_) => panic!("hexkv started on a corrupted log"),
        Err(failure) => failure,
    };
    assert_eq!(failure.status.code(), Some(1));
    let expected = format!("corrupt record at byte offset {}", offsets[1]);
    assert!(
        failure.stderr.contains(&expected) && failure.stderr.contains(FIRST_SEGMENT),
        "the error must name the file and offset:\n{}",
        failure.stderr
    );
    // The file was left untouched for the operator.
    assert_eq!(std::fs::read(data.join(FIRST_SEGMENT)).unwrap(), log);

    // The explicit repair option cuts the log at the damage.
    let server = Server::start(&data, &["--repair-log"], &[]);
    let client = Client::new();
    assert!(get(&client, &server, "a").await.is_some());
    assert_eq!(get(&client, &server, "b").await, None);
    assert_eq!(get(&client, &server, "c").await, None);
}

/// The served store compacts its log by itself, `hexkv compact` does it offline, and a restart
/// loads the snapshot and the log after it with every write in place.
#[tokio::test]
async fn compaction_by_the_service_and_offline_keeps_every_write() {
    let (_tmp, data) = data_dir();
    let env = [("HEXKV_STORE__MEMORY__COMPACTION__MIN_LOG_BYTES", "8192")];
    let server = Server::start(&data, &[], &env);
    let client = Client::new();
    let mut latest: HashMap<String, (u64, Vec<u8>)> = HashMap::new();
    // 300 writes over 10 keys: about 40 KiB of log for 1.3 KiB of data.
    for i in 0..300 {
        let key = format!("k{}", i % 10);
        let value = format!("value {i:0>100}").into_bytes();
        let (status, version) = put(&client, &server, &key, value.clone()).await;
        assert!(status.is_success());
        latest.insert(key, (version.unwrap(), value));
    }
    let metrics = crate::metrics_text(&client, &server).await;
    assert!(
        metrics.contains(r#"hexkv_compactions_total{outcome="ok"}"#),
        "no compaction counted:\n{metrics}"
    );
    assert!(server.terminate().success());
    let snapshots = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".snap"))
            .collect::<Vec<_>>()
    };
    assert_eq!(snapshots(&data).len(), 1);

    // Offline: one more snapshot replaces the first, and names itself.
    let out = hexkv_e2e::run_hexkv(&["compact", "--data-dir", data.to_str().unwrap()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(".snap: 10 keys"), "{stdout}");
    assert_eq!(snapshots(&data).len(), 1);

    let server = Server::start(&data, &[], &env);
    for (key, expected) in &latest {
        assert_eq!(get(&client, &server, key).await.as_ref(), Some(expected));
    }
    let logs = server.logs();
    assert!(
        logs.contains("store opened") && logs.contains(r#""snapshot_keys":10"#),
        "start-up must load the snapshot:\n{logs}"
    );
    let highest = latest.values().map(|(v, _)| *v).max().unwrap();
    let (_, next) = put(&client, &server, "after", b"x".to_vec()).await;
    assert!(
        next.unwrap() > highest,
        "versions continue after the snapshot"
    );
}

/// `hexkv compact` refuses a data directory the service holds, and says why.
#[tokio::test]
async fn offline_compaction_refuses_a_running_service() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let out = hexkv_e2e::run_hexkv(&["compact", "--data-dir", data.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another hexkv"), "{stderr}");
    assert!(server.terminate().success());
}
