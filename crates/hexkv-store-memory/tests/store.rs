//! The `KvStore` contract and the model test, run against both modes of the memory store.

use std::sync::Arc;

use hexkv_core::KvStore;
use hexkv_store_memory::{DurableOptions, FsyncPolicy, MemoryStore};
use hexkv_testkit::{StoreUnderTest, model};
use proptest::prelude::*;

mod ephemeral {
    use super::*;

    async fn store() -> StoreUnderTest {
        StoreUnderTest::new(MemoryStore::ephemeral(4), ())
    }

    hexkv_testkit::store_contract_tests!(store);
}

mod durable {
    use super::*;

    async fn store() -> StoreUnderTest {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = MemoryStore::open(&DurableOptions::new(dir.path())).expect("open");
        StoreUnderTest::new(store, dir)
    }

    hexkv_testkit::store_contract_tests!(store);
}

mod durable_interval {
    use super::*;

    async fn store() -> StoreUnderTest {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DurableOptions::new(dir.path());
        options.fsync = FsyncPolicy::Interval;
        options.fsync_interval = std::time::Duration::from_millis(5);
        let (store, _) = MemoryStore::open(&options).expect("open");
        StoreUnderTest::new(store, dir)
    }

    hexkv_testkit::store_contract_tests!(store);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn ephemeral_store_agrees_with_the_model(ops in model::operations(false, 60)) {
        runtime().block_on(model::run(&ops, || async {
            Arc::new(MemoryStore::ephemeral(2)) as Arc<dyn KvStore>
        })).map_err(TestCaseError::fail)?;
    }

