//! The in-memory adapter: a map behind a lock (a counter update is a few nanoseconds of work,
//! so one lock is enough here; a store with larger values and more readers would shard its
//! map). Nothing is kept across restarts.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::{CounterName, CounterStore, StoreError};

/// Counters in memory; nothing survives a restart.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    counters: Mutex<HashMap<CounterName, i64>>,
}

#[async_trait]
impl CounterStore for MemoryCounters {
    async fn add(&self, name: &CounterName, delta: i64) -> Result<i64, StoreError> {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let current = counters.get(name).copied().unwrap_or(0);
        let next = current.checked_add(delta).ok_or(StoreError::Overflow)?;
        counters.insert(name.clone(), next);
        Ok(next)
    }

    async fn get(&self, name: &CounterName) -> Result<Option<i64>, StoreError> {
        let counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(counters.get(name).copied())
    }
}
