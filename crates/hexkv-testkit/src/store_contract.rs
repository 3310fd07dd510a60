//! The `KvStore` contract suite: one function per behaviour of the port's contract (see
//! [`hexkv_core::KvStore`]). Each takes a fresh, empty store and panics on a violation.
//!
//! Run them all against an adapter with [`crate::store_contract_tests!`].

use std::collections::BTreeSet;
use std::sync::Arc;

use hexkv_core::{
    Cursor, DeleteOutcome, Key, KvStore, ListQuery, Precondition, StoreError, Value, Version,
};

fn key(k: &str) -> Key {
    Key::new(k).expect("test keys are valid")
}

async fn put(store: &dyn KvStore, k: &str, v: &'static str) -> Version {
    store
        .put(key(k), Value::from(v), Precondition::None)
        .await
        .expect("put")
        .version
}

async fn current(store: &dyn KvStore, k: &str) -> Option<Version> {
    store.get(&key(k)).await.expect("get").map(|e| e.version)
}

fn assert_precondition_failed<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    expected_current: Option<Version>,
) {
    match result {
        Err(StoreError::PreconditionFailed { current }) => assert_eq!(
            current, expected_current,
            "PreconditionFailed must carry the current version"
        ),
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
}

/// `get` of a key never written is `None`.
pub async fn get_of_absent_key_is_none(store: Arc<dyn KvStore>) {
    assert_eq!(store.get(&key("nothing/here")).await.expect("get"), None);
}

/// Values come back byte-exact: empty, every byte value, large.
pub async fn put_then_get_round_trips_binary_values(store: Arc<dyn KvStore>) {
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let large: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    for (k, v) in [
        ("empty", Vec::new()),
        ("bytes", all_bytes),
        ("large", large),
        ("ключ/🔑", b"unicode key".to_vec()),
    ] {
        let outcome = store
            .put(key(k), Value::from(v.clone()), Precondition::None)
            .await
            .expect("put");
        let entry = store.get(&key(k)).await.expect("get").expect("present");
        assert_eq!(entry.key, key(k));
        assert_eq!(entry.value.as_bytes(), &v[..], "value of {k:?}");
        assert_eq!(entry.version, outcome.version);
    }
}

/// The first put of a key creates it; the next replaces it with a newer version.
pub async fn put_reports_created_then_replaced(store: Arc<dyn KvStore>) {
    let first = store
        .put(key("k"), Value::from("1"), Precondition::None)
        .await
        .expect("put");
    assert!(first.created);
    let second = store
        .put(key("k"), Value::from("2"), Precondition::None)
        .await
        .expect("put");
    assert!(!second.created);
    assert!(second.version > first.version);
    let entry = store.get(&key("k")).await.expect("get").expect("present");
    assert_eq!(
        (entry.value, entry.version),
        (Value::from("2"), second.version)
    );
}

/// Every write takes a version above every earlier one, whatever the key; deletes are writes.
pub async fn versions_strictly_increase_across_keys_and_deletes(store: Arc<dyn KvStore>) {
    let mut last = Version::new(0);
    for (i, k) in ["a", "b", "a", "c", "b"].iter().enumerate() {
        let v = put(&*store, k, "x").await;
        assert!(v > last, "write {i} got {v}, not above {last}");
        last = v;
        if i % 2 == 1 {
            match store
                .delete(&key(k), Precondition::None)
                .await
                .expect("delete")
            {
                DeleteOutcome::Deleted { version } => {
                    assert!(version > last, "delete got {version}, not above {last}");
                    last = version;
                }
                DeleteOutcome::Absent => panic!("{k} was just written"),
            }
        }
    }
}

/// A delete removes the key; deleting again (or a key never written) succeeds as `Absent`.
pub async fn delete_removes_and_is_idempotent(store: Arc<dyn KvStore>) {
    put(&*store, "k", "v").await;
    assert!(matches!(
        store.delete(&key("k"), Precondition::None).await,
        Ok(DeleteOutcome::Deleted { .. })
    ));
    assert_eq!(store.get(&key("k")).await.expect("get"), None);
    assert_eq!(
        store
            .delete(&key("k"), Precondition::None)
            .await
            .expect("delete"),
        DeleteOutcome::Absent
    );
    assert_eq!(
        store
            .delete(&key("never"), Precondition::None)
            .await
            .expect("delete"),
        DeleteOutcome::Absent
    );
}

/// `Absent` succeeds on an absent key and fails with the current version on a present one.
pub async fn create_only_succeeds_once(store: Arc<dyn KvStore>) {
    let created = store
        .put(key("k"), Value::from("first"), Precondition::Absent)
        .await
        .expect("create");
    assert!(created.created);
    assert_precondition_failed(
        store
            .put(key("k"), Value::from("second"), Precondition::Absent)
            .await,
        Some(created.version),
    );
    // Deleted keys can be created again.
    store
        .delete(&key("k"), Precondition::None)
        .await
        .expect("delete");
    store
        .put(key("k"), Value::from("third"), Precondition::Absent)
        .await
        .expect("create after delete");
}

/// `Version(v)` succeeds only when `v` is the key's current version.
pub async fn compare_and_swap_needs_the_current_version(store: Arc<dyn KvStore>) {
    assert_precondition_failed(
        store
            .put(
                key("k"),
                Value::from("x"),
                Precondition::Version(Version::new(1)),
            )
            .await,
        None,
    );
    let v1 = put(&*store, "k", "one").await;
    let v2 = store
        .put(key("k"), Value::from("two"), Precondition::Version(v1))
        .await
        .expect("swap with the current version")
        .version;
    assert!(v2 > v1);
    assert_precondition_failed(
        store
            .put(key("k"), Value::from("three"), Precondition::Version(v1))
            .await,
        Some(v2),
    );
}

/// A conditional delete needs the current version; on an absent key it fails with `None`.
pub async fn conditional_delete_needs_the_current_version(store: Arc<dyn KvStore>) {
    let v1 = put(&*store, "k", "one").await;
    let v2 = put(&*store, "k", "two").await;
    assert_precondition_failed(
        store.delete(&key("k"), Precondition::Version(v1)).await,
        Some(v2),
    );
    assert!(matches!(
        store.delete(&key("k"), Precondition::Version(v2)).await,
        Ok(DeleteOutcome::Deleted { .. })
    ));
    assert_precondition_failed(
        store.delete(&key("k"), Precondition::Version(v2)).await,
        None,
    );
    // "Delete only if absent" holds on an absent key and deletes nothing.
    assert_eq!(
        store
            .delete(&key("k"), Precondition::Absent)
            .await
            .expect("delete"),
        DeleteOutcome::Absent
    );
}

/// A write whose precondition fails leaves the key exactly as it was.
pub async fn failed_preconditions_change_nothing(store: Arc<dyn KvStore>) {
    let v1 = put(&*store, "k", "kept").await;
    let _ = store
        .put(key("k"), Value::from("no"), Precondition::Absent)
        .await;
    let _ = store
        .put(
            key("k"),
            Value::from("no"),
            Precondition::Version(Version::new(v1.get() + 100)),
        )
        .await;
    let _ = store
        .delete(
            &key("k"),
            Precondition::Version(Version::new(v1.get() + 100)),
        )
        .await;
    let entry = store.get(&key("k")).await.expect("get").expect("present");
    assert_eq!((entry.value, entry.version), (Value::from("kept"), v1));
    // The failed writes took no version a later write could observe as skipped backwards.
    let v2 = put(&*store, "other", "x").await;
    assert!(v2 > v1);
}

/// Listing orders keys by their bytes and keeps only those with the prefix.
pub async fn list_is_ordered_by_key_bytes_and_filtered_by_prefix(store: Arc<dyn KvStore>) {
    let keys = [
        "a", "a/b", "a/c/d", "a0", "B", "b", "é", "a/é", "a/Z", "a/", "ab", "z",
    ];
    for k in keys {
        put(&*store, k, "v").await;
    }
    let page = store.list(&ListQuery::all()).await.expect("list");
    let listed: Vec<&str> = page.items.iter().map(|i| i.key.as_str()).collect();
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(listed, expected);
    assert_eq!(page.next_cursor, None);

    let page = store
        .list(&ListQuery::new("a/", None, None).expect("query"))
        .await
        .expect("list");
    let listed: Vec<&str> = page.items.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(listed, ["a/", "a/Z", "a/b", "a/c/d", "a/é"]);
    for item in &page.items {
        assert_eq!(
            Some(item.version),
            current(&*store, item.key.as_str()).await
        );
    }

    let none = store
        .list(&ListQuery::new("nope", None, None).expect("query"))
        .await
        .expect("list");
    assert!(none.items.is_empty());
    assert_eq!(none.next_cursor, None);
}

/// Following cursors visits every key exactly once, in order, for several page sizes.
pub async fn list_pages_cover_every_key_once(store: Arc<dyn KvStore>) {
    let keys: BTreeSet<String> = (0..57).map(|i| format!("p/{i:03}")).collect();
    for k in &keys {
        store
            .put(key(k), Value::from("v"), Precondition::None)
            .await
            .expect("put");
    }
    put(&*store, "q/outside", "v").await;
    for limit in [1u64, 7, 56, 57, 58, 1000] {
        let mut seen = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let query = ListQuery::new("p/", Some(limit), cursor.take()).expect("query");
            let page = store.list(&query).await.expect("list");
            assert!(page.items.len() as u64 <= limit);
            seen.extend(page.items.into_iter().map(|i| i.key.to_string()));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(
                seen.len() <= keys.len(),
                "paging does not end (limit {limit})"
            );
        }
        let expected: Vec<String> = keys.iter().cloned().collect();
        assert_eq!(seen, expected, "limit {limit}");
    }
}

