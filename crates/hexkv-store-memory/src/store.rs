//! [`MemoryStore`]: the [`KvStore`] adapter over the sharded map, ephemeral or durable.

use std::fs::{self, File};
use std::io::{self, Read, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hexkv_core::{
    DeleteOutcome, Entry, Key, KvStore, Limits, ListQuery, Page, Precondition, PutOutcome,
    StoreError, Value, Version,
};

use crate::compaction::{self, CompactionPolicy, CompactionReport};
use crate::dir::{self, Segment};
use crate::log::{Change, FsyncPolicy, Log, LogFile, Setup, Written};
use crate::map::{ShardedMap, Slot};
use crate::record::{self, HEADER_LEN, Op};
use crate::recovery;
use crate::snapshot::{self, LoadError};

/// How to open a durable store.
#[derive(Debug, Clone)]
pub struct DurableOptions {
    /// The data directory; created if missing. Holds the log segments and snapshots (file names
    /// in [`segment_file_name`](crate::segment_file_name) and
    /// [`snapshot_file_name`](crate::snapshot_file_name)).
    pub dir: PathBuf,
    /// When the log is synced.
    pub fsync: FsyncPolicy,
    /// The period of the syncs under [`FsyncPolicy::Interval`]; must not be zero.
    pub fsync_interval: Duration,
    /// Cut the log at a corrupt record instead of refusing to start (records after it are lost).
    pub repair: bool,
    /// Number of map shards (rounded up to a power of two).
    pub shards: usize,
    /// When the log is compacted into a snapshot.
    pub compaction: CompactionPolicy,
}

impl DurableOptions {
    /// The default period of the syncs under [`FsyncPolicy::Interval`].
    pub const DEFAULT_FSYNC_INTERVAL: Duration = Duration::from_millis(100);

    /// Options with the defaults: `fsync = always` (a sync every 100 ms if set to `interval`), no
    /// repair, [`MemoryStore::DEFAULT_SHARDS`], the default [`CompactionPolicy`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            fsync_interval: Self::DEFAULT_FSYNC_INTERVAL,
            repair: false,
            shards: MemoryStore::DEFAULT_SHARDS,
            compaction: CompactionPolicy::default(),
        }
    }
}

/// Why a durable store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another process has the data directory open.
    #[error(
        "{path} is in use by another process (is another hexkv running on this data directory?)"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The file is not a hexkv log of a format this build reads.
    #[error("{path} is not a hexkv log: {reason}")]
    NotALog {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The options cannot work: a zero sync interval under [`FsyncPolicy::Interval`].
    #[error("{0}")]
    Options(&'static str),
    /// A damaged record is followed by valid ones: acknowledged writes lie behind the damage.
    #[error(
        "{path}: corrupt record at byte offset {offset} ({reason}), followed by valid records. \
         Refusing to start: restore the file from a backup, or start once with repair enabled \
         (`--repair-log`) to cut the log at offset {offset}, losing every record after it"
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the damaged record starts.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The newest snapshot is damaged. The log it covers was removed when it was written, so no
    /// repair can start from it.
    #[error(
        "{path}: damaged snapshot at byte offset {offset} ({reason}). Refusing to start: \
         restore the data directory from a backup"
    )]
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// Where the damage was found.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A log segment between the snapshot and the newest segment is missing.
    #[error(
        "{path} is missing: the log has a gap. Refusing to start: restore the file from a backup"
    )]
    MissingSegment {
        /// The missing segment.
        path: PathBuf,
    },
}

/// The embedded store: a sharded in-memory map, optionally made durable by a write-ahead log.
///
/// Ephemeral ([`MemoryStore::ephemeral`]) keeps everything in memory only. Durable
/// ([`MemoryStore::open`]) replays the log at start and logs every write before acknowledging it;
/// see the crate docs for the rules it keeps.
pub struct MemoryStore {
    map: Arc<ShardedMap>,
    mode: Mode,
    closed: AtomicBool,
}

enum Mode {
    Ephemeral { last_version: AtomicU64 },
    Durable { log: Log },
}

/// What [`MemoryStore::open`] found in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The log segment writes continue in.
    pub path: PathBuf,
    /// The snapshot loaded, if there was one.
    pub snapshot: Option<SnapshotLoaded>,
    /// Log segments replayed after it (or created).
    pub segments: usize,
    /// Log records replayed (after the snapshot).
    pub records: u64,
    /// Live keys after replay.
    pub keys: usize,
    /// The highest version in the log.
    pub last_version: Version,
    /// Bytes cut from a damaged end of the log (a torn tail, or damage cut by repair).
    pub truncated_bytes: u64,
}

