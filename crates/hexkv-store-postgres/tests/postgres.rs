//! PostgreSQL-specific behaviour against a real server: start-up (waiting, refusing, the schema),
//! timeouts, the database going away and coming back, and the model-based property test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hexkv_core::{Key, KvStore, Precondition, StoreError, Value, Version};
use hexkv_store_postgres::{ConnectError, PostgresOptions, PostgresStore};
use hexkv_testkit::model;
use hexkv_testkit::postgres::{TestDatabase, database, dedicated};
use proptest::prelude::*;
use sqlx::Connection as _;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn options(db: &TestDatabase) -> PostgresOptions {
    PostgresOptions::new(db.url())
}

async fn connect(options: PostgresOptions) -> PostgresStore {
    PostgresStore::connect(&options).await.unwrap()
}

/// Another session, in a transaction holding `key`'s row lock until [`unlock`].
async fn lock_row(db: &TestDatabase, key: &str) -> sqlx::PgConnection {
    let mut other = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT 1 FROM hexkv_entries WHERE key = $1 FOR UPDATE")
        .bind(key)
        .execute(&mut other)
        .await
        .unwrap();
    other
}

async fn unlock(mut other: sqlx::PgConnection) {
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_past_the_statement_timeout_is_unavailable_and_changes_nothing() {
    let Some(db) = database().await else { return };
    let store = connect(PostgresOptions {
        statement_timeout: Duration::from_millis(300),
        ..options(&db)
    })
    .await;
    let written = store
        .put(key("locked"), Value::new("v1"), Precondition::None)
        .await
        .unwrap();

    // Another session holds the row's lock.
    let other = lock_row(&db, "locked").await;

    let started = Instant::now();
    let err = store
        .put(
            key("locked"),
            Value::new("v2"),
            Precondition::Version(written.version),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable { .. }),
        "expected Unavailable, got {err:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    unlock(other).await;

    let entry = store.get(&key("locked")).await.unwrap().unwrap();
    assert_eq!(entry.value.as_bytes(), b"v1");
    assert_eq!(entry.version, written.version);
}

/// With `statement_timeout` 0, hexkv sends no startup option (what a pooler in transaction mode
/// needs): the server's setting applies, here none, and a blocked write waits for the lock
/// instead of being cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_statement_timeout_of_its_own_the_server_s_applies() {
    let Some(db) = database().await else { return };
    let store = connect(PostgresOptions {
        statement_timeout: Duration::ZERO,
        ..options(&db)
    })
    .await;
    let written = store
        .put(key("locked"), Value::new("v1"), Precondition::None)
        .await
        .unwrap();
    let other = lock_row(&db, "locked").await;
    let blocked = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .put(
                    key("locked"),
                    Value::new("v2"),
                    Precondition::Version(written.version),
                )
                .await
        }
    });
    // With a timeout of hexkv's (the test above: 300 ms), the server would have cancelled it by
    // now; without one, it is still waiting for the lock.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!blocked.is_finished(), "the blocked write was cut short");
    unlock(other).await;
    blocked.await.unwrap().unwrap();
    assert_eq!(
        store
            .get(&key("locked"))
            .await
            .unwrap()
            .unwrap()
            .value
            .as_bytes(),
        b"v2"
    );
}

/// The id of sqlx's migration lock for database `name` (`pg_advisory_lock`): CRC-32 (ISO HDLC)
/// of the name times sqlx's constant.
fn migration_lock_id(name: &str) -> i64 {
    let mut crc: u32 = !0;
    for byte in name.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    0x3d32_ad9e * i64::from(!crc)
}