    /// With compaction after every batch (or write, when writers write their own records),
    /// snapshots and their tails must replay to the model.
    #[test]
    fn compacting_store_agrees_with_the_model_across_reopens(
        ops in model::operations(true, 60),
        fsync in prop_oneof![
            Just(FsyncPolicy::Always),
            Just(FsyncPolicy::Never),
            Just(FsyncPolicy::Interval),
        ],
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DurableOptions::new(dir.path());
        options.fsync = fsync;
        options.fsync_interval = std::time::Duration::from_millis(1);
        options.shards = 2;
        options.compaction = hexkv_store_memory::CompactionPolicy {
            automatic: true,
            factor: 1,
            min_log_bytes: 0,
        };
        runtime().block_on(model::run(&ops, || {
            let options = options.clone();
            async move {
                let (store, _) = MemoryStore::open(&options).expect("open");
                Arc::new(store) as Arc<dyn KvStore>
            }
        })).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn durable_store_agrees_with_the_model_across_reopens(
        ops in model::operations(true, 60),
        fsync in prop_oneof![
            Just(FsyncPolicy::Always),
            Just(FsyncPolicy::Never),
            Just(FsyncPolicy::Interval),
        ],
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DurableOptions::new(dir.path());
        options.fsync = fsync;
        options.fsync_interval = std::time::Duration::from_millis(1);
        options.shards = 2;
        runtime().block_on(model::run(&ops, || {
            let options = options.clone();
            async move {
                let (store, _) = MemoryStore::open(&options).expect("open");
                Arc::new(store) as Arc<dyn KvStore>
            }
        })).map_err(TestCaseError::fail)?;
    }
}

/// Versions continue after a restart, and the data is all there.
#[tokio::test]
async fn reopen_keeps_data_and_versions() {
    use hexkv_core::{Key, Precondition, Value};
    let dir = tempfile::tempdir().expect("temp dir");
    let options = DurableOptions::new(dir.path());
    let (store, report) = MemoryStore::open(&options).expect("open");
    assert_eq!((report.records, report.keys), (0, 0));
    let mut last = None;
    for i in 0..100u32 {
        let key = Key::new(format!("k{}", i % 10)).expect("key");
        last = Some(
            store
                .put(
                    key,
                    Value::from(i.to_le_bytes().to_vec()),
                    Precondition::None,
                )
                .await
                .expect("put")
                .version,
        );
    }
    store.close().await.expect("close");
    drop(store);

    let (store, report) = MemoryStore::open(&options).expect("reopen");
    assert_eq!(report.records, 100);
    assert_eq!(report.keys, 10);
    assert_eq!(Some(report.last_version), last);
    let entry = store
        .get(&Key::new("k9").expect("key"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(entry.value.as_bytes(), 99u32.to_le_bytes());
    let next = store
        .put(
            Key::new("new").expect("key"),
            Value::from("x"),
            Precondition::None,
        )
        .await
        .expect("put")
        .version;
    assert!(Some(next) > last);
}

mod compaction {
    use std::path::Path;

    use hexkv_core::{Key, KvStore, Precondition, Value};
    use hexkv_store_memory::{
        CompactionPolicy, DurableOptions, FsyncPolicy, MemoryStore, OpenError, segment_file_name,
        snapshot_file_name,
    };

    /// Batches synced by the flusher, and writers writing their own records.
    fn every_policy() -> [FsyncPolicy; 3] {
        [
            FsyncPolicy::Always,
            FsyncPolicy::Never,
            FsyncPolicy::Interval,
        ]
    }

    fn key(i: usize) -> Key {
        Key::new(format!("k{i:04}")).expect("key")
    }

    fn eager(dir: &Path) -> DurableOptions {
        let mut options = DurableOptions::new(dir);
        options.compaction = CompactionPolicy {
            automatic: true,
            factor: 2,
            min_log_bytes: 16 * 1024,
        };
        options
    }

    fn files(dir: &Path, suffix: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(suffix))
            .collect();
        names.sort();
        names
    }

    /// The bytes of the files ending in `suffix` (a file removed meanwhile counts as empty).
    fn size_of(dir: &Path, suffix: &str) -> u64 {
        files(dir, suffix)
            .iter()
            .filter_map(|n| std::fs::metadata(dir.join(n)).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Overwrites of a few keys make a log many times the data: automatic compaction keeps it
    /// within the policy's bound, and a reopen loads the snapshot and the tail.
    #[tokio::test]
    async fn automatic_compaction_bounds_the_log_and_reopen_agrees() {
        for fsync in every_policy() {
            automatic_compaction(fsync).await;
        }
    }

    async fn automatic_compaction(fsync: FsyncPolicy) {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = DurableOptions {
            fsync,
            fsync_interval: std::time::Duration::from_millis(1),
            ..eager(dir.path())
        };
        let (store, _) = MemoryStore::open(&options).expect("open");
        let mut last = None;
        // 20 keys × 100-byte values ≈ 3 KiB of data; 2 000 writes ≈ 260 KiB of log.
        for n in 0..2000usize {
            let value = Value::from(vec![(n % 251) as u8; 100]);
            last = Some(
                store
                    .put(key(n % 20), value, Precondition::None)
                    .await
                    .expect("put")
                    .version,
            );
        }
        store
            .delete(&key(0), Precondition::None)
            .await
            .expect("delete");
        // Writes that wait for no sync can outrun the compaction thread (the whole loop takes a
        // few milliseconds under `never`); compactions go on after the writes stop until the
        // log is due no more. Give them up to ten seconds. (Under `always` the segment also
        // holds zeros written ahead, so its size says nothing before the close trims them.)
        for _ in 0..2000 {
            if fsync == FsyncPolicy::Always {
                break;
            }
            if size_of(dir.path(), ".log") < 3 * 16 * 1024 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // A compaction may still be running: close waits for it (or cancels it safely).
        store.close().await.expect("close");
        drop(store);
        assert!(
            !files(dir.path(), ".snap").is_empty(),
            "{fsync:?}: no snapshot in {:?}",
            files(dir.path(), "")
        );
        let log = size_of(dir.path(), ".log");
        assert!(
            log < 3 * 16 * 1024,
            "{fsync:?}: log of {log} bytes not bounded by compaction"
        );

        let (store, report) = MemoryStore::open(&options).expect("reopen");
        assert!(report.snapshot.is_some());
        assert_eq!(report.keys, 19);
        assert!(report.last_version > last.expect("wrote"));
        assert_eq!(store.get(&key(0)).await.expect("get"), None);
        let entry = store.get(&key(19)).await.expect("get").expect("present");
        assert_eq!(entry.value.as_bytes(), [(1999 % 251) as u8; 100]);
        let next = store
            .put(key(1), Value::from("after"), Precondition::None)
            .await
            .expect("put")
            .version;
        assert!(next > report.last_version, "versions continue after reopen");
    }

    /// Reads and compare-and-swap writes go on while compactions run, and every acknowledged
    /// write is found after a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn manual_compactions_under_concurrent_writes_lose_nothing() {
        for fsync in every_policy() {
            manual_compactions(fsync).await;
        }
    }

    async fn manual_compactions(fsync: FsyncPolicy) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DurableOptions::new(dir.path());
        options.fsync = fsync;
        options.fsync_interval = std::time::Duration::from_millis(1);
        options.compaction.automatic = false;
        let (store, _) = MemoryStore::open(&options).expect("open");
        let store = std::sync::Arc::new(store);
        let mut writers = Vec::new();
        for w in 0..4usize {
            let store = std::sync::Arc::clone(&store);
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0..400usize {
                    let k = key(w * 1000 + n % 50);
                    let current = store.get(&k).await.expect("get").map(|e| e.version);
                    let precondition = current.map_or(Precondition::Absent, Precondition::Version);
                    let outcome = store
                        .put(
                            k.clone(),
                            Value::from(n.to_string().into_bytes()),
                            precondition,
                        )
                        .await
                        .expect("only this writer writes its keys");
                    acked.push((k, n, outcome.version));
                }
                acked
            }));
        }
        let mut reports = Vec::new();
        for _ in 0..5 {
            reports.push(store.compact().await.expect("compact").expect("durable"));
            tokio::task::yield_now().await;
        }
        let mut newest = std::collections::HashMap::new();
        for writer in writers {
            for (k, n, version) in writer.await.expect("writer") {
                newest.insert(k, (n, version));
            }
        }
        assert!(
            reports
                .windows(2)
                .all(|w| w[0].covered_version <= w[1].covered_version)
        );
        store.close().await.expect("close");
        drop(store);
        assert_eq!(
            files(dir.path(), ".snap").len(),
            1,
            "{fsync:?}: older snapshots removed"
        );

        let (store, report) = MemoryStore::open(&options).expect("reopen");
        assert_eq!(report.keys, newest.len());
        for (k, (n, version)) in newest {
            let entry = store.get(&k).await.expect("get").expect("present");
            assert_eq!(entry.version, version, "{k}");
            assert_eq!(entry.value.as_bytes(), n.to_string().as_bytes(), "{k}");
        }
    }

