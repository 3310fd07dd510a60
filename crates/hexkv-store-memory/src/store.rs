//! [`MemoryStore`]: the [`KvStore`] adapter over the sharded map, ephemeral or durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use hexkv_core::{
    DeleteOutcome, Entry, Key, KvStore, Limits, ListQuery, Page, Precondition, PutOutcome,
    StoreError, Value, Version,
};

use crate::log::{Change, FsyncPolicy, Log, LogFile, Written};
use crate::map::{ShardedMap, Slot};
use crate::record::{self, HEADER_LEN, Op};
use crate::recovery;

/// The name of the log file inside the data directory.
pub const LOG_FILE_NAME: &str = "kv.log";

/// How to open a durable store.
#[derive(Debug, Clone)]
pub struct DurableOptions {
    /// The data directory; created if missing. Holds [`LOG_FILE_NAME`].
    pub dir: PathBuf,
    /// When the log is synced.
    pub fsync: FsyncPolicy,
    /// Cut the log at a corrupt record instead of refusing to start (records after it are lost).
    pub repair: bool,
    /// Number of map shards (rounded up to a power of two).
    pub shards: usize,
}

impl DurableOptions {
    /// Options with the defaults: `fsync = always`, no repair, [`MemoryStore::DEFAULT_SHARDS`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::Always,
            repair: false,
            shards: MemoryStore::DEFAULT_SHARDS,
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
    /// Another process has the log open.
    #[error(
        "{path} is in use by another process (is another hexkv running on this data directory?)"
    )]
    Locked {
        /// The log file.
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

/// What [`MemoryStore::open`] found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The log file.
    pub path: PathBuf,
    /// Records replayed.
    pub records: u64,
    /// Live keys after replay.
    pub keys: usize,
    /// The highest version in the log.
    pub last_version: Version,
    /// Bytes cut from a damaged end of the log (a torn tail, or damage cut by repair).
    pub truncated_bytes: u64,
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

    /// Opens (or creates) the durable store in `options.dir`, replaying its log.
    ///
    /// Blocking: it reads the whole log. Call it before serving, or from `spawn_blocking`.
    pub fn open(options: &DurableOptions) -> Result<(Self, OpenReport), OpenError> {
        let file = open_log_file(&options.dir)?;
        Self::open_with(options, file.path, file.file, Box::new)
    }

    /// Opens over `file` (already locked and with a valid header), wrapping it for the flusher.
    fn open_with<F: LogFile>(
        options: &DurableOptions,
        path: PathBuf,
        mut file: File,
        wrap: impl FnOnce(File) -> Box<F>,
    ) -> Result<(Self, OpenReport), OpenError> {
        let io_err = |source| OpenError::Io {
            path: path.clone(),
            source,
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_err)?;

        let map = Arc::new(ShardedMap::new(options.shards));
        let recovered = recovery::replay(&path, &data, options.repair, |rec| {
            let Ok(key) = Key::try_from(rec.key) else {
                // Keys are validated before they are logged; a key that fails now was written by
                // a build with other rules. Keep the rest of the log usable.
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
        })?;
        drop(data);

        if let Some(cut) = &recovered.cut {
            if cut.lost_records {
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
            file.set_len(recovered.valid_len).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }

        let report = OpenReport {
            path: path.clone(),
            records: recovered.records,
            keys: map.len(),
            last_version: Version::new(recovered.last_version),
            truncated_bytes: recovered.cut.as_ref().map_or(0, |c| c.bytes),
        };
        let log = Log::start(
            wrap(file),
            recovered.valid_len,
            recovered.last_version,
            options.fsync,
            Arc::clone(&map),
        )
        .map_err(io_err)?;
        Ok((
            Self {
                map,
                mode: Mode::Durable { log },
                closed: AtomicBool::new(false),
            },
            report,
        ))
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
        self.map.count(current.is_some(), value.is_some());
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

struct OpenedLog {
    path: PathBuf,
    file: File,
}

/// Opens the log file for appending, takes its lock, and writes the header if it is new.
fn open_log_file(dir: &Path) -> Result<OpenedLog, OpenError> {
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |source| OpenError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    let path = dir.join(LOG_FILE_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(io_at(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(OpenError::Locked { path }),
        Err(fs::TryLockError::Error(e)) => return Err(io_at(&path)(e)),
    }
    let len = file.metadata().map_err(io_at(&path))?.len();
    let header = record::header();
    if (len as usize) < HEADER_LEN {
        // A new file, or one whose creation was interrupted before its header was complete (no
        // record can have been acknowledged): (re)write the header.
        let mut existing = Vec::new();
        file.read_to_end(&mut existing).map_err(io_at(&path))?;
        if !header.starts_with(&existing) {
            return Err(OpenError::NotALog {
                path,
                reason: "shorter than a header and not a header's start".into(),
            });
        }
        file.set_len(0).map_err(io_at(&path))?;
        file.write_all(&header).map_err(io_at(&path))?;
        file.sync_all().map_err(io_at(&path))?;
        // Make the new file's directory entry durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
    }
    use std::io::Seek as _;
    file.seek(io::SeekFrom::Start(0)).map_err(io_at(&path))?;
    Ok(OpenedLog { path, file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A log file whose appends or syncs fail while `fail` is set.
    struct FaultyFile {
        inner: File,
        panic_append: Arc<AtomicBool>,
        fail_append: Arc<AtomicBool>,
        fail_sync: Arc<AtomicBool>,
        syncs: Arc<AtomicUsize>,
    }

    impl LogFile for FaultyFile {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            assert!(
                !self.panic_append.load(Ordering::SeqCst),
                "injected flusher panic"
            );
            if self.fail_append.load(Ordering::SeqCst) {
                // Half the batch reaches the file before the failure, like a short write.
                self.inner.write_all(&bytes[..bytes.len() / 2])?;
                return Err(io::Error::other("injected write failure"));
            }
            self.inner.append(bytes)
        }
        fn sync(&mut self) -> io::Result<()> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fail_sync.load(Ordering::SeqCst) {
                return Err(io::Error::other("injected fsync failure"));
            }
            self.inner.sync()
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            LogFile::truncate(&mut self.inner, len)
        }
    }

    struct Faults {
        panic_append: Arc<AtomicBool>,
        fail_append: Arc<AtomicBool>,
        fail_sync: Arc<AtomicBool>,
        syncs: Arc<AtomicUsize>,
    }

    fn open_faulty(dir: &Path) -> (MemoryStore, Faults) {
        let faults = Faults {
            panic_append: Arc::default(),
            fail_append: Arc::default(),
            fail_sync: Arc::default(),
            syncs: Arc::default(),
        };
        let opened = open_log_file(dir).unwrap();
        let (pa, fa, fs, syncs) = (
            faults.panic_append.clone(),
            faults.fail_append.clone(),
            faults.fail_sync.clone(),
            faults.syncs.clone(),
        );
        let (store, _) = MemoryStore::open_with(
            &DurableOptions::new(dir),
            opened.path,
            opened.file,
            move |inner| {
                Box::new(FaultyFile {
                    inner,
                    panic_append: pa,
                    fail_append: fa,
                    fail_sync: fs,
                    syncs,
                })
            },
        )
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
}
