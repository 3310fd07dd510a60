//! The `KvStore` contract suite against PostgreSQL: a fresh database per test, on the server of
//! `DATABASE_URL` or a throwaway one (see `hexkv_testkit::postgres`).

use hexkv_store_postgres::{PostgresOptions, PostgresStore};
use hexkv_testkit::StoreUnderTest;

async fn postgres() -> Option<StoreUnderTest> {
    let db = hexkv_testkit::postgres::database().await?;
    let store = PostgresStore::connect(&PostgresOptions::new(db.url()))
        .await
        .expect("connect to the test database");
    Some(StoreUnderTest::new(store, db))
}

hexkv_testkit::store_contract_tests!(postgres);
