//! The counters service: the domain's rules over the port.

use std::sync::Arc;

use crate::{CounterError, CounterName, CounterStore, StoreError};

/// The largest change one request may make.
pub const MAX_DELTA: i64 = 1_000_000_000;

/// The service the front ends call.
#[derive(Clone)]
pub struct CounterService {
    store: Arc<dyn CounterStore>,
}

impl CounterService {
    /// The service over `store`.
    pub fn new(store: Arc<dyn CounterStore>) -> Self {
        Self { store }
    }

    /// Adds `delta` (non-zero, at most [`MAX_DELTA`] either way) to `name`.
    pub async fn add(&self, name: &CounterName, delta: i64) -> Result<i64, CounterError> {
        if delta == 0 || delta.unsigned_abs() > MAX_DELTA as u64 {
            return Err(CounterError::InvalidDelta);
        }
        self.store
            .add(name, delta)
            .await
            .map_err(into_counter_error)
    }

    /// The value of `name`.
    pub async fn get(&self, name: &CounterName) -> Result<i64, CounterError> {
        self.store
            .get(name)
            .await
            .map_err(into_counter_error)?
            .ok_or(CounterError::NotFound)
    }
}

impl CounterService {
    /// Whether the store answers (for readiness): a read that changes nothing.
    pub async fn ready(&self) -> Result<(), CounterError> {
        let probe = CounterName::new("readiness.probe").expect("a valid name");
        self.store
            .get(&probe)
            .await
            .map(|_| ())
            .map_err(into_counter_error)
    }
}

fn into_counter_error(e: StoreError) -> CounterError {
    match e {
        StoreError::Overflow => CounterError::Overflow,
        StoreError::Unavailable(why) => CounterError::Unavailable(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockCounterStore;
    use mockall::predicate::eq;

    fn name() -> CounterName {
        CounterName::new("hits").unwrap()
    }

    #[tokio::test]
    async fn ready_while_the_store_answers() {
        let mut store = MockCounterStore::new();
        store.expect_get().times(1).returning(|_| Ok(None));
        store
            .expect_get()
            .times(1)
            .returning(|_| Err(StoreError::Unavailable("down".into())));
        let service = CounterService::new(Arc::new(store));
        assert!(service.ready().await.is_ok());
        assert!(matches!(
            service.ready().await,
            Err(CounterError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_bad_delta_never_reaches_the_store() {
        let service = CounterService::new(Arc::new(MockCounterStore::new()));
        for delta in [0, MAX_DELTA + 1, -MAX_DELTA - 1, i64::MIN] {
            assert_eq!(
                service.add(&name(), delta).await,
                Err(CounterError::InvalidDelta)
            );
        }
    }

    #[tokio::test]
    async fn store_errors_keep_their_meaning() {
        let mut store = MockCounterStore::new();
        store
            .expect_add()
            .with(eq(name()), eq(5))
            .returning(|_, _| Err(StoreError::Overflow));
        store
            .expect_get()
            .returning(|_| Err(StoreError::Unavailable("down".into())));
        let service = CounterService::new(Arc::new(store));
        assert_eq!(service.add(&name(), 5).await, Err(CounterError::Overflow));
        assert_eq!(
            service.get(&name()).await,
            Err(CounterError::Unavailable("down".into()))
        );
    }

    #[tokio::test]
    async fn an_absent_counter_is_not_found() {
        let mut store = MockCounterStore::new();
        store.expect_get().returning(|_| Ok(None));
        let service = CounterService::new(Arc::new(store));
        assert_eq!(service.get(&name()).await, Err(CounterError::NotFound));
    }
}