/// A snapshot loaded at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotLoaded {
    /// The file.
    pub path: PathBuf,
    /// The keys it held.
    pub entries: u64,
}

/// The copy of a value the map keeps: its own exact-size buffer. A value handed in by a
/// transport is often a slice of a larger shared buffer (hyper's connection read buffer), which
/// storing the slice would pin for as long as the key lives; and a clone of a `Bytes` made from a
/// `Vec` allocates a shared header, 32 bytes per key that a fresh copy does not need.
pub(crate) fn compact(value: &Value) -> Value {
    Value::from(Bytes::copy_from_slice(value.as_bytes()))
}

impl MemoryStore {
    /// The default number of map shards.
    pub const DEFAULT_SHARDS: usize = 16;

    /// A store that keeps nothing across restarts.
    pub fn ephemeral(shards: usize) -> Self {
        Self {
            map: Arc::new(ShardedMap::new(shards)),
            mode: Mode::Ephemeral {
                last_version: AtomicU64::new(0),
            },
            closed: AtomicBool::new(false),
        }
    }

    /// Opens (or creates) the durable store in `options.dir`: loads the newest snapshot, then
    /// replays the log segments written after it.
    ///
    /// Blocking: it reads the whole snapshot and log. Call it before serving, or from
    /// `spawn_blocking`.
    pub fn open(options: &DurableOptions) -> Result<(Self, OpenReport), OpenError> {
        Self::open_with(options, Box::new)
    }

