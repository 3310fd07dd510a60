//! The write-ahead log with group commit.
//!
//! # How a write travels
//! 1. Under the log's sequencing lock (`State`), the writer checks its precondition against the
//!    key's newest state: an in-flight write to the key if there is one (`State::pending`), else the
//!    map. It takes the next version, encodes its record into the shared buffer, records the key in
//!    `pending`, and gets a completion channel. Version order is therefore log order.
//! 2. The flusher thread takes the whole buffer as one batch, writes it with one `write`, and under
//!    `fsync = always` makes it durable with one `fdatasync`: every write that arrived while the
//!    previous batch was syncing shares this one (group commit).
//! 3. Only then does the flusher apply the batch to the map, in log order, drop it from `pending`,
//!    and complete the writers' channels: a write is visible and acknowledged only once durable.
//!
//! The flusher, not the writer, applies the batch, so a writer whose request is cancelled (a client
//! that hangs up) can never leave a logged write out of the map. A `std::thread` runs the flusher
//! because its work is blocking file I/O.
//!
//! # One writer, every policy
//! The flusher is the file's only writer under every policy: request tasks never make a
//! file-system call, and a rotation or a compaction's hand-off never holds up a runtime thread.
//! The policies differ only in when a write is acknowledged: under `always` after the batch's
//! `fdatasync`; under `interval` and `never` as soon as the batch is written (the OS has it),
//! and under `interval` the flusher syncs the segment every interval when anything was written
//! since the last sync. Writes that arrive during a sync queue up and go out as the next batch.
//!
//! # Failures
//! If a batch's write or sync fails, that batch and every write queued behind it (which may have
//! been checked against the failed ones) fail with `Unavailable`, `pending` is cleared, and the file
//! is truncated back to its last good length, so nothing unacknowledged can reappear at the next
//! start. Writes then resume. If the truncation fails too, or a periodic sync under `fsync = interval` fails
//! (acknowledged writes may then be lost), the log is poisoned: writes fail until a restart, and
//! readiness reports it.
//!
//! # Compaction
//! After a batch, and after a compaction finishes (writes made meanwhile may have made the log
//! due again), the flusher checks whether the log is due for compaction (or one was asked for);
//! if so it rotates to a new segment between two batches and hands the snapshot to a
//! compaction thread (see the `compaction` module). It runs one compaction at a time.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use hexkv_core::{Key, Precondition, StoreError, Value, Version};
use tokio::sync::oneshot;

use crate::compaction::{CompactionPolicy, CompactionReport, Job};
use crate::map::ShardedMap;
use crate::record::{HEADER_LEN, Op, Record, encode};

/// When the log is synced to stable storage: the one declaration of the setting, read by the
/// service's configuration (`store.memory.fsync`) as well as by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Acknowledge a write only after `fdatasync` covers it. One sync serves a whole batch of
    /// concurrent writes (group commit). Nothing acknowledged is lost, even on power failure.
    #[default]
    Always,
    /// Acknowledge a write once written to the OS; sync every interval
    /// ([`DurableOptions::fsync_interval`](crate::DurableOptions::fsync_interval)). A process crash
    /// loses nothing; an OS crash or power failure may lose up to one interval of acknowledged
    /// writes.
    Interval,
    /// Acknowledge once written to the OS; never sync (the OS writes back in its own time). A
    /// process crash loses nothing; an OS crash may lose any amount of recent writes.
    Never,
}

impl FsyncPolicy {
    /// Every policy, in the order of the docs.
    pub const ALL: [FsyncPolicy; 3] = [Self::Always, Self::Interval, Self::Never];

    /// The policy's name in configuration: `always`, `interval` or `never`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Interval => "interval",
            Self::Never => "never",
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.name() == s)
            .ok_or_else(|| format!("no fsync policy {s:?}: one of always, interval, never"))
    }
}

