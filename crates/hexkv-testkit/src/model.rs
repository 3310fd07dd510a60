//! Model-based testing: a store must behave like a `BTreeMap`.
//!
//! [`operations`] generates random sequences of puts, deletes (with every kind of precondition),
//! gets, listings and, for durable stores, reopens. [`run`] applies each operation to the store and
//! to a [`Model`] and fails at the first disagreement, naming the operation. proptest then shrinks a
//! failure to a minimal sequence.
//!
//! Versions are not predicted (the contract only requires them to increase), but every version
//! the store reports is checked against the model's record of it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use hexkv_core::{
    Cursor, DeleteOutcome, Key, KvStore, ListQuery, Precondition, StoreError, Value, Version,
};
use proptest::prelude::*;

/// Keys chosen to collide often and to exercise prefixes, `/` and non-ASCII ordering.
const KEYS: &[&str] = &["a", "a/b", "a/c", "ab", "b", "b/é", "é", "z/z/z"];
const PREFIXES: &[&str] = &["", "a", "a/", "b", "é", "x"];

/// Which precondition an operation uses, relative to the model's state.
#[derive(Debug, Clone, Copy)]
pub enum Pre {
    /// No precondition.
    None,
    /// Create only.
    Absent,
    /// The key's current version (or a never-used version when absent).
    Current,
    /// A version that is not the key's current one.
    Stale,
}

/// One step of a generated sequence.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put a value under `KEYS[key]`.
    Put {
        /// Index into the key set.
        key: usize,
        /// The value.
        value: Vec<u8>,
        /// Its precondition.
        pre: Pre,
    },
    /// Delete `KEYS[key]`.
    Delete {
        /// Index into the key set.
        key: usize,
        /// Its precondition.
        pre: Pre,
    },
    /// Get `KEYS[key]`.
    Get {
        /// Index into the key set.
        key: usize,
    },
    /// List every page of `PREFIXES[prefix]` with page size `limit`.
    List {
        /// Index into the prefix set.
        prefix: usize,
        /// Page size.
        limit: u64,
    },
    /// Close the store and open it again (durable stores only).
    Reopen,
}

fn pre() -> impl Strategy<Value = Pre> {
    prop_oneof![
        3 => Just(Pre::None),
        1 => Just(Pre::Absent),
        2 => Just(Pre::Current),
        1 => Just(Pre::Stale),
    ]
}

/// Random operation sequences; `reopen` includes [`Op::Reopen`] steps.
pub fn operations(reopen: bool, max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let key = 0..KEYS.len();
    let op = prop_oneof![
        4 => (key.clone(), proptest::collection::vec(any::<u8>(), 0..24), pre())
            .prop_map(|(key, value, pre)| Op::Put { key, value, pre }),
        2 => (key.clone(), pre()).prop_map(|(key, pre)| Op::Delete { key, pre }),
        2 => key.prop_map(|key| Op::Get { key }),
        1 => (0..PREFIXES.len(), 1u64..4).prop_map(|(prefix, limit)| Op::List { prefix, limit }),
        (if reopen { 1 } else { 0 }) => Just(Op::Reopen),
    ];
    proptest::collection::vec(op, 1..max_len)
}

/// What the store should hold: key → (value, version).
#[derive(Debug, Default)]
pub struct Model {
    entries: BTreeMap<String, (Vec<u8>, Version)>,
    last_version: Version,
}

impl Model {
    fn current(&self, key: &str) -> Option<Version> {
        self.entries.get(key).map(|(_, v)| *v)
    }

    fn precondition(&self, key: &str, pre: Pre) -> Precondition {
        match pre {
            Pre::None => Precondition::None,
            Pre::Absent => Precondition::Absent,
            Pre::Current => Precondition::Version(
                self.current(key)
                    .unwrap_or(Version::new(self.last_version.get() + 1_000_000)),
            ),
            Pre::Stale => Precondition::Version(Version::new(
                self.current(key).map_or(1, |v| v.get() + 1_000_000),
            )),
        }
    }

    fn record_write(&mut self, version: Version) -> Result<(), String> {
        if version <= self.last_version {
            return Err(format!(
                "version {version} does not increase past {}",
                self.last_version
            ));
        }
        self.last_version = version;
        Ok(())
    }
}