    /// Opens, wrapping the segment being written for the flusher (tests inject faults here).
    fn open_with<F: LogFile>(
        options: &DurableOptions,
        wrap: impl FnOnce(Segment) -> Box<F>,
    ) -> Result<(Self, OpenReport), OpenError> {
        if options.fsync == FsyncPolicy::Interval && options.fsync_interval.is_zero() {
            return Err(OpenError::Options(
                "fsync = interval needs a sync interval above zero",
            ));
        }
        let data_dir = &options.dir;
        fs::create_dir_all(data_dir).map_err(io_at(data_dir))?;
        let lock = match dir::lock(data_dir).map_err(io_at(&data_dir.join(dir::LOCK_FILE)))? {
            Ok(lock) => lock,
            Err(path) => return Err(OpenError::Locked { path }),
        };
        let mut listing = dir::list(data_dir).map_err(io_at(data_dir))?;
        // A snapshot a crash interrupted before its rename was never part of the store.
        dir::remove_all(data_dir, listing.temporary.drain(..)).map_err(io_at(data_dir))?;
        if listing.legacy_log {
            adopt_legacy_log(data_dir, &mut listing)?;
        }

        let map = Arc::new(ShardedMap::new(options.shards));
        // Tail records must continue after `covered`; `last_version` is the highest seen.
        let (mut covered, mut last_version) = (0u64, 0u64);
        let mut snapshot = None;
        let first_segment = match listing.snapshots.last() {
            Some(&seq) => {
                let path = data_dir.join(dir::snapshot_file_name(seq));
                let loaded =
                    snapshot::load(&path, |rec| apply_record(&map, rec)).map_err(|e| match e {
                        LoadError::Io(source) => OpenError::Io {
                            path: path.clone(),
                            source,
                        },
                        LoadError::Damaged { offset, reason } => OpenError::BadSnapshot {
                            path: path.clone(),
                            offset,
                            reason,
                        },
                    })?;
                covered = loaded.covered_version;
                last_version = loaded.covered_version.max(loaded.max_version);
                // What a compaction stopped before removing: the snapshot covers it.
                compaction::remove_covered(data_dir, seq).map_err(io_at(data_dir))?;
                snapshot = Some(SnapshotLoaded {
                    path,
                    entries: loaded.entries,
                });
                seq
            }
            None => 1,
        };

        let tail: Vec<u64> = listing
            .segments
            .iter()
            .copied()
            .filter(|&seq| seq >= first_segment)
            .collect();
        for (i, &seq) in tail.iter().enumerate() {
            let expected = first_segment + i as u64;
            if seq != expected {
                return Err(OpenError::MissingSegment {
                    path: data_dir.join(dir::segment_file_name(expected)),
                });
            }
        }

        let (mut records, mut truncated_bytes, mut uncovered) = (0u64, 0u64, 0u64);
        let mut current = None;
        for (i, &seq) in tail.iter().enumerate() {
            let last = i + 1 == tail.len();
            let path = data_dir.join(dir::segment_file_name(seq));
            let mut file = dir::open_segment(&path).map_err(io_at(&path))?;
            if last {
                complete_header(data_dir, &path, &mut file)?;
            }
            let recovered = recovery::replay_stream(
                &path,
                &mut file,
                recovery::CHUNK,
                options.repair,
                covered,
                |rec| apply_record(&map, rec),
            )?;
            if let Some(cut) = &recovered.cut {
                if !last && !cut.lost_records && !options.repair {
                    // Only the newest segment can end in a torn write: each is synced before
                    // the next is created. Damage here has later segments behind it.
                    return Err(OpenError::Corrupt {
                        path,
                        offset: cut.offset,
                        reason: "damaged end of a segment that later segments follow".into(),
                    });
                }
                if cut.lost_records || !last {
                    tracing::error!(
                        path = %path.display(), offset = cut.offset, bytes = cut.bytes,
                        "repair: cut the log at a corrupt record; the records after it are lost"
                    );
                } else {
                    tracing::warn!(
                        path = %path.display(), offset = cut.offset, bytes = cut.bytes,
                        "cut a torn record off the end of the log (an interrupted, unacknowledged write)"
                    );
                }
                file.set_len(recovered.valid_len).map_err(io_at(&path))?;
                file.sync_all().map_err(io_at(&path))?;
                truncated_bytes += cut.bytes;
            }
            if recovered.zeroed > 0 && !last {
                // Space preallocated ahead of the records, left by a crash between a rotation's
                // new segment and cutting the old one's zeros: nothing lost, nothing to keep.
                file.set_len(recovered.valid_len).map_err(io_at(&path))?;
                file.sync_all().map_err(io_at(&path))?;
            }
            records += recovered.records;
            covered = recovered.last_version;
            last_version = last_version.max(recovered.last_version);
            uncovered += recovered.valid_len - HEADER_LEN as u64;
            if last {
                let allocated = recovered.valid_len + recovered.zeroed;
                current = Some((seq, file, recovered.valid_len, allocated));
            }
        }
        let (seq, file, len, allocated) = match current {
            Some(current) => current,
            None => {
                let path = data_dir.join(dir::segment_file_name(first_segment));
                let file = dir::create_segment(data_dir, first_segment).map_err(io_at(&path))?;
                (first_segment, file, HEADER_LEN as u64, HEADER_LEN as u64)
            }
        };
        let segment_path = data_dir.join(dir::segment_file_name(seq));
        let preallocate = options.fsync == FsyncPolicy::Always;
        let segment = Segment::new(data_dir.clone(), seq, file, (len, allocated), preallocate)
            .map_err(io_at(&segment_path))?;

        let report = OpenReport {
            path: data_dir.join(dir::segment_file_name(seq)),
            snapshot,
            segments: tail.len().max(1),
            records,
            keys: map.len(),
            last_version: Version::new(last_version),
            truncated_bytes,
        };
        let setup = Setup {
            file: wrap(segment),
            len,
            uncovered,
            last_version,
            policy: options.fsync,
            interval: options.fsync_interval,
            compaction: options.compaction,
            dir: data_dir.clone(),
            lock,
        };
        let log = Log::start(setup, Arc::clone(&map)).map_err(io_at(data_dir))?;
        Ok((
            Self {
                map,
                mode: Mode::Durable { log },
                closed: AtomicBool::new(false),
            },
            report,
        ))
    }

    /// Compacts the log into a snapshot now (after the compaction under way, if any) and waits
    /// for it: the snapshot is written, and the segments it covers removed. `None` for an
    /// ephemeral store, which has no log.
    ///
    /// Reads and writes go on meanwhile; see the crate docs.
    pub async fn compact(&self) -> Result<Option<CompactionReport>, StoreError> {
        self.check_open()?;
        match &self.mode {
            Mode::Ephemeral { .. } => Ok(None),
            Mode::Durable { log } => log.compact().await.map(Some),
        }
    }