/// The file operations the log needs; a trait so tests can inject failures.
pub(crate) trait LogFile: Send + 'static {
    /// Writes all of `bytes` after the last record.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes and makes that durable.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Syncs this segment, then continues in a new one (header written and durable); returns the
    /// new segment's number.
    fn rotate(&mut self) -> io::Result<u64>;
    /// At close: makes everything appended durable, and leaves the file ending at its last record.
    fn close(&mut self) -> io::Result<()>;
}

type Done = oneshot::Sender<Result<(), String>>;
type CompactDone = oneshot::Sender<Result<CompactionReport, String>>;

/// Records per group commit (the metric names are listed in `hexkv_telemetry::metrics`).
const GROUP_COMMIT_RECORDS: &str = "hexkv_log_group_commit_records";
/// Time per `fdatasync` of the log.
const FSYNC_DURATION: &str = "hexkv_log_fsync_duration_seconds";
/// Compactions by outcome (`ok`, `error`).
const COMPACTIONS: &str = "hexkv_compactions_total";
/// Time per compaction (snapshot and clean-up).
const COMPACTION_DURATION: &str = "hexkv_compaction_duration_seconds";
/// Bytes of log not covered by a snapshot (what start-up replays after the snapshot).
const LOG_BYTES: &str = "hexkv_log_bytes";

/// A logged write waiting to be applied to the map.
struct Applied {
    key: Key,
    value: Option<Value>,
    version: Version,
}

struct State {
    /// Encoded records not yet taken by the flusher.
    buf: Vec<u8>,
    /// The writes in `buf`, in order.
    queued: Vec<Applied>,
    /// The writers waiting for `queued`.
    waiters: Vec<Done>,
    /// Each key with a write not yet applied to the map, and its newest in-flight write.
    pending: HashMap<Key, InFlight>,
    /// The last version given.
    last_version: u64,
    /// Set once `close` was called; the sender completes when the flusher has finished.
    close: Option<Option<Done>>,
    /// Why writes are refused until a restart.
    poisoned: Option<String>,
    /// Callers of `compact` waiting for a compaction to start.
    compact_requests: Vec<CompactDone>,
    /// The result of the compaction thread, for the flusher to take.
    compaction_finished: Option<Result<CompactionReport, String>>,
    /// The flusher waits on the condvar and nobody has signalled it yet. Only then does a
    /// writer notify it (clearing the flag): a notify is a system call even with no waiter, and
    /// a busy flusher, or one already woken, finds the new records on its next look.
    flusher_waiting: bool,
}

/// The segment being written, and what the log knows of it.
struct Tail {
    file: Box<dyn LogFile>,
    /// Length of the file's valid, written content.
    len: u64,
    /// Bytes of log not covered by a snapshot.
    uncovered: u64,
    /// After a failed compaction, the next automatic one waits until `uncovered` reaches this.
    retry_at: u64,
    /// The version of the last write applied to the map.
    applied_version: u64,
    /// Batches and records written, for the close report.
    batches: u64,
    records: u64,
}

impl Tail {
    /// Whether the log is due for an automatic compaction.
    fn compaction_due(&self, policy: &CompactionPolicy, map: &ShardedMap) -> bool {
        self.uncovered >= self.retry_at && policy.is_due(self.uncovered, map.live_bytes())
    }
}

