//! hexkv's embedded store: a sharded in-memory map, optionally made durable by a write-ahead log.
//!
//! [`MemoryStore`] implements [`hexkv_core::KvStore`] in two modes:
//!
//! - **Ephemeral** ([`MemoryStore::ephemeral`]): the map alone; nothing survives a restart.
//! - **Durable** ([`MemoryStore::open`]): every write goes through a write-ahead log in the data
//!   directory before it is applied and acknowledged.
//!
//! The durable mode keeps these rules (the numbers are those of `docs/architecture.md`):
//!
//! 1. **Write-ahead.** A write is applied to the map and acknowledged only after its log record is
//!    durable under the [`FsyncPolicy`]: `Always` (group commit: one `fdatasync` covers a batch of
//!    concurrent writes), `Interval` or `Never` (acknowledged once the batch is written). One
//!    thread writes the file under every policy. Log order equals apply order equals version
//!    order.
//! 2. **Framing.** Each record carries its length and a CRC32C; keys and values are binary safe
//!    (format in the `record` module).
//! 3. **Recovery.** At open the log is replayed. Zeros after the last record are the space the log
//!    writes ahead of its records (preallocation), not damage. A torn record at the tail is cut
//!    with a warning; damage followed by valid records stops the open with [`OpenError::Corrupt`]
//!    (file and offset) unless [`DurableOptions::repair`] is set.
//! 4. **Failure.** A failed write or fsync acknowledges nothing, leaves the visible state unchanged,
//!    and reports `Unavailable`; the file is cut back so the failed records never replay.
//! 5. **Bounded.** When the log outgrows the live data by [`CompactionPolicy::factor`], the map
//!    is written to a snapshot (temporary file, sync, rename, directory sync) while reads and
//!    writes go on, and the log it covers is removed; open loads the snapshot, then replays the
//!    log written after it. A crash at any step loses nothing (the `compaction` module says why).
//!
//! One process at a time: the data directory is locked while open ([`OpenError::Locked`]).

mod compaction;
mod dir;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod log;
mod map;
mod record;
mod recovery;
mod snapshot;
mod store;

pub use compaction::{CompactionPolicy, CompactionReport};
pub use dir::{segment_file_name, snapshot_file_name};
pub use log::FsyncPolicy;
pub use store::{DurableOptions, MemoryStore, OpenError, OpenReport, SnapshotLoaded};

/// The largest value a record may carry: the hard ceiling of the configurable value limit.
pub const MAX_VALUE_BYTES: usize = hexkv_core::Limits::HARD_MAX_VALUE_BYTES;