    /// The number of live keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_open(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::unavailable("the store is closed"));
        }
        Ok(())
    }

    /// Applies a change to the ephemeral map: check and apply under the shard's write lock.
    fn change_in_memory(
        &self,
        last_version: &AtomicU64,
        key: &Key,
        value: Option<&Value>,
        precondition: Precondition,
    ) -> Result<Written, StoreError> {
        let mut shard = self.map.write_shard(key);
        let key_len = key.as_bytes().len();
        let before = shard
            .get(key)
            .map(|slot| record::encoded_len(key_len, slot.value.len()));
        let current = shard.get(key).map(|slot| slot.version);
        if !precondition.is_met_by(current) {
            return Err(StoreError::PreconditionFailed { current });
        }
        if value.is_none() && current.is_none() {
            return Ok(Written::NothingToDelete);
        }
        let version = Version::new(last_version.fetch_add(1, Ordering::SeqCst) + 1);
        match value {
            Some(value) => {
                let slot = Slot {
                    value: compact(value),
                    version,
                };
                shard.insert(key.clone(), slot);
            }
            None => {
                shard.remove(key);
            }
        }
        drop(shard);
        let after = value.map(|value| record::encoded_len(key_len, value.len()));
        self.map.count(before, after);
        Ok(Written::Done {
            version,
            previous: current,
        })
    }

    async fn change(
        &self,
        key: &Key,
        value: Option<&Value>,
        precondition: Precondition,
    ) -> Result<Written, StoreError> {
        self.check_open()?;
        match &self.mode {
            Mode::Ephemeral { last_version } => {
                self.change_in_memory(last_version, key, value, precondition)
            }
            Mode::Durable { log } => {
                let change = value.map_or(Change::Delete, Change::Put);
                log.write(key, change, precondition).await
            }
        }
    }
}

#[async_trait]
impl KvStore for MemoryStore {
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        Ok(self.map.get(key))
    }

    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        if value.len() > Limits::HARD_MAX_VALUE_BYTES {
            return Err(StoreError::internal(format!(
                "value of {} bytes exceeds the store's hard limit",
                value.len()
            )));
        }
        // The map keeps a compact copy (`compact`), made where the value is stored.
        match self.change(&key, Some(&value), precondition).await? {
            Written::Done { version, previous } => Ok(PutOutcome {
                version,
                created: previous.is_none(),
            }),
            Written::NothingToDelete => unreachable!("a put always writes"),
        }
    }

    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError> {
        match self.change(key, None, precondition).await? {
            Written::Done { version, .. } => Ok(DeleteOutcome::Deleted { version }),
            Written::NothingToDelete => Ok(DeleteOutcome::Absent),
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        Ok(self.map.list(query))
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.check_open()?;
        match &self.mode {
            Mode::Ephemeral { .. } => Ok(()),
            Mode::Durable { log } => log.health(),
        }
    }

    async fn close(&self) -> Result<(), StoreError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(StoreError::unavailable("the store is already closed"));
        }
        match &self.mode {
            Mode::Ephemeral { .. } => Ok(()),
            Mode::Durable { log } => log.close().await,
        }
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> OpenError + use<> {
    let path = path.to_owned();
    move |source| OpenError::Io { path, source }
}

/// Applies a record read from a snapshot or the log to the map.
fn apply_record(map: &ShardedMap, rec: record::Record<'_>) {
    let Ok(key) = Key::try_from(rec.key) else {
        // Keys are validated before they are logged; a key that fails now was written by a build
        // with other rules. Keep the rest of the log usable.
        tracing::warn!(
            version = rec.version,
            "skipping a log record with an invalid key"
        );
        return;
    };
    let value = match rec.op {
        Op::Put(v) => Some(Value::from(v.to_vec())),
        Op::Delete => None,
    };
    map.apply(key, value, Version::new(rec.version));
}

/// Takes over the single `kv.log` of earlier builds as segment 1.
fn adopt_legacy_log(data_dir: &Path, listing: &mut dir::Listing) -> Result<(), OpenError> {
    let legacy = data_dir.join(dir::LEGACY_LOG);
    if !listing.segments.is_empty() || !listing.snapshots.is_empty() {
        return Err(OpenError::NotALog {
            path: legacy,
            reason: "a single-file log beside log segments: the directory mixes two layouts".into(),
        });
    }
    let first = data_dir.join(dir::segment_file_name(1));
    fs::rename(&legacy, &first).map_err(io_at(&legacy))?;
    dir::sync(data_dir).map_err(io_at(data_dir))?;
    tracing::info!(from = %legacy.display(), to = %first.display(), "took over the log file as the first segment");
    listing.segments.push(1);
    Ok(())
}

