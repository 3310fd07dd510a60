//! The `CounterStore` contract, run against every adapter: memory, PostgreSQL (a throwaway
//! server from hexkv-test-postgres; skipped loudly without PostgreSQL, a failure under CI), and the
//! resilience decorator around memory.

use std::sync::Arc;

#[cfg(feature = "memory")]
use hexkv_example_counters::memory::MemoryCounters;
#[cfg(feature = "postgres")]
use hexkv_example_counters::postgres::PostgresCounters;
use hexkv_example_counters::{CounterName, CounterStore, StoreError};

fn name(n: &str) -> CounterName {
    CounterName::new(n).unwrap()
}

async fn contract(store: Arc<dyn CounterStore>) {
    // A counter never added to is absent; the first add starts at 0.
    assert_eq!(store.get(&name("a")).await, Ok(None));
    assert_eq!(store.add(&name("a"), 5).await, Ok(5));
    assert_eq!(store.add(&name("a"), -7).await, Ok(-2));
    assert_eq!(store.get(&name("a")).await, Ok(Some(-2)));
    // Counters are independent.
    assert_eq!(store.add(&name("b"), 1).await, Ok(1));
    assert_eq!(store.get(&name("a")).await, Ok(Some(-2)));
    // Overflow changes nothing, either way.
    assert_eq!(store.add(&name("big"), i64::MAX).await, Ok(i64::MAX));
    assert_eq!(store.add(&name("big"), 1).await, Err(StoreError::Overflow));
    assert_eq!(store.get(&name("big")).await, Ok(Some(i64::MAX)));
    assert_eq!(store.add(&name("small"), i64::MIN).await, Ok(i64::MIN));
    assert_eq!(
        store.add(&name("small"), -1).await,
        Err(StoreError::Overflow)
    );
    // Concurrent adds to one counter: none is lost.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                store.add(&name("shared"), 1).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(store.get(&name("shared")).await, Ok(Some(200)));
}

#[cfg(feature = "memory")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_keeps_the_contract() {
    contract(Arc::new(MemoryCounters::default())).await;
}

#[cfg(feature = "memory")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_resilient_decorator_keeps_the_contract() {
    use hexkv_example_counters::resilient::ResilientCounters;
    contract(Arc::new(ResilientCounters::new(
        Arc::new(MemoryCounters::default()),
        std::time::Duration::from_secs(5),
        hexkv_resilience::RetryPolicy::default(),
        hexkv_resilience::BreakerConfig::default(),
    )))
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_keeps_the_contract() {
    let Some(db) = hexkv_test_postgres::database().await else {
        return; // skipped loudly by hexkv-test-postgres (a failure under CI)
    };
    contract(Arc::new(PostgresCounters::connect(db.url()).await.unwrap())).await;
}