/// The newest in-flight write to a key.
#[derive(Clone, Copy)]
struct InFlight {
    version: Version,
    /// False for a delete.
    exists: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The write-ahead log; see the module docs.
pub(crate) struct Log {
    shared: Arc<Shared>,
    map: Arc<ShardedMap>,
    flusher: Option<thread::JoinHandle<()>>,
}

/// A change the log was asked to make.
pub(crate) enum Change<'a> {
    Put(&'a Value),
    Delete,
}

/// The result of a write that passed its precondition.
pub(crate) enum Written {
    /// The write is durable and applied; `previous` was the key's version before it.
    Done {
        version: Version,
        previous: Option<Version>,
    },
    /// A delete of an absent key: nothing to write.
    NothingToDelete,
}

/// Where the log starts: what open found and how the log is to behave.
pub(crate) struct Setup {
    /// The segment to append to.
    pub(crate) file: Box<dyn LogFile>,
    /// Its valid length.
    pub(crate) len: u64,
    /// Bytes of log records not covered by a snapshot, in every segment.
    pub(crate) uncovered: u64,
    /// The last version written; versions continue after it.
    pub(crate) last_version: u64,
    pub(crate) policy: FsyncPolicy,
    /// The period of the syncs under [`FsyncPolicy::Interval`].
    pub(crate) interval: Duration,
    pub(crate) compaction: CompactionPolicy,
    /// The data directory, and its lock (held until the flusher stops).
    pub(crate) dir: PathBuf,
    pub(crate) lock: File,
}

impl Log {
    /// Starts the flusher; versions continue after `setup.last_version`.
    pub(crate) fn start(setup: Setup, map: Arc<ShardedMap>) -> io::Result<Self> {
        let Setup {
            file,
            len,
            uncovered,
            last_version,
            policy,
            interval,
            compaction,
            dir,
            lock,
        } = setup;
        let tail = Tail {
            file,
            len,
            uncovered,
            retry_at: 0,
            applied_version: last_version,
            batches: 0,
            records: 0,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::new(),
                queued: Vec::new(),
                waiters: Vec::new(),
                pending: HashMap::new(),
                last_version,
                close: None,
                poisoned: None,
                compact_requests: Vec::new(),
                compaction_finished: None,
                flusher_waiting: false,
            }),
            wake: Condvar::new(),
        });
        let flusher = Flusher {
            shared: Arc::clone(&shared),
            map: Arc::clone(&map),
            tail: Some(tail),
            unsynced: false,
            policy,
            interval,
            compaction,
            dir,
            _lock: lock,
            rotated: 0,
            running: None,
        };
        metrics::gauge!(LOG_BYTES).set(uncovered as f64);
        let flusher = thread::Builder::new()
            .name("hexkv-log".into())
            .spawn(move || flusher.run())?;
        Ok(Self {
            shared,
            map,
            flusher: Some(flusher),
        })
    }

    /// Logs a write if `precondition` holds, and waits until it is durable and applied.
    pub(crate) async fn write(
        &self,
        key: &Key,
        change: Change<'_>,
        precondition: Precondition,
    ) -> Result<Written, StoreError> {
        let (written, done, wake) = {
            let mut st = self.shared.lock();
            if let Some(why) = &st.poisoned {
                return Err(StoreError::unavailable(why.clone()));
            }
            if st.close.is_some() {
                return Err(StoreError::unavailable("the store is closed"));
            }
            let current = match st.pending.get(key) {
                Some(in_flight) => in_flight.exists.then_some(in_flight.version),
                None => self.map.version_of(key),
            };
            if !precondition.is_met_by(current) {
                return Err(StoreError::PreconditionFailed { current });
            }
            if matches!(change, Change::Delete) && current.is_none() {
                return Ok(Written::NothingToDelete);
            }
            st.last_version += 1;
            let version = Version::new(st.last_version);
            let (op, value) = match change {
                Change::Put(value) => (
                    Op::Put(value.as_bytes()),
                    Some(crate::store::compact(value)),
                ),
                Change::Delete => (Op::Delete, None),
            };
            let record = Record {
                version: version.get(),
                key: key.as_bytes(),
                op,
            };
            let written = Written::Done {
                version,
                previous: current,
            };
            encode(&record, &mut st.buf);
            let exists = value.is_some();
            st.pending.insert(key.clone(), InFlight { version, exists });
            st.queued.push(Applied {
                key: key.clone(),
                value,
                version,
            });
            let (tx, rx) = oneshot::channel();
            st.waiters.push(tx);
            (written, rx, std::mem::take(&mut st.flusher_waiting))
        };
        if wake {
            self.shared.wake.notify_one();
        }
        match done.await {
            Ok(Ok(())) => Ok(written),
            Ok(Err(why)) => Err(StoreError::unavailable(why)),
            Err(_) => Err(StoreError::unavailable("the log writer stopped")),
        }
    }

    /// Compacts the log now (or after the compaction under way), and waits for it to finish.
    pub(crate) async fn compact(&self) -> Result<CompactionReport, StoreError> {
        let (tx, rx) = oneshot::channel();
        let wake = {
            let mut st = self.shared.lock();
            if let Some(why) = &st.poisoned {
                return Err(StoreError::unavailable(why.clone()));
            }
            if st.close.is_some() {
                return Err(StoreError::unavailable("the store is closed"));
            }
            st.compact_requests.push(tx);
            std::mem::take(&mut st.flusher_waiting)
        };
        if wake {
            self.shared.wake.notify_one();
        }
        match rx.await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(why)) => Err(StoreError::unavailable(why)),
            Err(_) => Err(StoreError::unavailable("the log writer stopped")),
        }
    }

    /// Why writes are refused, if they are.
    pub(crate) fn health(&self) -> Result<(), StoreError> {
        let st = self.shared.lock();
        match (&st.poisoned, &st.close) {
            (Some(why), _) => Err(StoreError::unavailable(why.clone())),
            (None, Some(_)) => Err(StoreError::unavailable("the store is closed")),
            (None, None) => Ok(()),
        }
    }

    /// Writes and syncs everything queued, stops the flusher and closes the file.
    pub(crate) async fn close(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if st.close.is_some() {
                return Err(StoreError::unavailable("the store is already closed"));
            }
            st.close = Some(Some(tx));
        }
        self.shared.wake.notify_one();
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(StoreError::unavailable(why)),
            Err(_) => Err(StoreError::unavailable("the log writer stopped")),
        }
    }
}

