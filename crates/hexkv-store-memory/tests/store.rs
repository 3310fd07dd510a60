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
        options.fsync = FsyncPolicy::Interval(std::time::Duration::from_millis(5));
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

    #[test]
    fn durable_store_agrees_with_the_model_across_reopens(
        ops in model::operations(true, 60),
        fsync in prop_oneof![Just(FsyncPolicy::Always), Just(FsyncPolicy::Never)],
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = DurableOptions::new(dir.path());
        options.fsync = fsync;
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
