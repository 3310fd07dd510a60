//! Compaction: bounding the log by a snapshot of the map (durability rule 5).
//!
//! # How the log is compacted
//! 1. **Rotate** (log writer thread, between two batches): the current segment is synced and
//!    segment `n` is created (header, file and directory synced). Every write up to this moment,
//!    up to `covered_version`, is in a segment below `n` and already applied to the map; every
//!    later write goes to `n` or after. Writes pause only for this: one file creation and syncs.
//! 2. **Snapshot** (a `hexkv-compact` thread): the map is encoded a chunk at a time under each
//!    shard's read lock into `kv-n.snap.tmp`, which is synced, renamed to `kv-n.snap`, and the
//!    directory synced. Reads and writes go on meanwhile (see the `snapshot` module for why a
//!    view of the map taken while writes continue is still exact once the tail is replayed).
//! 3. **Clean up**: every segment and snapshot below `n` is removed, and the directory synced.
//!
//! A crash at any point leaves a directory that opens with nothing lost: before step 2's rename
//! there is no new snapshot (the temporary file is removed at start and every segment replays);
//! after it, start-up loads `kv-n.snap`, removes what it covers if step 3 did not finish, and
//! replays segments `n` and later. The failpoints named `compaction::*` (the `failpoints`
//! feature) stop a test process at each of these points.
//!
//! A compaction that fails (a full disk) changes nothing that start-up reads: the temporary file
//! is removed, the log keeps every record, writes go on, and the next attempt waits until the log
//! has grown by another [`CompactionPolicy::min_log_bytes`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use hexkv_core::Version;

use crate::dir;
use crate::map::ShardedMap;
use crate::snapshot;

/// When the log is compacted into a snapshot: the one declaration of the setting, read by the
/// service's configuration (`[store.memory.compaction]`) as well as by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionPolicy {
    /// Compact by itself when the log outgrows the data. Off, the log grows until
    /// [`MemoryStore::compact`](crate::MemoryStore::compact) is called.
    pub automatic: bool,
    /// Compact once the log (the segments written since the last snapshot) is this many times
    /// the size of the live data…
    pub factor: u32,
    /// …and at least this many bytes, so a small store is not compacted over and over.
    pub min_log_bytes: u64,
}

impl Default for CompactionPolicy {
    /// Automatic, at twice the live data and at least 64 MiB of log.
    fn default() -> Self {
        Self {
            automatic: true,
            factor: 2,
            min_log_bytes: 64 * 1024 * 1024,
        }
    }
}

impl CompactionPolicy {
    /// Whether a log of `log_bytes` over `live_bytes` of data is due for compaction.
    pub(crate) fn is_due(&self, log_bytes: u64, live_bytes: u64) -> bool {
        self.automatic
            && log_bytes >= self.min_log_bytes
            && log_bytes >= live_bytes.saturating_mul(u64::from(self.factor.max(1)))
    }
}

/// What a finished compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// The snapshot written.
    pub snapshot: PathBuf,
    /// Keys in it.
    pub entries: u64,
    /// Its size.
    pub bytes: u64,
    /// Every write up to this version is in the snapshot.
    pub covered_version: Version,
    /// Segments and snapshots removed because the new snapshot covers them.
    pub removed_files: usize,
    /// How long the snapshot and the clean-up took (writes were paused only for the rotation).
    pub duration: Duration,
}

/// A compaction to run after a rotation to segment `seq`.
pub(crate) struct Job {
    pub(crate) dir: PathBuf,
    pub(crate) seq: u64,
    pub(crate) covered_version: u64,
    pub(crate) map: Arc<ShardedMap>,
    pub(crate) cancel: Arc<AtomicBool>,
}

impl Job {
    /// Steps 2 and 3: the snapshot, then the removal of what it covers.
    pub(crate) fn run(self) -> Result<CompactionReport, String> {
        let start = Instant::now();
        let written = snapshot::write(
            &self.dir,
            self.seq,
            self.covered_version,
            &self.map,
            &self.cancel,
        )
        .map_err(|e| format!("writing the snapshot failed: {e}"))?;
        let removed = remove_covered(&self.dir, self.seq)
            .map_err(|e| format!("removing the log the snapshot covers failed: {e}"))?;
        Ok(CompactionReport {
            snapshot: written.path,
            entries: written.entries,
            bytes: written.bytes,
            covered_version: Version::new(self.covered_version),
            removed_files: removed,
            duration: start.elapsed(),
        })
    }
}

/// Removes every segment and snapshot numbered below `seq` (all covered by snapshot `seq`), oldest
/// first, then syncs the directory; returns how many files went.
pub(crate) fn remove_covered(data_dir: &std::path::Path, seq: u64) -> std::io::Result<usize> {
    let listing = dir::list(data_dir)?;
    let covered: Vec<PathBuf> = listing
        .segments
        .iter()
        .filter(|&&s| s < seq)
        .map(|&s| data_dir.join(dir::segment_file_name(s)))
        .chain(
            listing
                .snapshots
                .iter()
                .filter(|&&s| s < seq)
                .map(|&s| data_dir.join(dir::snapshot_file_name(s))),
        )
        .collect();
    fail::fail_point!("compaction::before-cleanup");
    let mut removed = 0;
    for path in &covered {
        dir::remove_all(data_dir, [path.clone()])?;
        removed += 1;
        if removed == 1 {
            fail::fail_point!("compaction::cleanup-partial");
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_when_the_log_outgrows_the_data_and_the_floor() {
        let policy = CompactionPolicy {
            automatic: true,
            factor: 2,
            min_log_bytes: 1000,
        };
        assert!(!policy.is_due(999, 0), "under the floor");
        assert!(policy.is_due(1000, 500));
        assert!(!policy.is_due(1000, 501), "under twice the data");
        assert!(policy.is_due(10_000, 5000));
        let off = CompactionPolicy {
            automatic: false,
            ..policy
        };
        assert!(!off.is_due(u64::MAX, 0));
    }
}