impl Drop for Log {
    /// A store dropped without `close` still writes and syncs what is queued, and waits for the
    /// flusher to release the file, so the data directory can be reopened at once.
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if st.close.is_none() {
            st.close = Some(None);
        }
        drop(st);
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

struct Flusher {
    shared: Arc<Shared>,
    map: Arc<ShardedMap>,
    /// The segment being written; `None` once closed.
    tail: Option<Tail>,
    /// Under `fsync = interval`: anything was written since the last periodic sync.
    unsynced: bool,
    policy: FsyncPolicy,
    /// The period of the syncs under [`FsyncPolicy::Interval`].
    interval: Duration,
    compaction: CompactionPolicy,
    dir: PathBuf,
    /// The data directory's lock, released when the flusher ends.
    _lock: File,
    /// `uncovered` at the last rotation: covered once the compaction under way succeeds.
    rotated: u64,
    /// The compaction under way.
    running: Option<Running>,
}

/// A compaction thread at work, and who waits for it.
struct Running {
    thread: thread::JoinHandle<()>,
    cancel: Arc<AtomicBool>,
    waiters: Vec<CompactDone>,
}

/// What the flusher does next.
enum Work {
    Batch(Vec<u8>, Vec<Applied>, Vec<Done>),
    PeriodicSync,
    CompactionFinished(Result<CompactionReport, String>),
    Compact(Vec<CompactDone>),
    Close(Option<Done>),
}

/// If the flusher thread unwinds (a bug), the log refuses writes from then on, and every writer
/// still waiting gets an error instead of waiting forever.
struct PoisonOnPanic(Arc<Shared>);

impl Drop for PoisonOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            let mut st = self.0.lock();
            st.poisoned = Some("the log writer failed; restart the service".to_owned());
            st.buf.clear();
            st.queued.clear();
            st.pending.clear();
            // Dropping the senders completes each waiting writer with an error.
            st.waiters.clear();
            st.compact_requests.clear();
            if let Some(Some(done)) = st.close.take() {
                let _ = done.send(Err("the log writer failed".to_owned()));
            }
        }
    }
}

