//! A crash at any step of compaction loses nothing.
//!
//! This test binary runs itself as a child process once per compaction step. The child opens a
//! durable store, writes, then compacts while four writers keep writing; a failpoint (the `fail`
//! crate, compiled in for this crate's tests) aborts the child at the chosen step. The child prints
//! every write the store acknowledged. The parent then reopens the directory and checks that every
//! acknowledged write is there with its version, that nothing unacknowledged appears out of
//! order, that no temporary file is left, and that the store can compact and reopen again.
//!
//! It also checks, in-process, that a compaction that fails (an injected write error) leaves the
//! store working and the directory unchanged for start-up.
//!
//! A custom harness (`harness = false`), because the child must be this same binary.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use hexkv_core::{Key, KvStore, Precondition, Value};
use hexkv_store_memory::{CompactionPolicy, DurableOptions, MemoryStore};

const STEP_VAR: &str = "HEXKV_CRASH_STEP";
const DIR_VAR: &str = "HEXKV_CRASH_DIR";

/// Every failpoint of compaction, in the order they are passed.
const STEPS: &[&str] = &[
    "compaction::rotated",
    "compaction::snapshot-partial",
    "compaction::snapshot-synced",
    "compaction::snapshot-renamed",
    "compaction::before-cleanup",
    "compaction::cleanup-partial",
];

/// The signal `std::process::abort` raises.
const SIGABRT: i32 = 6;
const KEYS: usize = 3000;
const WRITERS: usize = 4;

fn main() {
    if let (Ok(step), Ok(dir)) = (std::env::var(STEP_VAR), std::env::var(DIR_VAR)) {
        child(&step, Path::new(&dir));
        return;
    }
    for step in STEPS {
        crash_at(step);
        println!("compaction_crash: crash at {step}: nothing lost");
    }
    failed_compaction_changes_nothing();
    println!("compaction_crash: failed compaction: store unharmed");
}

fn options(dir: &Path) -> DurableOptions {
    let mut options = DurableOptions::new(dir);
    options.compaction = CompactionPolicy {
        automatic: false,
        ..CompactionPolicy::default()
    };
    options
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn key(i: usize) -> Key {
    Key::new(format!("key/{i:05}")).expect("key")
}

/// The value of the `n`th write to key `i`: which write it was can be read back.
fn value(i: usize, n: u64) -> Value {
    Value::from(format!("{i}#{n}#{}", "x".repeat(i % 97)).into_bytes())
}

fn write_number(value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).expect("utf-8 value");
    text.split('#').nth(1).expect("n").parse().expect("number")
}

