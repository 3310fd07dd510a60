//! A [`KeyValueApi`] whose reads and writes wait at a gate: for tests of what the front ends do
//! while calls are in flight (load shedding, timeouts, draining).

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use hexkv_core::{
    Check, DeleteOutcome, Entry, Identity, Key, KeyValueApi, KvError, ListQuery, Page,
    Precondition, PutOutcome, Readiness, Value, Version,
};
use tokio::sync::watch;

/// `get`, `put` and `delete` count the call as entered, wait until [`GatedApi::open`], then
/// answer (`get`: the value `"v"` at version 1; `put`: version 2; `delete`: absent). Listing and
/// readiness answer at once.
pub struct GatedApi {
    entered: AtomicUsize,
    gate: watch::Sender<bool>,
}

impl Default for GatedApi {
    fn default() -> Self {
        Self {
            entered: AtomicUsize::new(0),
            gate: watch::channel(false).0,
        }
    }
}

impl GatedApi {
    /// How many `get` calls have reached the API.
    pub fn entered(&self) -> usize {
        self.entered.load(Ordering::SeqCst)
    }

    /// Lets every waiting and later `get` answer.
    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Waits until `n` calls have entered (yielding to the runtime between looks).
    pub async fn wait_entered(&self, n: usize) {
        while self.entered() < n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl KeyValueApi for GatedApi {
    async fn get(&self, key: &Key) -> Result<Entry, KvError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        Ok(Entry {
            key: key.clone(),
            value: Value::new("v"),
            version: Version::new(1),
        })
    }

    async fn put(&self, _: Key, _: Value, _: Precondition) -> Result<PutOutcome, KvError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        Ok(PutOutcome {
            version: Version::new(2),
            created: false,
        })
    }

    async fn delete(&self, _: &Key, _: Precondition) -> Result<DeleteOutcome, KvError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.subscribe();
        let _ = gate.wait_for(|open| *open).await;
        Ok(DeleteOutcome::Absent)
    }

    async fn list(&self, _: &ListQuery, _: &Identity) -> Result<Page, KvError> {
        Ok(Page {
            items: Vec::new(),
            next_cursor: None,
        })
    }

    async fn readiness(&self) -> Readiness {
        Readiness {
            checks: vec![Check {
                name: "store",
                ok: true,
                detail: None,
            }],
        }
    }
}