impl Flusher {
    fn run(mut self) {
        let _guard = PoisonOnPanic(Arc::clone(&self.shared));
        let mut spare = Vec::new();
        let mut last_sync = Instant::now();
        loop {
            match self.next_work(&mut spare, last_sync) {
                Work::Batch(mut batch, applied, waiters) => {
                    let ok = self.batch(&batch, applied, waiters);
                    batch.clear();
                    spare = batch;
                    if ok
                        && self.running.is_none()
                        && self
                            .tail
                            .as_ref()
                            .is_some_and(|tail| tail.compaction_due(&self.compaction, &self.map))
                    {
                        self.start_compaction(Vec::new());
                    }
                }
                Work::CompactionFinished(result) => {
                    self.compaction_finished(result);
                    // Writes made during the compaction may have made the log due again, and
                    // if no write comes after them nothing else would look.
                    let (policy, map) = (self.compaction, Arc::clone(&self.map));
                    if self.with_tail(|tail| tail.compaction_due(&policy, &map)) == Some(true) {
                        self.start_compaction(Vec::new());
                    }
                }
                Work::Compact(waiters) => {
                    if self.start_compaction(waiters) {
                        // The rotation synced the segment left behind.
                        last_sync = Instant::now();
                    }
                }
                Work::PeriodicSync => {
                    if let Err(e) = self.periodic_sync() {
                        self.poison(format!("periodic log sync failed: {e}"));
                    }
                    last_sync = Instant::now();
                }
                Work::Close(done) => {
                    self.stop_compaction();
                    let result = match self.tail.take() {
                        Some(mut tail) => {
                            let result = tail
                                .file
                                .close()
                                .map_err(|e| format!("final log sync failed: {e}"));
                            if let Err(why) = &result {
                                tracing::error!(error = %why, "closing the log");
                            }
                            tracing::info!(
                                batches = tail.batches,
                                records = tail.records,
                                records_per_batch =
                                    tail.records as f64 / tail.batches.max(1) as f64,
                                "log closed"
                            );
                            result
                        }
                        None => Ok(()),
                    };
                    // Close the file (and release its lock) before reporting the close as done,
                    // so the data directory can be opened again at once.
                    drop(self);
                    if let Some(done) = done {
                        let _ = done.send(result);
                    }
                    return;
                }
            }
        }
    }

    /// Runs `f` on the segment being written; `None` once closed.
    fn with_tail<T>(&mut self, f: impl FnOnce(&mut Tail) -> T) -> Option<T> {
        self.tail.as_mut().map(f)
    }

