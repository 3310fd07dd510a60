//! The sharded map: the store's in-memory state.
//!
//! Keys are spread over a power-of-two number of shards by hash; each shard is an ordered
//! `BTreeMap` behind a `std::sync::RwLock`. Point reads and writes touch one shard, so readers and
//! writers of different keys rarely meet on a lock. A listing fans out to every shard (a range
//! from the cursor in each) and fans the ranges back in with a lazy k-way merge, so a page costs
//! `O(limit × log shards)` whatever the map's size, and only the page's keys are copied.
//!
//! The locks are std's, not tokio's: they are held only for in-memory work, never across an
//! `.await`, and a blocking lock is cheaper than an async one for such short sections.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hexkv_core::{Cursor, Entry, Key, ListItem, ListQuery, Page, Value, Version};

use crate::record::{self, Op, Record};

#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) value: Value,
    pub(crate) version: Version,
}

type Shard = BTreeMap<Key, Slot>;

pub(crate) struct ShardedMap {
    shards: Box<[RwLock<Shard>]>,
    hasher: BuildHasherDefault<DefaultHasher>,
    /// Live keys, kept as writes create and delete them (for the `hexkv_keys` gauge).
    live: AtomicUsize,
    /// The size of the live data as log records ([`record::encoded_len`] of every entry): what
    /// the log is compared with to decide when to compact it.
    live_bytes: AtomicU64,
}

/// The gauge of live keys (listed with the other metrics in `hexkv_telemetry::metrics`).
pub(crate) const KEYS_GAUGE: &str = "hexkv_keys";

