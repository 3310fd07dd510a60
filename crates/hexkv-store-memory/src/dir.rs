//! The data directory: its files, their names, its lock, and the log segments.
//!
//! ```text
//! data/
//!   kv.lock               held (flock) while a process has the store open
//!   kv-0000000007.snap    snapshot: the state of every segment numbered below 7
//!   kv-0000000007.log     segments 7, 8, …: the log written since that snapshot, replayed after it
//!   kv-0000000008.log     (the highest segment is the one being written)
//!   *.tmp                 a snapshot being written; removed at start if a crash left one
//! ```
//!
//! A data directory written by a build that kept a single `kv.log` is taken over at open: the file
//! becomes segment 1 (a rename, so nothing is copied).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use crate::log::LogFile;
use crate::record;

/// The lock file's name.
pub(crate) const LOCK_FILE: &str = "kv.lock";
/// The log file of builds that kept one log file and no snapshots.
pub(crate) const LEGACY_LOG: &str = "kv.log";
/// The suffix of a file being written; such a file is never read.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// The file name of log segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("kv-{seq:010}.log")
}

/// The file name of the snapshot that holds the state of every segment below `seq`.
pub fn snapshot_file_name(seq: u64) -> String {
    format!("kv-{seq:010}.snap")
}

/// What a data directory holds, sorted by number.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) segments: Vec<u64>,
    pub(crate) snapshots: Vec<u64>,
    pub(crate) temporary: Vec<PathBuf>,
    pub(crate) legacy_log: bool,
}

/// Lists the store's files in `dir`; other files are left alone.
pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == LEGACY_LOG {
            listing.legacy_log = true;
        } else if name.starts_with("kv-") && name.ends_with(TMP_SUFFIX) {
            listing.temporary.push(entry.path());
        } else if let Some(seq) = numbered(name, ".log") {
            listing.segments.push(seq);
        } else if let Some(seq) = numbered(name, ".snap") {
            listing.snapshots.push(seq);
        }
    }
    listing.segments.sort_unstable();
    listing.snapshots.sort_unstable();
    Ok(listing)
}