/// Runs `ops` against the store from `open` and against a model; `open` is called at the start
/// and at every [`Op::Reopen`] (after the previous store was closed and dropped).
pub async fn run<F, Fut>(ops: &[Op], mut open: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn KvStore>>,
{
    let mut store = open().await;
    let mut model = Model::default();
    for (step, op) in ops.iter().enumerate() {
        if let Op::Reopen = op {
            store.close().await.map_err(|e| format!("close: {e}"))?;
            drop(store);
            store = open().await;
        } else {
            apply(&*store, &mut model, op)
                .await
                .map_err(|e| format!("step {step} {op:?}: {e}"))?;
        }
    }
    let everything = Op::List {
        prefix: 0,
        limit: 1000,
    };
    apply(&*store, &mut model, &everything)
        .await
        .map_err(|e| format!("final listing: {e}"))?;
    let _ = store.close().await;
    Ok(())
}

async fn apply(store: &dyn KvStore, model: &mut Model, op: &Op) -> Result<(), String> {
    match op {
        Op::Put { key, value, pre } => {
            let name = KEYS[*key];
            let current = model.current(name);
            let precondition = model.precondition(name, *pre);
            let result = store
                .put(k(name), Value::from(value.clone()), precondition)
                .await;
            match (precondition.is_met_by(current), result) {
                (true, Ok(outcome)) => {
                    model.record_write(outcome.version)?;
                    if outcome.created != current.is_none() {
                        return Err(format!("created = {}", outcome.created));
                    }
                    model
                        .entries
                        .insert(name.to_owned(), (value.clone(), outcome.version));
                }
                (false, Err(StoreError::PreconditionFailed { current: reported }))
                    if reported == current => {}
                (_, other) => {
                    return Err(format!(
                        "expected met = {}, got {other:?}",
                        precondition.is_met_by(current)
                    ));
                }
            }
        }
        Op::Delete { key, pre } => {
            let name = KEYS[*key];
            let current = model.current(name);
            let precondition = model.precondition(name, *pre);
            let result = store.delete(&k(name), precondition).await;
            match (precondition.is_met_by(current), current, result) {
                (true, Some(_), Ok(DeleteOutcome::Deleted { version })) => {
                    model.record_write(version)?;
                    model.entries.remove(name);
                }
                (true, None, Ok(DeleteOutcome::Absent)) => {}
                (false, _, Err(StoreError::PreconditionFailed { current: reported }))
                    if reported == current => {}
                (_, _, other) => return Err(format!("unexpected {other:?}")),
            }
        }
        Op::Get { key } => {
            let name = KEYS[*key];
            let got = store
                .get(&k(name))
                .await
                .map_err(|e| e.to_string())?
                .map(|e| (e.value.as_bytes().to_vec(), e.version));
            let expected = model.entries.get(name).cloned();
            if got != expected {
                return Err(format!("got {got:?}, model has {expected:?}"));
            }
        }
        Op::List { prefix, limit } => {
            let prefix = PREFIXES[*prefix];
            let mut listed = Vec::new();
            let mut cursor: Option<Cursor> = None;
            loop {
                let query = ListQuery::new(prefix, Some(*limit), cursor.take())
                    .map_err(|e| e.to_string())?;
                let page = store.list(&query).await.map_err(|e| e.to_string())?;
                listed.extend(
                    page.items
                        .into_iter()
                        .map(|i| (i.key.to_string(), i.version)),
                );
                match page.next_cursor {
                    Some(next) if listed.len() <= KEYS.len() => cursor = Some(next),
                    Some(_) => return Err("listing does not end".into()),
                    None => break,
                }
            }
            let expected: Vec<(String, Version)> = model
                .entries
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .map(|(key, (_, v))| (key.clone(), *v))
                .collect();
            if listed != expected {
                return Err(format!("listed {listed:?}, model has {expected:?}"));
            }
        }
        Op::Reopen => unreachable!("handled by run"),
    }
    Ok(())
}

fn k(name: &str) -> Key {
    Key::new(name).expect("model keys are valid")
}