/// Completes the header of the newest segment if its creation was interrupted (no record can have
/// been acknowledged in it then), and leaves the file positioned at its start.
fn complete_header(data_dir: &Path, path: &Path, file: &mut File) -> Result<(), OpenError> {
    let len = file.metadata().map_err(io_at(path))?.len();
    let header = record::header();
    if (len as usize) < HEADER_LEN {
        let mut existing = Vec::new();
        file.read_to_end(&mut existing).map_err(io_at(path))?;
        if !header.starts_with(&existing) {
            return Err(OpenError::NotALog {
                path: path.to_owned(),
                reason: "shorter than a header and not a header's start".into(),
            });
        }
        file.set_len(0).map_err(io_at(path))?;
        file.write_all(&header).map_err(io_at(path))?;
        file.sync_all().map_err(io_at(path))?;
        dir::sync(data_dir).map_err(io_at(data_dir))?;
    }
    file.seek(io::SeekFrom::Start(0)).map_err(io_at(path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A log file whose appends or syncs fail while `fail` is set.
    struct FaultyFile {
        inner: Segment,
        panic_append: Arc<AtomicBool>,
        fail_append: Arc<AtomicBool>,
        fail_sync: Arc<AtomicBool>,
        syncs: Arc<AtomicUsize>,
    }

    /// Every file operation of the log is the flusher's: a request task never touches the file.
    fn on_the_log_thread() {
        assert_eq!(
            std::thread::current().name(),
            Some("hexkv-log"),
            "a file operation off the log's own thread"
        );
    }

    impl LogFile for FaultyFile {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            on_the_log_thread();
            assert!(
                !self.panic_append.load(Ordering::SeqCst),
                "injected flusher panic"
            );
            if self.fail_append.load(Ordering::SeqCst) {
                // Half the batch reaches the file before the failure, like a short write.
                self.inner.append(&bytes[..bytes.len() / 2])?;
                return Err(io::Error::other("injected write failure"));
            }
            self.inner.append(bytes)
        }
        fn sync(&mut self) -> io::Result<()> {
            on_the_log_thread();
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail_sync.load(Ordering::SeqCst) {
                return Err(io::Error::other("injected fsync failure"));
            }
            self.inner.sync()
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            on_the_log_thread();
            self.inner.truncate(len)
        }
        fn rotate(&mut self) -> io::Result<u64> {
            on_the_log_thread();
            self.inner.rotate()
        }
        fn close(&mut self) -> io::Result<()> {
            self.inner.close()
        }
    }

    struct Faults {
        panic_append: Arc<AtomicBool>,
        fail_append: Arc<AtomicBool>,
        fail_sync: Arc<AtomicBool>,
        syncs: Arc<AtomicUsize>,
    }

    fn open_faulty(dir: &Path) -> (MemoryStore, Faults) {
        open_faulty_with(&DurableOptions::new(dir))
    }

    fn open_faulty_with(options: &DurableOptions) -> (MemoryStore, Faults) {
        let faults = Faults {
            panic_append: Arc::default(),
            fail_append: Arc::default(),
            fail_sync: Arc::default(),
            syncs: Arc::default(),
        };
        let (pa, fa, fs, syncs) = (
            faults.panic_append.clone(),
            faults.fail_append.clone(),
            faults.fail_sync.clone(),
            faults.syncs.clone(),
        );
        let (store, _) = MemoryStore::open_with(options, move |inner| {
            Box::new(FaultyFile {
                inner,
                panic_append: pa,
                fail_append: fa,
                fail_sync: fs,
                syncs,
            })
        })
        .unwrap();
        (store, faults)
    }

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    async fn reopen_and_get(dir: &Path, k: &str) -> Option<Entry> {
        let (store, _) = MemoryStore::open(&DurableOptions::new(dir)).unwrap();
        store.get(&key(k)).await.unwrap()
    }

    #[tokio::test]
    async fn failed_fsync_acknowledges_nothing_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = open_faulty(dir.path());
        let v1 = store
            .put(key("k"), Value::from("one"), Precondition::None)
            .await
            .unwrap()
            .version;

        faults.fail_sync.store(true, Ordering::SeqCst);
        let err = store
            .put(key("k"), Value::from("two"), Precondition::None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        let err = store
            .delete(&key("k"), Precondition::None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        let entry = store.get(&key("k")).await.unwrap().unwrap();
        assert_eq!((entry.value, entry.version), (Value::from("one"), v1));

        // Writes resume once the disk recovers, with versions never reused.
        faults.fail_sync.store(false, Ordering::SeqCst);
        let v4 = store
            .put(key("k"), Value::from("three"), Precondition::Version(v1))
            .await
            .unwrap()
            .version;
        assert!(v4 > v1);
        store.check().await.unwrap();
        store.close().await.unwrap();
        drop(store);

        // The failed writes were cut from the file: they do not come back after a restart.
        let entry = reopen_and_get(dir.path(), "k").await.unwrap();
        assert_eq!((entry.value, entry.version), (Value::from("three"), v4));
    }

    #[tokio::test]
    async fn short_write_is_cut_and_never_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = open_faulty(dir.path());
        store
            .put(key("a"), Value::from("kept"), Precondition::None)
            .await
            .unwrap();
        faults.fail_append.store(true, Ordering::SeqCst);
        store
            .put(key("b"), Value::from("lost"), Precondition::None)
            .await
            .unwrap_err();
        assert_eq!(store.get(&key("b")).await.unwrap(), None);
        store.close().await.unwrap();
        drop(store);
        assert!(reopen_and_get(dir.path(), "a").await.is_some());
        assert_eq!(reopen_and_get(dir.path(), "b").await, None);
    }

    #[test]
    fn a_zero_sync_interval_is_refused_before_the_directory_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let options = DurableOptions {
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::ZERO,
            ..DurableOptions::new(&data)
        };
        let err = MemoryStore::open(&options).err().expect("refused");
        assert!(matches!(err, OpenError::Options(_)), "{err}");
        assert!(!data.exists());
    }

    #[test]
    fn fsync_policies_read_and_print_by_name() {
        for policy in FsyncPolicy::ALL {
            assert_eq!(policy.name().parse::<FsyncPolicy>(), Ok(policy));
            assert_eq!(policy.to_string(), policy.name());
        }
        let err = "sometimes".parse::<FsyncPolicy>().unwrap_err();
        assert!(err.contains("always, interval, never"), "{err}");
    }

    /// The policies that acknowledge a write without waiting for a sync.
    fn without_a_sync_to_wait_for() -> [FsyncPolicy; 2] {
        [FsyncPolicy::Interval, FsyncPolicy::Never]
    }

    /// Under every policy the flusher is the file's one writer (the faulty file asserts each of
    /// its operations runs on the log's thread, so a write from a request task would panic); the
    /// policies differ only in when a write is acknowledged: `never` syncs nothing, `always`
    /// syncs every batch before answering it.
    #[tokio::test]
    async fn one_writer_owns_the_file_under_every_policy() {
        for fsync in [
            FsyncPolicy::Always,
            FsyncPolicy::Interval,
            FsyncPolicy::Never,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let options = DurableOptions {
                fsync,
                fsync_interval: Duration::from_secs(3600),
                ..DurableOptions::new(dir.path())
            };
            let (store, faults) = open_faulty_with(&options);
            let written = store
                .put(key("k"), Value::from("v"), Precondition::None)
                .await
                .unwrap();
            store.delete(&key("k"), Precondition::None).await.unwrap();
            let syncs = faults.syncs.load(Ordering::SeqCst);
            match fsync {
                FsyncPolicy::Always => assert!(syncs >= 2, "{fsync:?}: {syncs} syncs"),
                // The interval has not passed: acknowledged without a sync.
                FsyncPolicy::Interval | FsyncPolicy::Never => {
                    assert_eq!(syncs, 0, "{fsync:?}")
                }
            }
            store.compact().await.unwrap();
            store.close().await.unwrap();
            drop(store);
            let (reopened, report) = MemoryStore::open(&options).unwrap();
            assert_eq!(
                report.last_version,
                Version::new(written.version.get() + 1),
                "{fsync:?}"
            );
            assert_eq!(reopened.get(&key("k")).await.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_cut_and_fails_alone() {
        for fsync in without_a_sync_to_wait_for() {
            let dir = tempfile::tempdir().unwrap();
            let options = DurableOptions {
                fsync,
                fsync_interval: Duration::from_millis(10),
                ..DurableOptions::new(dir.path())
            };
            let (store, faults) = open_faulty_with(&options);
            let v1 = store
                .put(key("a"), Value::from("kept"), Precondition::None)
                .await
                .unwrap()
                .version;
            faults.fail_append.store(true, Ordering::SeqCst);
            let err = store
                .put(key("b"), Value::from("lost"), Precondition::None)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
            assert_eq!(store.get(&key("b")).await.unwrap(), None, "{fsync:?}");
            // The log was cut back, so it is not poisoned: the next write goes through, with a
            // version never given before.
            faults.fail_append.store(false, Ordering::SeqCst);
            store.check().await.unwrap();
            let v3 = store
                .put(key("c"), Value::from("later"), Precondition::None)
                .await
                .unwrap()
                .version;
            assert!(v3.get() > v1.get() + 1, "{fsync:?}");
            store.close().await.unwrap();
            drop(store);
            let segment = dir.path().join(dir::segment_file_name(1));
            assert_eq!(
                std::fs::metadata(segment).unwrap().len(),
                HEADER_LEN as u64 + record::encoded_len(1, 4) + record::encoded_len(1, 5),
                "{fsync:?}: the half-written record was cut off"
            );
            assert!(reopen_and_get(dir.path(), "a").await.is_some());
            assert_eq!(reopen_and_get(dir.path(), "b").await, None);
            assert!(reopen_and_get(dir.path(), "c").await.is_some());
        }
    }

    /// Waits up to ten seconds for `done`, looking every few milliseconds: the flusher is a
    /// thread of its own, on the OS's clock, not the runtime's.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        for _ in 0..2000 {
            if done() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("{what} did not happen within ten seconds");
    }

    #[tokio::test]
    async fn interval_syncs_behind_the_writers_and_a_failed_sync_poisons_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let options = DurableOptions {
            fsync: FsyncPolicy::Interval,
            fsync_interval: Duration::from_millis(10),
            ..DurableOptions::new(dir.path())
        };
        let (store, faults) = open_faulty_with(&options);
        store
            .put(key("a"), Value::from("x"), Precondition::None)
            .await
            .unwrap();
        eventually("a periodic sync", || {
            faults.syncs.load(Ordering::SeqCst) >= 1
        });
        // Nothing written, nothing to sync.
        let synced = faults.syncs.load(Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(faults.syncs.load(Ordering::SeqCst), synced);

        // A write is acknowledged once written; the sync after it fails, and from then on the
        // log refuses writes (the acknowledged one may be lost in an OS crash).
        faults.fail_sync.store(true, Ordering::SeqCst);
        store
            .put(key("b"), Value::from("x"), Precondition::None)
            .await
            .unwrap();
        let Mode::Durable { log } = &store.mode else {
            unreachable!("a durable store")
        };
        eventually("the log refusing writes", || log.health().is_err());
        assert!(store.check().await.is_err(), "readiness must report it");
        let err = store
            .put(key("c"), Value::from("x"), Precondition::None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert!(store.get(&key("b")).await.unwrap().is_some(), "reads go on");
    }

    #[tokio::test]
    async fn concurrent_writes_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = open_faulty(dir.path());
        let store = Arc::new(store);
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    store
                        .put(key(&format!("k{i}")), Value::from("v"), Precondition::None)
                        .await
                        .unwrap()
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(store.len(), 64);
        let syncs = faults.syncs.load(Ordering::SeqCst);
        assert!(
            (1..64).contains(&syncs),
            "64 concurrent writes took {syncs} fsyncs"
        );
    }

    #[tokio::test]
    async fn stored_values_do_not_pin_the_callers_buffer() {
        let big = Bytes::from(vec![7u8; 64 * 1024]);
        let dir = tempfile::tempdir().unwrap();
        for store in [
            MemoryStore::ephemeral(2),
            MemoryStore::open(&DurableOptions::new(dir.path()))
                .unwrap()
                .0,
        ] {
            store
                .put(
                    key("k"),
                    Value::from(big.slice(100..110)),
                    Precondition::None,
                )
                .await
                .unwrap();
            let stored = store.get(&key("k")).await.unwrap().unwrap().value;
            assert_eq!(stored.as_bytes(), &[7u8; 10]);
            assert!(
                !big.as_ptr_range().contains(&stored.as_bytes().as_ptr()),
                "the stored value points into the caller's 64 KiB buffer"
            );
        }
    }

    #[tokio::test]
    async fn a_failed_flusher_fails_writers_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let (store, faults) = open_faulty(dir.path());
        store
            .put(key("a"), Value::from("kept"), Precondition::None)
            .await
            .unwrap();
        faults.panic_append.store(true, Ordering::SeqCst);
        let err = store
            .put(key("b"), Value::from("x"), Precondition::None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        // Written after the failure: without the guard this would wait forever.
        let later = store.put(key("c"), Value::from("x"), Precondition::None);
        let err = tokio::time::timeout(std::time::Duration::from_secs(10), later)
            .await
            .expect("a write after a flusher failure must not hang")
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert!(
            store.check().await.is_err(),
            "readiness must report the failure"
        );
        assert!(store.get(&key("a")).await.unwrap().is_some(), "reads go on");
    }

    #[tokio::test]
    async fn second_open_of_a_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _) = MemoryStore::open(&DurableOptions::new(dir.path())).unwrap();
        let err = MemoryStore::open(&DurableOptions::new(dir.path()))
            .err()
            .unwrap();
        assert!(matches!(err, OpenError::Locked { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn writes_after_close_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = MemoryStore::open(&DurableOptions::new(dir.path())).unwrap();
        store.close().await.unwrap();
        let err = store
            .put(key("a"), Value::from("x"), Precondition::None)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }));
        assert!(store.check().await.is_err());
    }

    #[tokio::test]
    async fn the_log_is_written_ahead_with_zeros_that_a_crash_leaves_harmless() {
        use crate::dir::PREALLOCATE;
        let dir = tempfile::tempdir().unwrap();
        let crashed = tempfile::tempdir().unwrap();
        let segment = dir::segment_file_name(1);
        let file_len = |dir: &Path| std::fs::metadata(dir.join(&segment)).unwrap().len();
        let (store, _) = MemoryStore::open(&DurableOptions::new(dir.path())).unwrap();
        let mut records = HEADER_LEN as u64;
        for k in ["a", "b", "c"] {
            store
                .put(key(k), Value::from("value"), Precondition::None)
                .await
                .unwrap();
            records += record::encoded_len(1, 5);
        }
        assert_eq!(file_len(dir.path()), PREALLOCATE, "zeros written ahead");
        // A batch that does not fit in the zeros is written, then more zeros after it.
        let big = Value::from(vec![b'x'; PREALLOCATE as usize]);
        store
            .put(key("big"), big.clone(), Precondition::None)
            .await
            .unwrap();
        records += record::encoded_len(3, PREALLOCATE as usize);
        assert_eq!(file_len(dir.path()), 2 * PREALLOCATE);

        // What a crash leaves: the segment as it is while the store runs.
        std::fs::copy(dir.path().join(&segment), crashed.path().join(&segment)).unwrap();
        // A clean close cuts the zeros off.
        store.close().await.unwrap();
        drop(store);
        assert_eq!(file_len(dir.path()), records);

        // After the crash: every record, nothing reported cut, and writes go on after the records.
        let (store, report) = MemoryStore::open(&DurableOptions::new(crashed.path())).unwrap();
        assert_eq!((report.records, report.truncated_bytes), (4, 0));
        assert_eq!(store.get(&key("big")).await.unwrap().unwrap().value, big);
        store
            .put(key("d"), Value::from("after"), Precondition::None)
            .await
            .unwrap();
        store.close().await.unwrap();
        drop(store);
        assert_eq!(
            file_len(crashed.path()),
            records + record::encoded_len(1, 5)
        );
        let (store, report) = MemoryStore::open(&DurableOptions::new(crashed.path())).unwrap();
        assert_eq!((report.records, report.truncated_bytes), (5, 0));
        assert_eq!(
            store.get(&key("d")).await.unwrap().unwrap().value,
            Value::from("after")
        );
    }

    #[tokio::test]
    async fn only_fsync_always_writes_zeros_ahead() {
        for policy in [FsyncPolicy::Interval, FsyncPolicy::Never] {
            let dir = tempfile::tempdir().unwrap();
            let options = DurableOptions {
                fsync: policy,
                fsync_interval: Duration::from_millis(10),
                ..DurableOptions::new(dir.path())
            };
            let (store, _) = MemoryStore::open(&options).unwrap();
            store
                .put(key("a"), Value::from("value"), Precondition::None)
                .await
                .unwrap();
            let len = std::fs::metadata(dir.path().join(dir::segment_file_name(1)))
                .unwrap()
                .len();
            assert_eq!(
                len,
                HEADER_LEN as u64 + record::encoded_len(1, 5),
                "{policy:?}"
            );
        }
    }
}