/// With `migrate_lock` on, replicas take turns on sqlx's advisory lock; with it off (a pooler in
/// transaction mode, a database without advisory locks) a start does not touch the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_can_run_without_the_advisory_lock() {
    let Some(db) = database().await else { return };
    let mut holder = sqlx::PgConnection::connect(db.url()).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(migration_lock_id(db.name()))
        .execute(&mut holder)
        .await
        .unwrap();
    // On a thread of its own: the start's future borrows its connection in a way `tokio::spawn`
    // cannot take.
    let locking = std::thread::spawn({
        let options = options(&db);
        move || runtime().block_on(async { PostgresStore::connect(&options).await.map(drop) })
    });
    // The start that takes the lock is waiting for ours.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )
        .fetch_one(&mut holder)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the locking start never waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let unlocked = PostgresStore::connect(&PostgresOptions {
        migrate_lock: false,
        ..options(&db)
    })
    .await
    .expect("migrated without the lock");
    unlocked
        .put(key("k"), Value::new("v"), Precondition::None)
        .await
        .unwrap();
    assert!(
        !locking.is_finished(),
        "a start that takes the lock waits for it"
    );
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut holder)
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || locking.join().unwrap())
        .await
        .unwrap()
        .expect("migrated once the lock was free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_can_be_skipped_once_applied() {
    let Some(db) = database().await else { return };
    let skip_migrations = PostgresOptions {
        migrate: false,
        ..options(&db)
    };
    let err = PostgresStore::connect(&skip_migrations).await.unwrap_err();
    assert!(matches!(err, ConnectError::SchemaMissing), "{err}");

    // Applying twice is harmless (replicas starting together take turns).
    PostgresStore::connect(&options(&db)).await.unwrap();
    PostgresStore::connect(&options(&db)).await.unwrap();
    let store = PostgresStore::connect(&skip_migrations).await.unwrap();
    store
        .put(key("k"), Value::new("v"), Precondition::None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_url_fails_at_once_and_never_shows_the_password() {
    // Nobody listens on this port: with no wait, the start fails at once.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("postgres://hexkv:s3cr3t-pw@127.0.0.1:{port}/kv");
    let started = Instant::now();
    let err = PostgresStore::connect(&PostgresOptions::new(&url))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cr3t-pw"), "{text}");

    let err = PostgresStore::connect(&PostgresOptions::new("not a url"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Url(_)), "{err}");
}

/// Stops and restarts a dedicated server: requests fail with `Unavailable` within the acquire
/// timeout while it is down, and the store recovers by itself when it is back. The start waits
/// for a server that comes up late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_rides_out_a_database_restart() {
    let Some((cluster, db)) = dedicated().await else {
        return;
    };
    let opts = PostgresOptions {
        acquire_timeout: Duration::from_secs(2),
        connect_wait: Duration::from_secs(60),
        ..options(&db)
    };
    let store = PostgresStore::connect(&opts).await.unwrap();
    let before = store
        .put(key("k"), Value::new("before"), Precondition::None)
        .await
        .unwrap();

    cluster.stop().unwrap();
    let started = Instant::now();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Unavailable { .. }),
        "expected Unavailable, got {err:?}"
    );
    let err = store
        .put(key("k"), Value::new("while down"), Precondition::None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(store.check().await.is_err());
    // Each failed within the acquire timeout (2 s), with margin for a slow machine.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    // A store starting now waits for the server (connect_wait) instead of failing.
    let restarter = {
        let cluster = Arc::clone(&cluster);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            cluster.start()
        })
    };
    let late = PostgresStore::connect(&opts).await.unwrap();
    restarter.join().unwrap().unwrap();
    late.check().await.unwrap();

    // The first store recovers by itself: its broken connections are replaced.
    let entry = store.get(&key("k")).await.unwrap().unwrap();
    assert_eq!(entry.value.as_bytes(), b"before");
    let after = store
        .put(
            key("k"),
            Value::new("after"),
            Precondition::Version(before.version),
        )
        .await
        .unwrap();
    assert!(after.version > before.version);
    drop(db);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Random operation sequences (with reconnects) agree with a `BTreeMap` model. One database for
/// all cases, emptied before each.
#[test]
fn postgres_agrees_with_the_model_across_reconnects() {
    let rt = runtime();
    let Some(db) = rt.block_on(database()) else {
        return;
    };
    let opts = options(&db);
    rt.block_on(PostgresStore::connect(&opts)).unwrap();
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&model::operations(true, 40), |ops| {
            let rt = runtime();
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
                sqlx::query("TRUNCATE hexkv_entries")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let opts = opts.clone();
                model::run(&ops, move || {
                    let opts = opts.clone();
                    async move {
                        Arc::new(PostgresStore::connect(&opts).await.expect("connect"))
                            as Arc<dyn KvStore>
                    }
                })
                .await
            })
            .map_err(TestCaseError::fail)
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_keep_increasing_across_reconnects() {
    let Some(db) = database().await else { return };
    let first = PostgresStore::connect(&options(&db)).await.unwrap();
    let v1 = first
        .put(key("a"), Value::new("1"), Precondition::None)
        .await
        .unwrap()
        .version;
    first.close().await.unwrap();
    assert!(matches!(
        first.get(&key("a")).await,
        Err(StoreError::Unavailable { .. })
    ));
    let second = PostgresStore::connect(&options(&db)).await.unwrap();
    let v2 = second
        .put(key("b"), Value::new("2"), Precondition::None)
        .await
        .unwrap()
        .version;
    assert!(v2 > v1);
    assert!(v1 >= Version::new(1));
}

