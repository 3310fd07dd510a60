//! Micro-benchmarks of the embedded store's hot paths (`cargo bench -p hexkv-store-memory`):
//! key parsing, point reads and writes on the sharded map against a single-lock map under
//! contention, a page of a prefix listing, durable writes by group-commit batch size, and the
//! start-up replay of a log. Results are recorded in docs/performance.md; nothing here is a test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hexkv_core::{Key, KvStore, ListQuery, Precondition, Value};
use hexkv_store_memory::{DurableOptions, FsyncPolicy, MemoryStore};

fn key(i: u64) -> Key {
    Key::new(format!("bench/{i:010}")).expect("a valid key")
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a runtime")
}

fn parse_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("key");
    let text = "users/42/settings/theme".to_owned();
    group.bench_function("parse 23 bytes", |b| {
        b.iter(|| Key::new(std::hint::black_box(text.clone())).unwrap())
    });
    let long = "k".repeat(1000);
    group.bench_function("parse 1000 bytes", |b| {
        b.iter(|| Key::new(std::hint::black_box(long.clone())).unwrap())
    });
    group.finish();
}

/// `tasks` tasks each doing `per_task` reads (or writes) of random keys among `keys`.
async fn contend(store: Arc<MemoryStore>, tasks: u64, per_task: u64, keys: u64, write: bool) {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let store = Arc::clone(&store);
        set.spawn(async move {
            let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..per_task {
                // xorshift: cheap, reproducible spread over the keys.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = key(x % keys);
                if write {
                    store
                        .put(k, Value::from("0123456789"), Precondition::None)
                        .await
                        .unwrap();
                } else {
                    std::hint::black_box(store.get(&k).await.unwrap());
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
}

fn sharded_against_one_lock(c: &mut Criterion) {
    const KEYS: u64 = 10_000;
    const TASKS: u64 = 8;
    const PER_TASK: u64 = 2_000;
    let rt = runtime(2);
    let mut group = c.benchmark_group("map under contention (8 tasks, 2 threads)");
    for shards in [1, 64] {
        group.throughput(Throughput::Elements(TASKS * PER_TASK));
        let store = Arc::new(MemoryStore::ephemeral(shards));
        rt.block_on(contend(Arc::clone(&store), 1, KEYS * 3, KEYS, true));
        let label = if shards == 1 { "one lock" } else { "64 shards" };
        group.bench_function(BenchmarkId::new("get", label), |b| {
            b.to_async(&rt)
                .iter(|| contend(Arc::clone(&store), TASKS, PER_TASK, KEYS, false))
        });
        group.bench_function(BenchmarkId::new("put", label), |b| {
            b.to_async(&rt)
                .iter(|| contend(Arc::clone(&store), TASKS, PER_TASK, KEYS, true))
        });
        // One page, one caller: throughput in keys listed.
        group.throughput(Throughput::Elements(100));
        let query = ListQuery::new("bench/00000", Some(100), None).unwrap();
        group.bench_function(BenchmarkId::new("list 100 of 10 000", label), |b| {
            b.to_async(&rt)
                .iter(|| async { std::hint::black_box(store.list(&query).await.unwrap()) })
        });
    }
    group.finish();
}

/// A durable store with `fsync = never` (no disk wait), 64 shards, compaction only on request.
fn options(dir: &std::path::Path) -> DurableOptions {
    let mut options = DurableOptions::new(dir);
    options.fsync = FsyncPolicy::Never;
    options.shards = 64;
    options.compaction.automatic = false;
    options
}

/// Durable writes with `fsync = never` (no disk wait), `concurrent` writers at once: how the
/// log's group commit turns concurrency into larger batches.
fn group_commit(c: &mut Criterion) {
    let rt = runtime(2);
    let mut group = c.benchmark_group("durable put, fsync never");
    for concurrent in [1u64, 16, 256] {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = MemoryStore::open(&options(dir.path())).unwrap();
        let store = Arc::new(store);
        group.throughput(Throughput::Elements(concurrent * 64));
        group.bench_function(BenchmarkId::new("writers", concurrent), |b| {
            b.to_async(&rt)
                .iter(|| contend(Arc::clone(&store), concurrent, 64, 100_000, true))
        });
        rt.block_on(store.close()).unwrap();
    }
    group.finish();
}

/// Start-up: replaying a log of 100 000 records (16-byte keys, 100-byte values).
fn replay(c: &mut Criterion) {
    const RECORDS: u64 = 100_000;
    let rt = runtime(2);
    let dir = tempfile::tempdir().unwrap();
    let options = options(dir.path());
    {
        let (store, _) = MemoryStore::open(&options).unwrap();
        let store = Arc::new(store);
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for t in 0..64 {
                let store = Arc::clone(&store);
                set.spawn(async move {
                    for i in (t..RECORDS).step_by(64) {
                        let k = Key::new(format!("k{i:015}")).unwrap();
                        store
                            .put(k, Value::from(vec![b'v'; 100]), Precondition::None)
                            .await
                            .unwrap();
                    }
                });
            }
            while set.join_next().await.is_some() {}
            store.close().await.unwrap();
        });
    }
    let mut group = c.benchmark_group("start-up");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("replay 100 000 records", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let (store, report) = MemoryStore::open(&options).unwrap();
                total += started.elapsed();
                assert_eq!(report.records, RECORDS);
                rt.block_on(store.close()).unwrap();
            }
            total
        })
    });

    // The same data compacted: what a snapshot costs to write, and to start from.
    let (store, _) = MemoryStore::open(&options).unwrap();
    group.bench_function("compact 100 000 keys", |b| {
        b.to_async(&rt).iter(|| async {
            let report = store.compact().await.unwrap().unwrap();
            assert_eq!(report.entries, RECORDS);
        })
    });
    rt.block_on(store.close()).unwrap();
    drop(store);
    group.bench_function("load a snapshot of 100 000 keys", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let started = Instant::now();
                let (store, report) = MemoryStore::open(&options).unwrap();
                total += started.elapsed();
                assert_eq!(report.snapshot.map(|s| s.entries), Some(RECORDS));
                assert_eq!(report.records, 0);
                rt.block_on(store.close()).unwrap();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    parse_keys,
    sharded_against_one_lock,
    group_commit,
    replay
);
criterion_main!(benches);