    /// Waits for a batch, a due periodic sync or compaction, or the close request.
    fn next_work(&mut self, spare: &mut Vec<u8>, last_sync: Instant) -> Work {
        let mut st = self.shared.lock();
        loop {
            if !st.buf.is_empty() {
                let batch = std::mem::replace(&mut st.buf, std::mem::take(spare));
                let applied = std::mem::take(&mut st.queued);
                let waiters = std::mem::take(&mut st.waiters);
                return Work::Batch(batch, applied, waiters);
            }
            if let Some(result) = st.compaction_finished.take() {
                return Work::CompactionFinished(result);
            }
            if st.close.is_none() && self.running.is_none() && !st.compact_requests.is_empty() {
                return Work::Compact(std::mem::take(&mut st.compact_requests));
            }
            if let Some(done) = &mut st.close {
                return Work::Close(done.take());
            }
            st.flusher_waiting = true;
            st = match self.policy {
                FsyncPolicy::Interval if self.unsynced => {
                    let every = self.interval;
                    let elapsed = last_sync.elapsed();
                    if elapsed >= every {
                        st.flusher_waiting = false;
                        self.unsynced = false;
                        return Work::PeriodicSync;
                    }
                    self.shared
                        .wake
                        .wait_timeout(st, every - elapsed)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                _ => self
                    .shared
                    .wake
                    .wait(st)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            st.flusher_waiting = false;
        }
    }

    /// Writes a batch, and under `fsync = always` syncs it, then applies it and completes its
    /// writers; false if it failed.
    fn batch(&mut self, batch: &[u8], applied: Vec<Applied>, waiters: Vec<Done>) -> bool {
        let Some(tail) = &mut self.tail else {
            for waiter in waiters {
                let _ = waiter.send(Err("the log writer stopped".to_owned()));
            }
            return false;
        };
        let always = self.policy == FsyncPolicy::Always;
        let result = tail.file.append(batch).and_then(|()| {
            if always {
                let start = Instant::now();
                tail.file.sync()?;
                metrics::histogram!(FSYNC_DURATION).record(start.elapsed().as_secs_f64());
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.unsynced = true;
                tail.len += batch.len() as u64;
                tail.batches += 1;
                tail.records += applied.len() as u64;
                tail.uncovered += batch.len() as u64;
                metrics::histogram!(GROUP_COMMIT_RECORDS).record(applied.len() as f64);
                metrics::gauge!(LOG_BYTES).set(tail.uncovered as f64);
                let mut done = Vec::with_capacity(applied.len());
                for write in applied {
                    tail.applied_version = write.version.get();
                    done.push((write.key.clone(), write.version));
                    self.map.apply(write.key, write.value, write.version);
                }
                {
                    let mut st = self.shared.lock();
                    for (key, version) in done {
                        // Drop the key from `pending` unless a newer write to it is in flight.
                        if st.pending.get(&key).is_some_and(|p| p.version == version) {
                            st.pending.remove(&key);
                        }
                    }
                }
                for waiter in waiters {
                    let _ = waiter.send(Ok(()));
                }
                true
            }
            Err(e) => {
                let why = format!("log write failed: {e}");
                tracing::error!(error = %e, "log batch failed; failing it and every write queued behind it");
                let queued_waiters = {
                    let mut st = self.shared.lock();
                    st.buf.clear();
                    st.queued.clear();
                    st.pending.clear();
                    std::mem::take(&mut st.waiters)
                };
                for waiter in waiters.into_iter().chain(queued_waiters) {
                    let _ = waiter.send(Err(why.clone()));
                }
                if let Err(e) = tail.file.truncate(tail.len) {
                    self.poison(format!(
                        "log write failed and the log could not be cut back to its last good length: {e}"
                    ));
                }
                false
            }
        }
    }

    /// The periodic sync of `fsync = interval`, timed for `hexkv_log_fsync_duration_seconds`.
    /// Writes that arrive meanwhile queue up for the next batch.
    fn periodic_sync(&mut self) -> io::Result<()> {
        let start = Instant::now();
        self.with_tail(|tail| tail.file.sync()).unwrap_or(Ok(()))?;
        metrics::histogram!(FSYNC_DURATION).record(start.elapsed().as_secs_f64());
        Ok(())
    }

    /// Rotates to a new segment and starts the compaction thread; false if the rotation failed
    /// (the log goes on in the current segment). Between two batches: every write so far is in
    /// the old segments and applied to the map.
    fn start_compaction(&mut self, waiters: Vec<CompactDone>) -> bool {
        let rotated = self.with_tail(|tail| {
            let seq = tail.file.rotate()?;
            tail.len = HEADER_LEN as u64;
            Ok::<_, io::Error>((seq, tail.uncovered, tail.applied_version))
        });
        let (seq, uncovered, covered_version) = match rotated {
            Some(Ok(rotated)) => rotated,
            Some(Err(e)) => {
                let why = format!("compaction could not start a new log segment: {e}");
                self.compaction_failed(&why, waiters);
                return false;
            }
            None => {
                self.compaction_failed("the log is closed", waiters);
                return false;
            }
        };
        // The rotation synced the segment it left.
        self.unsynced = false;
        self.rotated = uncovered;
        fail::fail_point!("compaction::rotated");
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            dir: self.dir.clone(),
            seq,
            covered_version,
            map: Arc::clone(&self.map),
            cancel: Arc::clone(&cancel),
        };
        let shared = Arc::clone(&self.shared);
        tracing::info!(
            segment = seq,
            log_bytes = uncovered,
            live_bytes = self.map.live_bytes(),
            "compacting the log"
        );
        let spawned = thread::Builder::new()
            .name("hexkv-compact".into())
            .spawn(move || {
                // A panic (a bug) must still report, or compactions would stop for good and a
                // caller of `compact` would wait forever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                    .unwrap_or_else(|_| Err("the compaction thread failed".to_owned()));
                shared.lock().compaction_finished = Some(result);
                shared.wake.notify_one();
            });
        match spawned {
            Ok(thread) => {
                self.running = Some(Running {
                    thread,
                    cancel,
                    waiters,
                });
            }
            Err(e) => {
                let why = format!("could not start the compaction thread: {e}");
                self.compaction_failed(&why, waiters);
            }
        }
        true
    }

    fn compaction_finished(&mut self, result: Result<CompactionReport, String>) {
        let waiters = match self.running.take() {
            Some(running) => {
                let _ = running.thread.join();
                running.waiters
            }
            None => Vec::new(),
        };
        match result {
            Ok(report) => {
                let rotated = std::mem::take(&mut self.rotated);
                if let Some(uncovered) = self.with_tail(|tail| {
                    tail.uncovered = tail.uncovered.saturating_sub(rotated);
                    tail.retry_at = 0;
                    tail.uncovered
                }) {
                    metrics::gauge!(LOG_BYTES).set(uncovered as f64);
                }
                metrics::counter!(COMPACTIONS, "outcome" => "ok").increment(1);
                metrics::histogram!(COMPACTION_DURATION).record(report.duration.as_secs_f64());
                tracing::info!(
                    snapshot = %report.snapshot.display(),
                    entries = report.entries,
                    bytes = report.bytes,
                    removed_files = report.removed_files,
                    duration_ms = report.duration.as_millis() as u64,
                    "log compacted"
                );
                for waiter in waiters {
                    let _ = waiter.send(Ok(report.clone()));
                }
            }
            Err(why) => self.compaction_failed(&why, waiters),
        }
    }

    /// A failed compaction changes nothing start-up reads; the next one waits until the log has
    /// grown by another `min_log_bytes`.
    fn compaction_failed(&mut self, why: &str, waiters: Vec<CompactDone>) {
        let min_log_bytes = self.compaction.min_log_bytes;
        let retry_at = self.with_tail(|tail| {
            tail.retry_at = tail.uncovered.saturating_add(min_log_bytes);
            tail.retry_at
        });
        metrics::counter!(COMPACTIONS, "outcome" => "error").increment(1);
        tracing::error!(error = %why, retry_after_log_bytes = retry_at, "compaction failed; the log keeps every record");
        for waiter in waiters {
            let _ = waiter.send(Err(why.to_owned()));
        }
    }

    /// At close: cancels the compaction under way and waits for its thread, so the data
    /// directory is left alone once the store is closed.
    fn stop_compaction(&mut self) {
        let mut refused = std::mem::take(&mut self.shared.lock().compact_requests);
        if let Some(running) = self.running.take() {
            running.cancel.store(true, Ordering::Relaxed);
            let _ = running.thread.join();
            // It may have finished before it saw the cancel.
            match self.shared.lock().compaction_finished.take() {
                Some(Ok(report)) => {
                    for waiter in running.waiters {
                        let _ = waiter.send(Ok(report.clone()));
                    }
                }
                _ => refused.extend(running.waiters),
            }
        }
        for waiter in refused {
            let _ = waiter.send(Err("the store is closing".to_owned()));
        }
    }

    fn poison(&self, why: String) {
        tracing::error!(reason = %why, "the log refuses writes until a restart");
        self.shared.lock().poisoned = Some(why);
    }
}