    /// A data directory of earlier builds (one `kv.log`) is taken over as segment 1.
    #[tokio::test]
    async fn a_single_file_log_is_taken_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = DurableOptions::new(dir.path());
        let (store, _) = MemoryStore::open(&options).expect("open");
        store
            .put(key(1), Value::from("one"), Precondition::None)
            .await
            .expect("put");
        store.close().await.expect("close");
        drop(store);
        std::fs::rename(
            dir.path().join(segment_file_name(1)),
            dir.path().join("kv.log"),
        )
        .expect("rename");

        let (store, report) = MemoryStore::open(&options).expect("reopen");
        assert_eq!(report.keys, 1);
        assert!(!dir.path().join("kv.log").exists());
        assert!(dir.path().join(segment_file_name(1)).exists());
        assert!(store.get(&key(1)).await.expect("get").is_some());
    }

    /// A snapshot copied alone into an empty directory (a backup) opens with all its data.
    #[tokio::test]
    async fn a_snapshot_alone_restores_the_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DurableOptions::new(dir.path());
        options.compaction.automatic = false;
        let (store, _) = MemoryStore::open(&options).expect("open");
        for i in 0..100 {
            store
                .put(key(i), Value::from("v"), Precondition::None)
                .await
                .expect("put");
        }
        let report = store.compact().await.expect("compact").expect("durable");
        store.close().await.expect("close");
        drop(store);

        let restored = tempfile::tempdir().expect("temp dir");
        let name = report.snapshot.file_name().expect("file name");
        std::fs::copy(&report.snapshot, restored.path().join(name)).expect("copy");
        let mut options = DurableOptions::new(restored.path());
        options.compaction.automatic = false;
        let (store, opened) = MemoryStore::open(&options).expect("open the backup");
        assert_eq!(opened.keys, 100);
        assert_eq!(opened.last_version, report.covered_version);
        let next = store
            .put(key(0), Value::from("w"), Precondition::None)
            .await
            .expect("put");
        assert!(next.version > report.covered_version);
    }

    /// A damaged snapshot, or a gap in the log, stops the start with the file named.
    #[tokio::test]
    async fn damage_to_a_snapshot_or_a_missing_segment_stops_the_start() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DurableOptions::new(dir.path());
        options.compaction.automatic = false;
        let (store, _) = MemoryStore::open(&options).expect("open");
        for i in 0..10 {
            store
                .put(key(i), Value::from("v"), Precondition::None)
                .await
                .expect("put");
        }
        let report = store.compact().await.expect("compact").expect("durable");
        store
            .put(key(0), Value::from("tail"), Precondition::None)
            .await
            .expect("put");
        store.close().await.expect("close");
        drop(store);
        // The snapshot is `kv-2.snap`; segment 2 holds the tail.
        assert_eq!(report.snapshot, dir.path().join(snapshot_file_name(2)));

        let mut bytes = std::fs::read(&report.snapshot).expect("read");
        bytes[40] ^= 0x01;
        std::fs::write(&report.snapshot, &bytes).expect("write");
        match MemoryStore::open(&options).map(|_| ()) {
            Err(OpenError::BadSnapshot { path, .. }) => assert_eq!(path, report.snapshot),
            other => panic!("expected a damaged snapshot, got {other:?}"),
        }
        bytes[40] ^= 0x01;
        std::fs::write(&report.snapshot, &bytes).expect("write");

        // Segment 3 exists only if another segment follows; make a gap by renaming 2 to 3.
        std::fs::rename(
            dir.path().join(segment_file_name(2)),
            dir.path().join(segment_file_name(3)),
        )
        .expect("rename");
        match MemoryStore::open(&options).map(|_| ()) {
            Err(OpenError::MissingSegment { path }) => {
                assert_eq!(path, dir.path().join(segment_file_name(2)))
            }
            other => panic!("expected a missing segment, got {other:?}"),
        }
    }
}