/// A request dropped while its statement waits (a client that went away) leaves no half-read
/// reply on a pooled connection: the connection is closed, and every later operation works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_operation_does_not_poison_the_pool() {
    let Some(db) = database().await else { return };
    let store = Arc::new(
        PostgresStore::connect(&PostgresOptions {
            max_connections: 2,
            ..options(&db)
        })
        .await
        .unwrap(),
    );
    let first = store
        .put(key("k"), Value::new("v1"), Precondition::None)
        .await
        .unwrap();

    let other = lock_row(&db, "k").await;
    // The write blocks on the row lock; drop it mid-statement.
    let blocked = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .put(
                    key("k"),
                    Value::new("v2"),
                    Precondition::Version(first.version),
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocked.abort();
    assert!(blocked.await.unwrap_err().is_cancelled());
    unlock(other).await;

    // Many operations through the two-connection pool: none sees a stray reply.
    for i in 0..20 {
        let k = key(&format!("after/{i}"));
        let written = store
            .put(k.clone(), Value::new(format!("{i}")), Precondition::Absent)
            .await
            .unwrap();
        let entry = store.get(&k).await.unwrap().unwrap();
        assert_eq!(entry.version, written.version);
        assert_eq!(entry.value.as_bytes(), format!("{i}").as_bytes());
    }
    // The dropped write may or may not have been applied (the server finishes a statement whose
    // client left), but the key holds one of the two values, with a consistent version.
    let entry = store.get(&key("k")).await.unwrap().unwrap();
    assert!(
        (entry.value.as_bytes() == b"v1" && entry.version == first.version)
            || (entry.value.as_bytes() == b"v2" && entry.version > first.version),
        "{entry:?}"
    );
}

/// Concurrent GETs share statements (read batching), and each still answers its own key with the
/// write acknowledged before it, for keys the batch's `ANY($1)` must match exactly: absent ones,
/// non-ASCII, ones differing only in case or a trailing space.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_share_statements_and_each_sees_its_own_key() {
    let Some(db) = database().await else { return };
    let store = connect(PostgresOptions {
        read_batch: 16,
        read_batch_queries: 1,
        ..options(&db)
    })
    .await;
    let names: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("batch/{i}"),
            1 => format!("Batch/{i}"),
            2 => format!("batch/{i} "),
            _ => format!("batch/é{i}"),
        })
        .collect();
    let mut versions = std::collections::HashMap::new();
    for name in names.iter().filter(|n| !n.ends_with(' ')) {
        let put = store
            .put(
                key(name),
                Value::new(format!("v:{name}")),
                Precondition::None,
            )
            .await
            .unwrap();
        versions.insert(name.clone(), put.version);
    }
    let before = store.batch_stats().0;

    let mut reads = tokio::task::JoinSet::new();
    for round in 0..5 {
        for name in &names {
            let (store, name) = (store.clone(), name.clone());
            reads.spawn(async move {
                let entry = store.get(&key(&name)).await.unwrap();
                (round, name, entry)
            });
        }
    }
    while let Some(done) = reads.join_next().await {
        let (_, name, entry) = done.unwrap();
        match versions.get(&name) {
            Some(version) => {
                let entry = entry.unwrap_or_else(|| panic!("{name:?} not found"));
                assert_eq!(entry.key.as_str(), name);
                assert_eq!(entry.value.as_bytes(), format!("v:{name}").as_bytes());
                assert_eq!(entry.version, *version);
            }
            None => assert!(entry.is_none(), "{name:?} must be absent"),
        }
    }
    let after = store.batch_stats().0;
    let (batches, gets) = (
        after.statements - before.statements,
        after.operations - before.operations,
    );
    assert_eq!(gets, 200);
    assert!(batches < gets, "{batches} statements for {gets} GETs");

    // Writers and readers together: each task reads back what it just wrote.
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..20 {
                let k = key(&format!("rw/{t}"));
                let value = format!("{t}:{i}");
                let put = store
                    .put(k.clone(), Value::new(value.clone()), Precondition::None)
                    .await
                    .unwrap();
                let entry = store.get(&k).await.unwrap().unwrap();
                assert_eq!(entry.value.as_bytes(), value.as_bytes());
                assert_eq!(entry.version, put.version);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_batching_off_every_operation_is_its_own_statement() {
    let Some(db) = database().await else { return };
    let store = connect(PostgresOptions {
        read_batch: 0,
        write_batch: 0,
        ..options(&db)
    })
    .await;
    store
        .put(key("k"), Value::new("v"), Precondition::None)
        .await
        .unwrap();
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let store = store.clone();
        reads.spawn(async move { store.get(&key("k")).await.unwrap().unwrap() });
    }
    while let Some(entry) = reads.join_next().await {
        assert_eq!(entry.unwrap().value.as_bytes(), b"v");
    }
    assert_eq!(store.batch_stats(), Default::default());
}