impl ShardedMap {
    /// A map with `shards` shards, rounded up to a power of two (at least 1).
    pub(crate) fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            shards: (0..n).map(|_| RwLock::new(BTreeMap::new())).collect(),
            hasher: BuildHasherDefault::default(),
            live: AtomicUsize::new(0),
            live_bytes: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    pub(crate) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn shard_index(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.shards.len() - 1)
    }

    // A panic while holding a shard lock cannot leave a BTreeMap half-updated in a way that breaks
    // its invariants for readers, so a poisoned lock is used as is.
    fn read(&self, index: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[index]
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write_shard(&self, key: &Key) -> RwLockWriteGuard<'_, Shard> {
        self.shards[self.shard_index(key.as_str())]
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Entry> {
        let shard = self.read(self.shard_index(key.as_str()));
        shard.get(key).map(|slot| Entry {
            key: key.clone(),
            value: slot.value.clone(),
            version: slot.version,
        })
    }

    pub(crate) fn version_of(&self, key: &Key) -> Option<Version> {
        let shard = self.read(self.shard_index(key.as_str()));
        shard.get(key).map(|slot| slot.version)
    }

    /// Applies a write: `Some(value)` puts, `None` removes.
    pub(crate) fn apply(&self, key: Key, value: Option<Value>, version: Version) {
        let key_len = key.as_bytes().len();
        let mut shard = self.write_shard(&key);
        let (before, after) = match value {
            Some(value) => {
                let after = record::encoded_len(key_len, value.len());
                let before = shard.insert(key, Slot { value, version });
                (
                    before.map(|old| record::encoded_len(key_len, old.value.len())),
                    Some(after),
                )
            }
            None => {
                let before = shard.remove(&key);
                (
                    before.map(|old| record::encoded_len(key_len, old.value.len())),
                    None,
                )
            }
        };
        drop(shard);
        self.count(before, after);
    }

    /// Follows a write in the count of live keys and bytes: the key's entry size (as a log
    /// record) `before` it, and `after`.
    pub(crate) fn count(&self, before: Option<u64>, after: Option<u64>) {
        let (old, new) = (before.unwrap_or(0), after.unwrap_or(0));
        if new >= old {
            self.live_bytes.fetch_add(new - old, Ordering::Relaxed);
        } else {
            self.live_bytes.fetch_sub(old - new, Ordering::Relaxed);
        }
        match (before.is_some(), after.is_some()) {
            (false, true) => {
                self.live.fetch_add(1, Ordering::Relaxed);
                metrics::gauge!(KEYS_GAUGE).increment(1.0);
            }
            (true, false) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
                metrics::gauge!(KEYS_GAUGE).decrement(1.0);
            }
            _ => {}
        }
    }

    /// Live keys (as counted by writes; equal to [`ShardedMap::len`] when no write is running).
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The live data's size as log records: what a snapshot of the map would take, near enough.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Encodes every entry as a put record, shard by shard in key order, handing the records to
    /// `sink` in chunks of up to `per_chunk` entries; returns the number of entries.
    ///
    /// Each chunk is encoded under its shard's read lock, which is released before `sink` runs, so
    /// a writer to that shard waits at most one chunk's encoding and readers never wait. Writes
    /// may land between chunks: the result is a fuzzy view (see the `snapshot` module for why
    /// that is enough).
    pub(crate) fn encode_in_chunks(
        &self,
        per_chunk: usize,
        mut sink: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<u64> {
        let per_chunk = per_chunk.max(1);
        let mut buf = Vec::new();
        let mut entries = 0u64;
        for i in 0..self.shards.len() {
            let mut after: Option<Key> = None;
            loop {
                let shard = self.read(i);
                let range = match &after {
                    None => shard.range::<Key, _>(..),
                    Some(k) => shard.range::<Key, _>((Bound::Excluded(k), Bound::Unbounded)),
                };
                let mut n = 0;
                let mut last = None;
                for (key, slot) in range.take(per_chunk) {
                    record::encode(
                        &Record {
                            version: slot.version.get(),
                            key: key.as_bytes(),
                            op: Op::Put(slot.value.as_bytes()),
                        },
                        &mut buf,
                    );
                    n += 1;
                    last = Some(key);
                }
                after = last.cloned();
                drop(shard);
                if n > 0 {
                    sink(&buf)?;
                    buf.clear();
                    entries += n as u64;
                }
                if n < per_chunk {
                    break;
                }
            }
        }
        Ok(entries)
    }

    pub(crate) fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.read(i).len()).sum()
    }

    /// One page of the listing `query` asks for: fan out to the shards, fan in by key.
    ///
    /// Every shard is read-locked (in index order, so two listings cannot deadlock; writers
    /// hold one shard at a time) while the shards' ranges are merged lazily through a heap, so
    /// only the keys that make the page are cloned: `O(limit × log shards)` work, not
    /// `O(shards × limit)`, and the page is one consistent view of the map.
    pub(crate) fn list(&self, query: &ListQuery) -> Page {
        let limit = query.limit();
        let prefix = query.prefix();
        let start: Bound<&str> = match query.cursor() {
            Some(cursor) if cursor.after_key().as_str() >= prefix => {
                Bound::Excluded(cursor.after_key().as_str())
            }
            _ => Bound::Included(prefix),
        };
        let guards: Vec<RwLockReadGuard<'_, Shard>> =
            (0..self.shards.len()).map(|i| self.read(i)).collect();
        let mut runs: Vec<_> = guards
            .iter()
            .map(|shard| {
                shard
                    .range::<str, _>((start, Bound::Unbounded))
                    .take_while(|(key, _)| key.as_str().starts_with(prefix))
            })
            .collect();
        let mut heap = BinaryHeap::with_capacity(runs.len());
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some((key, slot)) = run.next() {
                heap.push(Reverse((key, slot.version, i)));
            }
        }
        let mut items = Vec::with_capacity((limit + 1).min(1024));
        while items.len() <= limit {
            let Some(Reverse((key, version, i))) = heap.pop() else {
                break;
            };
            if let Some((next, slot)) = runs[i].next() {
                heap.push(Reverse((next, slot.version, i)));
            }
            items.push(ListItem {
                key: key.clone(),
                version,
            });
        }
        drop(runs);
        drop(guards);
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|last| Cursor::after(last.key.clone()))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    #[test]
    fn shard_count_is_a_power_of_two() {
        assert_eq!(ShardedMap::new(0).shard_count(), 1);
        assert_eq!(ShardedMap::new(10).shard_count(), 16);
        assert_eq!(ShardedMap::new(16).shard_count(), 16);
    }

    #[test]
    fn list_merges_shards_in_key_order_with_prefix_and_cursor() {
        let map = ShardedMap::new(8);
        let keys = ["b/2", "a", "b/1", "b/10", "c", "b/", "b0", "b/3"];
        for (i, k) in keys.iter().enumerate() {
            map.apply(key(k), Some(Value::from("x")), Version::new(i as u64 + 1));
        }
        let q = ListQuery::new("b/", Some(2), None).unwrap();
        let page = map.list(&q);
        let names: Vec<_> = page.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(names, ["b/", "b/1"]);
        let q = ListQuery::new("b/", Some(10), page.next_cursor).unwrap();
        let page = map.list(&q);
        let names: Vec<_> = page.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(names, ["b/10", "b/2", "b/3"]);
        assert_eq!(page.next_cursor, None);
        assert_eq!(map.len(), keys.len());
    }

    #[test]
    fn live_keys_follow_creates_and_deletes_not_overwrites() {
        let map = ShardedMap::new(4);
        map.apply(key("a"), Some(Value::from("1")), Version::new(1));
        map.apply(key("a"), Some(Value::from("2")), Version::new(2));
        map.apply(key("b"), Some(Value::from("1")), Version::new(3));
        assert_eq!(map.live(), 2);
        map.apply(key("a"), None, Version::new(4));
        map.apply(key("zz"), None, Version::new(5));
        assert_eq!(map.live(), 1);
        assert_eq!(map.live(), map.len());
    }

    #[test]
    fn live_bytes_follow_every_write() {
        let map = ShardedMap::new(4);
        let size = |k: &str, v: usize| record::encoded_len(k.len(), v);
        map.apply(key("a"), Some(Value::from("1234")), Version::new(1));
        assert_eq!(map.live_bytes(), size("a", 4));
        map.apply(key("a"), Some(Value::from("1")), Version::new(2));
        map.apply(key("bb"), Some(Value::from("")), Version::new(3));
        assert_eq!(map.live_bytes(), size("a", 1) + size("bb", 0));
        map.apply(key("a"), None, Version::new(4));
        map.apply(key("nothing"), None, Version::new(5));
        assert_eq!(map.live_bytes(), size("bb", 0));
        map.apply(key("bb"), None, Version::new(6));
        assert_eq!(map.live_bytes(), 0);
    }

    #[test]
    fn chunks_cover_every_entry_once() {
        let map = ShardedMap::new(4);
        for i in 0..1000u64 {
            map.apply(
                key(&format!("k{i}")),
                Some(Value::from("v")),
                Version::new(i + 1),
            );
        }
        let mut seen = std::collections::HashSet::new();
        let mut chunks = 0;
        let entries = map
            .encode_in_chunks(7, |mut chunk| {
                chunks += 1;
                while !chunk.is_empty() {
                    let record::Decoded::Record(rec, used) = record::decode(chunk) else {
                        panic!("bad record");
                    };
                    assert!(seen.insert(rec.key.to_vec()), "entry twice");
                    chunk = &chunk[used..];
                }
                Ok(())
            })
            .unwrap();
        assert_eq!((entries, seen.len()), (1000, 1000));
        assert!(chunks >= 1000 / 7);
    }
}