/// The number in `kv-NNNNNNNNNN{suffix}`.
fn numbered(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_prefix("kv-")?.strip_suffix(suffix)?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Makes the directory's entries (created, renamed or removed files) durable.
pub(crate) fn sync(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Takes the directory's lock, creating the lock file if needed.
pub(crate) fn lock(dir: &Path) -> io::Result<Result<File, PathBuf>> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Ok(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(Err(path)),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Opens a segment for reading and writing.
pub(crate) fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Creates segment `seq` with its header, durable (file and directory entry) before it returns.
pub(crate) fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let path = dir.join(segment_file_name(seq));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    file.write_all(&record::header())?;
    file.sync_all()?;
    sync(dir)?;
    Ok(file)
}

/// Removes `paths`, then makes the removals durable. Missing files are not an error.
pub(crate) fn remove_all(dir: &Path, paths: impl IntoIterator<Item = PathBuf>) -> io::Result<()> {
    let mut removed = false;
    for path in paths {
        match fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if removed {
        sync(dir)?;
    }
    Ok(())
}

/// How far the segment being written is filled with zeros ahead of its records (under
/// `fsync = always`), in steps of this size. An `fdatasync` after a write into space that already
/// exists on disk persists the data only; one that also grows the file must commit the new size
/// to the file system's journal as well. Preallocating makes that one sync in a megabyte of log
/// instead of every sync.
pub(crate) const PREALLOCATE: u64 = 1 << 20;

/// Zeros to preallocate with.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The segment being written: the log file the flusher appends to, and where its next one goes.
///
/// The file holds the header and the records up to `len`, then zeros up to `allocated` (space
/// written ahead; see [`PREALLOCATE`]). Recovery reads a zero-filled end as the end of the log.
/// When the flusher leaves a segment (rotation, close) it cuts the zeros off, so only the segment
/// being written, after a crash, ends in them.
pub(crate) struct Segment {
    dir: PathBuf,
    seq: u64,
    file: File,
    /// Where the next record goes: the end of the last record.
    len: u64,
    /// The file's length: the records, then zeros.
    allocated: u64,
    /// No preallocation is tried before `len` passes this (set after one failed, e.g. on a full
    /// disk: the records are then written without it).
    retry_at: u64,
    /// Whether to preallocate at all: only a policy that syncs every batch gains from it.
    preallocate: bool,
}

impl Segment {
    /// The segment `seq`, whose records end at `len` and whose file is `allocated` bytes long
    /// (zeros after `len`). With `preallocate`, zeros are written ahead of the records: worth it
    /// under `fsync = always`, where every batch is synced; under the other policies the syncs
    /// are few and the zeros would only double what is written.
    pub(crate) fn new(
        dir: PathBuf,
        seq: u64,
        mut file: File,
        (len, allocated): (u64, u64),
        preallocate: bool,
    ) -> io::Result<Self> {
        file.seek(SeekFrom::Start(len))?;
        Ok(Self {
            dir,
            seq,
            file,
            len,
            allocated: allocated.max(len),
            retry_at: 0,
            preallocate,
        })
    }

    /// Writes zeros from `from` (where the file's cursor is) up to the next multiple of
    /// [`PREALLOCATE`] past it, and returns the new length.
    fn write_zeros(&mut self, from: u64) -> io::Result<u64> {
        let to = (from / PREALLOCATE + 1) * PREALLOCATE;
        let mut at = from;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            self.file.write_all(&ZEROS[..n])?;
            at += n as u64;
        }
        Ok(to)
    }

    /// Cuts the zeros after the last record off, durably.
    fn trim(&mut self) -> io::Result<()> {
        if self.allocated > self.len {
            self.file.set_len(self.len)?;
            self.file.sync_all()?;
            self.allocated = self.len;
        }
        Ok(())
    }
}

impl LogFile for Segment {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        let end = self.len + bytes.len() as u64;
        self.len = end;
        if self.preallocate && end > self.allocated && end >= self.retry_at {
            // The records are in; the zeros after them are an optimisation. If they do not fit
            // (a full disk), cut them off and go on without for a while.
            match self.write_zeros(end) {
                Ok(to) => self.allocated = to,
                Err(e) => {
                    tracing::debug!(error = %e, "could not preallocate log space");
                    self.allocated = end;
                    self.retry_at = end + PREALLOCATE;
                    self.file.set_len(end)?;
                }
            }
            self.file.seek(SeekFrom::Start(end))?;
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()?;
        self.file.seek(SeekFrom::Start(len))?;
        self.len = len;
        self.allocated = len;
        Ok(())
    }
    fn rotate(&mut self) -> io::Result<u64> {
        // The segment being left must be whole on disk whatever the fsync policy, and end at its
        // last record: at start, only the last segment may end in a torn record or zeros.
        self.file.sync_data()?;
        self.trim()?;
        let next = self.seq + 1;
        self.file = create_segment(&self.dir, next)?;
        self.seq = next;
        self.len = record::HEADER_LEN as u64;
        self.allocated = self.len;
        self.retry_at = 0;
        Ok(next)
    }
    fn close(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.trim()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            segment_file_name(1),
            segment_file_name(12),
            snapshot_file_name(12),
            format!("{}{TMP_SUFFIX}", snapshot_file_name(13)),
            LEGACY_LOG.to_owned(),
            "kv-12.log".to_owned(),
            "notes.txt".to_owned(),
            "kv-00000000x1.log".to_owned(),
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let listing = list(dir.path()).unwrap();
        assert_eq!(listing.segments, [1, 12]);
        assert_eq!(listing.snapshots, [12]);
        assert_eq!(listing.temporary.len(), 1);
        assert!(listing.legacy_log);
    }

    #[test]
    fn a_second_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap().unwrap();
        assert!(lock(dir.path()).unwrap().is_err());
        drop(first);
        assert!(lock(dir.path()).unwrap().is_ok());
    }
}