/// Writes, prints each acknowledged write as `put KEY N VERSION` or `del KEY N VERSION`, and
/// compacts while writers go on; the failpoint at `step` aborts the process.
fn child(step: &str, dir: &Path) {
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let ack = move |line: String| {
        let mut out = out.lock().expect("stdout");
        writeln!(out, "{line}").expect("write");
        out.flush().expect("flush");
    };
    runtime().block_on(async move {
        let (store, _) = MemoryStore::open(&options(dir)).expect("open");
        let store = Arc::new(store);
        // Two rounds over every key, and every seventh deleted: a log with history to compact.
        for n in 0..2u64 {
            for i in 0..KEYS {
                let outcome = store
                    .put(key(i), value(i, n), Precondition::None)
                    .await
                    .expect("put");
                ack(format!("put {i} {n} {}", outcome.version.get()));
            }
        }
        for i in (0..KEYS).step_by(7) {
            if let hexkv_core::DeleteOutcome::Deleted { version } = store
                .delete(&key(i), Precondition::None)
                .await
                .expect("delete")
            {
                ack(format!("del {i} 2 {}", version.get()));
            }
        }
        // Writers that keep going while the compaction runs and when the process dies.
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            let ack = ack.clone();
            tokio::spawn(async move {
                for n in 3u64.. {
                    let i = (w * 7919 + n as usize * 13) % KEYS;
                    let outcome = store
                        .put(key(i), value(i, n), Precondition::None)
                        .await
                        .expect("put");
                    ack(format!("put {i} {n} {}", outcome.version.get()));
                }
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        fail::cfg_callback(step, || std::process::abort()).expect("failpoint");
        let report = store.compact().await;
        // Reaching here means the failpoint was never passed: the parent fails the test.
        eprintln!("compaction finished without reaching {step}: {report:?}");
    });
}

/// The newest acknowledged write to each key: (write number, version, deleted).
type Acked = HashMap<usize, (u64, u64, bool)>;

fn parse_acks(stdout: &str) -> Acked {
    let mut acked = Acked::new();
    for line in stdout.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [op, i, n, version] = parts[..] else {
            panic!("unexpected child output: {line}");
        };
        let (i, n, version): (usize, u64, u64) = (
            i.parse().unwrap(),
            n.parse().unwrap(),
            version.parse().unwrap(),
        );
        let newest = acked.entry(i).or_insert((n, version, op == "del"));
        if version >= newest.1 {
            *newest = (n, version, op == "del");
        }
    }
    acked
}

fn crash_at(step: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(std::env::current_exe().expect("own path"))
        .env(STEP_VAR, step)
        .env(DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run the child");
    assert_eq!(
        output.status.signal(),
        Some(SIGABRT),
        "the child must die at {step}; it ended with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let acked = parse_acks(&String::from_utf8_lossy(&output.stdout));
    assert!(acked.len() >= KEYS, "the child acknowledged too little");
    runtime().block_on(async {
        verify(dir.path(), &acked, step).await;
        // The directory the crash left must also compact and reopen.
        let (store, _) = MemoryStore::open(&options(dir.path())).expect("reopen");
        store.compact().await.expect("compact after recovery");
        store.close().await.expect("close");
        drop(store);
        verify(dir.path(), &acked, step).await;
    });
}

/// Reopens `dir` and checks it against the acknowledged writes.
async fn verify(dir: &Path, acked: &Acked, step: &str) {
    let (store, report) = MemoryStore::open(&options(dir))
        .unwrap_or_else(|e| panic!("reopen after a crash at {step}: {e}"));
    for (&i, &(n, version, deleted)) in acked {
        match store.get(&key(i)).await.expect("get") {
            // Absent: the acknowledged delete is the newest write to it that survived.
            None => assert!(
                deleted,
                "{step}: key {i} lost (last acknowledged write {n} at version {version})"
            ),
            Some(entry) => {
                let found = write_number(entry.value.as_bytes());
                assert!(
                    entry.version.get() >= version,
                    "{step}: key {i} went back from version {version} to {}",
                    entry.version
                );
                if entry.version.get() == version {
                    assert!(!deleted, "{step}: key {i} deleted at {version} but present");
                    assert_eq!(found, n, "{step}: key {i} at version {version}");
                } else {
                    // A write logged but not yet acknowledged when the process died: allowed,
                    // as long as it is a later write of this key.
                    assert!(found >= n, "{step}: key {i} holds an older write");
                    assert_eq!(entry.value, value(i, found), "{step}: key {i} value");
                }
            }
        }
    }
    let max_acked = acked.values().map(|a| a.1).max().unwrap_or(0);
    assert!(
        report.last_version.get() >= max_acked,
        "{step}: versions went back"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "{step}: temporary files left: {leftovers:?}"
    );
    store.close().await.expect("close");
}

/// An injected write failure in the snapshot: the compaction reports it, writes go on, nothing
/// is left behind, and the next compaction succeeds.
fn failed_compaction_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    runtime().block_on(async {
        let (store, _) = MemoryStore::open(&options(dir.path())).expect("open");
        for i in 0..500 {
            store
                .put(key(i), value(i, 0), Precondition::None)
                .await
                .expect("put");
        }
        fail::cfg("compaction::snapshot-write", "return").expect("failpoint");
        let err = store.compact().await.expect_err("injected failure");
        assert!(err.to_string().contains("injected"), "{err}");
        fail::remove("compaction::snapshot-write");
        store
            .check()
            .await
            .expect("healthy after a failed compaction");
        store
            .put(key(0), value(0, 1), Precondition::None)
            .await
            .expect("writes go on");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".snap") || n.ends_with(".tmp")),
            "{names:?}"
        );
        let report = store.compact().await.expect("compaction").expect("durable");
        assert_eq!(report.entries, 500);
        store.close().await.expect("close");
        drop(store);
        let (store, opened) = MemoryStore::open(&options(dir.path())).expect("reopen");
        assert_eq!(opened.snapshot.expect("snapshot loaded").entries, 500);
        assert_eq!(opened.keys, 500);
        let entry = store.get(&key(0)).await.expect("get").expect("present");
        assert_eq!(entry.value, value(0, 1));
    });
}
