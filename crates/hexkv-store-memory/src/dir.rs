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
use std::io::{self, Write as _};
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

/// Opens a segment for reading and appending.
pub(crate) fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).open(path)
}

/// Creates segment `seq` with its header, durable (file and directory entry) before it returns.
pub(crate) fn create_segment(dir: &Path, seq: u64) -> io::Result<File> {
    let path = dir.join(segment_file_name(seq));
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
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

/// The segment being written: the log file the flusher appends to, and where its next one goes.
pub(crate) struct Segment {
    dir: PathBuf,
    seq: u64,
    file: File,
}

impl Segment {
    pub(crate) fn new(dir: PathBuf, seq: u64, file: File) -> Self {
        Self { dir, seq, file }
    }
}

impl LogFile for Segment {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_all()
    }
    fn rotate(&mut self) -> io::Result<u64> {
        // The segment being left must be whole on disk whatever the fsync policy: at start, only
        // the last segment may end in a torn record.
        self.file.sync_data()?;
        let next = self.seq + 1;
        self.file = create_segment(&self.dir, next)?;
        self.seq = next;
        Ok(next)
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
