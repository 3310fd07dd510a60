//! Test support for hexkv and for services built from it.
//!
//! - [`store_contract`]: the behaviours every [`hexkv_core::KvStore`] must show, written once and
//!   run against every adapter with [`store_contract_tests!`]. This is what makes swapping an
//!   adapter safe.
//! - [`model`]: a model-based property test: random operation sequences run against a store and
//!   against a `BTreeMap`, which must agree.
//! - [`GatedApi`]: a `KeyValueApi` whose reads and writes wait at a gate, for front-end tests of calls in
//!   flight.
//! - [`postgres`] (feature `postgres`): a throwaway PostgreSQL, one fresh database per test
//!   (the `hexkv-test-postgres` crate, which services without the key-value domain use directly).

pub mod auth;
mod gated;
pub mod model;
#[cfg(feature = "postgres")]
pub use hexkv_test_postgres as postgres;
pub mod store_contract;

use std::any::Any;
use std::sync::Arc;

use hexkv_core::KvStore;

pub use gated::GatedApi;

/// A store under test, with whatever must live as long as it (a temp dir, a database).
pub struct StoreUnderTest {
    /// The store.
    pub store: Arc<dyn KvStore>,
    _guard: Box<dyn Any + Send + Sync>,
}

impl StoreUnderTest {
    /// Wraps `store`; `guard` is dropped after the store.
    pub fn new(store: impl KvStore, guard: impl Any + Send + Sync) -> Self {
        Self {
            store: Arc::new(store),
            _guard: Box::new(guard),
        }
    }
}

/// What a contract-test factory returns: a store, or `None` to skip (a factory that needs an
/// external service says why before returning `None`).
pub trait IntoStoreUnderTest {
    /// The store, if there is one.
    fn into_store_under_test(self) -> Option<StoreUnderTest>;
}

impl IntoStoreUnderTest for StoreUnderTest {
    fn into_store_under_test(self) -> Option<StoreUnderTest> {
        Some(self)
    }
}

impl IntoStoreUnderTest for Option<StoreUnderTest> {
    fn into_store_under_test(self) -> Option<StoreUnderTest> {
        self
    }
}

/// Generates one `#[tokio::test]` per contract behaviour, each with a fresh store from
/// `$factory` (an `async fn() -> StoreUnderTest`, or `-> Option<StoreUnderTest>` to be able to
/// skip). The calling crate needs `tokio` (with
/// `macros` and `rt-multi-thread`) as a dev-dependency.
///
/// ```text
/// async fn ephemeral() -> StoreUnderTest {
///     StoreUnderTest::new(MemoryStore::ephemeral(4), ())
/// }
/// hexkv_testkit::store_contract_tests!(ephemeral);
/// ```
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:path) => {
        $crate::store_contract_tests!(@cases $factory;
            get_of_absent_key_is_none,
            put_then_get_round_trips_binary_values,
            put_reports_created_then_replaced,
            versions_strictly_increase_across_keys_and_deletes,
            delete_removes_and_is_idempotent,
            create_only_succeeds_once,
            compare_and_swap_needs_the_current_version,
            conditional_delete_needs_the_current_version,
            failed_preconditions_change_nothing,
            list_is_ordered_by_key_bytes_and_filtered_by_prefix,
            list_pages_cover_every_key_once,
            list_reports_no_cursor_at_the_exact_end,
            list_cursor_outside_prefix_is_harmless,
            concurrent_compare_and_swap_has_one_winner,
            concurrent_increments_lose_no_update,
            concurrent_creates_have_one_winner,
            check_succeeds_on_a_healthy_store,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(sut) =
                    $crate::IntoStoreUnderTest::into_store_under_test($factory().await)
                else {
                    return;
                };
                $crate::store_contract::$case(::std::sync::Arc::clone(&sut.store)).await;
            }
        )*
    };
}