/// Concurrent unconditional PUTs share upserts (write batching), including several writes to one
/// key: every write gets its own version, each key ends with the value of its greatest version,
/// and exactly one write per key reports that it created the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_share_upserts_and_each_gets_its_own_outcome() {
    let Some(db) = database().await else { return };
    let store = connect(PostgresOptions {
        write_batch: 16,
        write_batch_queries: 1,
        ..options(&db)
    })
    .await;
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        writes.spawn(async move {
            // 50 keys, 4 writes each, so batches hold several writes to one key.
            let name = format!("w/{}", i % 50);
            let value = format!("{name}#{i}");
            let outcome = store
                .put(key(&name), Value::new(value.clone()), Precondition::None)
                .await
                .unwrap();
            (name, value, outcome)
        });
    }
    let mut outcomes = Vec::new();
    while let Some(done) = writes.join_next().await {
        outcomes.push(done.unwrap());
    }
    let mut versions: Vec<_> = outcomes.iter().map(|(_, _, o)| o.version).collect();
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 200, "every write has a version of its own");
    for k in 0..50 {
        let name = format!("w/{k}");
        let mine: Vec<_> = outcomes.iter().filter(|(n, _, _)| *n == name).collect();
        assert_eq!(
            mine.iter().filter(|(_, _, o)| o.created).count(),
            1,
            "{name}"
        );
        let last = mine.iter().max_by_key(|(_, _, o)| o.version).unwrap();
        let first = mine.iter().min_by_key(|(_, _, o)| o.version).unwrap();
        assert!(first.2.created, "{name}: the first write created it");
        let entry = store.get(&key(&name)).await.unwrap().unwrap();
        assert_eq!(entry.value.as_bytes(), last.1.as_bytes(), "{name}");
        assert_eq!(entry.version, last.2.version, "{name}");
    }
    let stats = store.batch_stats().1;
    assert_eq!(stats.operations, 200);
    assert!(stats.statements < 200, "{stats:?}");
}

/// A batched upsert that fails (here: past the statement timeout, on a row another session has
/// locked) fails every write in it, and none of them is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batched_upsert_applies_none_of_its_writes() {
    let Some(db) = database().await else { return };
    let store = connect(PostgresOptions {
        statement_timeout: Duration::from_millis(300),
        write_batch_queries: 1,
        ..options(&db)
    })
    .await;
    store
        .put(key("locked"), Value::new("v1"), Precondition::None)
        .await
        .unwrap();
    let other = lock_row(&db, "locked").await;

    let mut writes = tokio::task::JoinSet::new();
    for name in ["locked", "a", "b", "c", "locked", "d"] {
        let store = store.clone();
        writes.spawn(async move {
            let result = store
                .put(key(name), Value::new("v2"), Precondition::None)
                .await;
            (name, result)
        });
    }
    let mut results = Vec::new();
    while let Some(done) = writes.join_next().await {
        results.push(done.unwrap());
    }
    unlock(other).await;

    let mut failed = 0;
    for (name, result) in results {
        let entry = store.get(&key(name)).await.unwrap();
        match result {
            Ok(outcome) => {
                let entry = entry.unwrap();
                assert_eq!(entry.value.as_bytes(), b"v2", "{name}");
                assert!(entry.version >= outcome.version, "{name}");
            }
            Err(err) => {
                failed += 1;
                assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
                if name != "locked" {
                    assert!(entry.is_none(), "{name} failed but was written");
                }
            }
        }
    }
    assert!(failed >= 2, "both writes to the locked row time out");
    let locked = store.get(&key("locked")).await.unwrap().unwrap();
    assert_eq!(locked.value.as_bytes(), b"v1");
}