/// When a page ends exactly at the last key, there is no next cursor.
pub async fn list_reports_no_cursor_at_the_exact_end(store: Arc<dyn KvStore>) {
    for k in ["k1", "k2", "k3"] {
        put(&*store, k, "v").await;
    }
    let page = store
        .list(&ListQuery::new("k", Some(3), None).expect("query"))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 3);
    assert_eq!(page.next_cursor, None);
    let page = store
        .list(&ListQuery::new("k", Some(2), None).expect("query"))
        .await
        .expect("list");
    assert_eq!(page.items.len(), 2);
    assert!(page.next_cursor.is_some());
}

/// A cursor before the prefix starts at the prefix; one after it yields nothing.
pub async fn list_cursor_outside_prefix_is_harmless(store: Arc<dyn KvStore>) {
    for k in ["a", "m/1", "m/2", "z"] {
        put(&*store, k, "v").await;
    }
    let before = ListQuery::new("m/", None, Some(Cursor::after(key("a")))).expect("query");
    let page = store.list(&before).await.expect("list");
    assert_eq!(page.items.len(), 2);
    let after = ListQuery::new("m/", None, Some(Cursor::after(key("n")))).expect("query");
    assert!(store.list(&after).await.expect("list").items.is_empty());
}

/// Of many writers swapping from the same version at once, exactly one wins.
pub async fn concurrent_compare_and_swap_has_one_winner(store: Arc<dyn KvStore>) {
    let v0 = put(&*store, "race", "start").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let value = Value::from(format!("writer {i}").into_bytes());
                store
                    .put(key("race"), value, Precondition::Version(v0))
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => winners += 1,
            Err(StoreError::PreconditionFailed { current }) => {
                assert!(current.is_some_and(|c| c > v0));
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(winners, 1);
}

/// Read-modify-CAS loops from many tasks on one counter lose no increment.
pub async fn concurrent_increments_lose_no_update(store: Arc<dyn KvStore>) {
    const TASKS: u64 = 8;
    const EACH: u64 = 10;
    put(&*store, "counter", "0").await;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for _ in 0..EACH {
                    loop {
                        let entry = store
                            .get(&key("counter"))
                            .await
                            .expect("get")
                            .expect("present");
                        let n: u64 = std::str::from_utf8(entry.value.as_bytes())
                            .expect("utf8")
                            .parse()
                            .expect("number");
                        let next = Value::from((n + 1).to_string().into_bytes());
                        match store
                            .put(key("counter"), next, Precondition::Version(entry.version))
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::PreconditionFailed { .. }) => continue,
                            Err(other) => panic!("unexpected error {other:?}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let entry = store
        .get(&key("counter"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        entry.value.as_bytes(),
        (TASKS * EACH).to_string().as_bytes()
    );
}

/// Of many writers creating the same key at once, exactly one wins.
pub async fn concurrent_creates_have_one_winner(store: Arc<dyn KvStore>) {
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .put(key("once"), Value::from("v"), Precondition::Absent)
                    .await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(outcome) => {
                assert!(outcome.created);
                winners += 1;
            }
            Err(StoreError::PreconditionFailed { current }) => assert!(current.is_some()),
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(winners, 1);
}

/// A healthy store passes its readiness check.
pub async fn check_succeeds_on_a_healthy_store(store: Arc<dyn KvStore>) {
    store.check().await.expect("a fresh store is ready");
}
