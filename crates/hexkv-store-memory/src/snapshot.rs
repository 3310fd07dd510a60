//! Snapshots: the whole map in one file, so the log before it can be removed.
//!
//! ```text
//! snapshot := header entry* footer
//! header   := "HEXKVSNP" (8 bytes) | format u32 LE (= 1) | reserved u32 LE (= 0)
//! entry    := a put record, framed and checksummed exactly as in the log
//! footer   := "HEXKVEND" (8 bytes) | entries u64 LE | covered_version u64 LE | crc u32 LE
//!             crc = CRC32C of the footer's first 24 bytes
//! ```
//!
//! The snapshot named for segment `n` holds the state of every segment below `n`: every key's
//! value as of `covered_version` at least. It is *fuzzy*: it is read from the live map while writes
//! continue, so a key written after `covered_version` may appear with its newer value (or be
//! missing if deleted). That is harmless because every such write is in segment `n` or later, which
//! start-up replays after the snapshot: replaying a write sets the key to exactly what it wrote, so
//! once the tail is replayed every key it touches holds its last write, and every key it does not
//! touch holds the value it had at `covered_version`.
//!
//! A snapshot is written to a temporary file, synced, renamed into place and the directory synced,
//! so a reader sees a whole snapshot or none. Every entry has its own checksum and the footer
//! counts them, so damage or truncation is found at start-up, never half-loaded in silence.

use std::fs::{self, File};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::dir::{self, TMP_SUFFIX};
use crate::map::ShardedMap;
use crate::record::{self, Decoded, Op, Record};

/// The first bytes of every snapshot.
const MAGIC: &[u8; 8] = b"HEXKVSNP";
/// The format this code writes and reads.
const FORMAT: u32 = 1;
const HEADER_LEN: usize = 16;
/// The first bytes of the footer (as a record length it would be out of range, so it can never be
/// mistaken for an entry).
const END: &[u8; 8] = b"HEXKVEND";
const FOOTER_LEN: usize = 8 + 8 + 8 + 4;
/// Entries encoded per read lock of a shard: small enough that a writer to that shard waits
/// microseconds, large enough that the locking costs nothing next to the encoding.
const ENTRIES_PER_CHUNK: usize = 1024;
/// How much of the file is read at a time when loading.
const READ_CHUNK: usize = 1 << 20;

/// A snapshot written to its final place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub(crate) path: PathBuf,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// Writes the snapshot for segment `seq` from `map`, whose state includes every write up to
/// `covered_version`. Stops with an error (leaving no file behind) if `cancel` is set.
pub(crate) fn write(
    data_dir: &Path,
    seq: u64,
    covered_version: u64,
    map: &ShardedMap,
    cancel: &AtomicBool,
) -> io::Result<Written> {
    let path = data_dir.join(dir::snapshot_file_name(seq));
    let tmp = data_dir.join(format!("{}{TMP_SUFFIX}", dir::snapshot_file_name(seq)));
    let result = write_tmp(&tmp, covered_version, map, cancel).and_then(|(entries, bytes)| {
        fail::fail_point!("compaction::snapshot-synced");
        fs::rename(&tmp, &path)?;
        fail::fail_point!("compaction::snapshot-renamed");
        dir::sync(data_dir)?;
        Ok(Written {
            path: path.clone(),
            entries,
            bytes,
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_tmp(
    tmp: &Path,
    covered_version: u64,
    map: &ShardedMap,
    cancel: &AtomicBool,
) -> io::Result<(u64, u64)> {
    let mut file = File::create(tmp)?;
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    file.write_all(&header)?;
    let mut bytes = HEADER_LEN as u64;
    let mut first = true;
    let entries = map.encode_in_chunks(ENTRIES_PER_CHUNK, |chunk| {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other(
                "compaction cancelled: the store is closing",
            ));
        }
        fail::fail_point!("compaction::snapshot-write", |_| Err(io::Error::other(
            "injected snapshot write failure"
        )));
        file.write_all(chunk)?;
        bytes += chunk.len() as u64;
        if first {
            first = false;
            fail::fail_point!("compaction::snapshot-partial");
        }
        Ok(())
    })?;
    file.write_all(&footer(entries, covered_version))?;
    file.sync_all()?;
    Ok((entries, bytes + FOOTER_LEN as u64))
}

fn footer(entries: u64, covered_version: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[..8].copy_from_slice(END);
    f[8..16].copy_from_slice(&entries.to_le_bytes());
    f[16..24].copy_from_slice(&covered_version.to_le_bytes());
    let crc = crc32c::crc32c(&f[..24]);
    f[24..].copy_from_slice(&crc.to_le_bytes());
    f
}

/// What a loaded snapshot held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loaded {
    pub(crate) entries: u64,
    /// Every write up to this version is in the snapshot (or overwritten by a later one).
    pub(crate) covered_version: u64,
    /// The highest version of any entry (may exceed `covered_version`: see the module docs).
    pub(crate) max_version: u64,
}

/// Why a snapshot could not be loaded: where, and what is wrong.
#[derive(Debug)]
pub(crate) enum LoadError {
    Io(io::Error),
    Damaged { offset: u64, reason: String },
}

impl From<io::Error> for LoadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads the snapshot at `path`, calling `apply` for each entry, a megabyte at a time (the file is
/// never held in memory whole).
pub(crate) fn load(path: &Path, apply: impl FnMut(Record<'_>)) -> Result<Loaded, LoadError> {
    load_from(File::open(path)?, apply)
}

pub(crate) fn load_from(
    mut file: impl Read,
    mut apply: impl FnMut(Record<'_>),
) -> Result<Loaded, LoadError> {
    let mut reader = Chunks::default();
    let damaged = |offset: u64, reason: &str| LoadError::Damaged {
        offset,
        reason: reason.to_owned(),
    };
    while reader.rest().len() < HEADER_LEN {
        if !reader.read_more(&mut file)? {
            return Err(damaged(0, "shorter than a snapshot header"));
        }
    }
    let header = reader.rest();
    if &header[..8] != MAGIC {
        return Err(damaged(0, "not a hexkv snapshot (wrong header)"));
    }
    let format = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(damaged(
            8,
            &format!("snapshot format {format} is not supported (this build reads {FORMAT})"),
        ));
    }
    if header[12..16] != [0; 4] {
        return Err(damaged(12, "damaged header (reserved bytes are not zero)"));
    }
    reader.consume(HEADER_LEN);
    let (mut entries, mut max_version) = (0u64, 0u64);
    loop {
        let offset = reader.offset();
        let rest = reader.rest();
        if rest.len() >= END.len() && &rest[..END.len()] == END {
            if rest.len() < FOOTER_LEN {
                if !reader.read_more(&mut file)? {
                    return Err(damaged(offset, "the file ends inside the footer"));
                }
                continue;
            }
            let f = &rest[..FOOTER_LEN];
            let crc = u32::from_le_bytes(f[24..28].try_into().expect("4 bytes"));
            if crc32c::crc32c(&f[..24]) != crc {
                return Err(damaged(offset, "footer checksum mismatch"));
            }
            let counted = u64::from_le_bytes(f[8..16].try_into().expect("8 bytes"));
            let covered_version = u64::from_le_bytes(f[16..24].try_into().expect("8 bytes"));
            if counted != entries {
                return Err(damaged(
                    offset,
                    &format!("the footer counts {counted} entries, the file holds {entries}"),
                ));
            }
            let trailing = rest.len() > FOOTER_LEN || reader.read_more(&mut file)?;
            if trailing {
                return Err(damaged(
                    offset + FOOTER_LEN as u64,
                    "bytes after the footer",
                ));
            }
            return Ok(Loaded {
                entries,
                covered_version,
                max_version,
            });
        }
        match record::decode(rest) {
            Decoded::Record(rec, used) => {
                if !matches!(rec.op, Op::Put(_)) {
                    return Err(damaged(offset, "a snapshot entry that is not a put"));
                }
                entries += 1;
                max_version = max_version.max(rec.version);
                apply(rec);
                reader.consume(used);
            }
            Decoded::Incomplete => {
                if !reader.read_more(&mut file)? {
                    return Err(damaged(offset, "the file ends before the footer"));
                }
            }
            Decoded::Invalid(why) => return Err(damaged(offset, why)),
        }
    }
}

/// A window over a file read in chunks: `rest` is what is read and not yet consumed.
#[derive(Default)]
struct Chunks {
    buf: Vec<u8>,
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
}

impl Chunks {
    fn rest(&self) -> &[u8] {
        &self.buf[self.start..]
    }
    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
    }
    /// Reads more of the file after what is left; false at the end of the file.
    fn read_more(&mut self, file: &mut impl Read) -> io::Result<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match file.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hexkv_core::{Key, Value, Version};
    use proptest::prelude::*;

    fn map_of(n: u64) -> ShardedMap {
        let map = ShardedMap::new(4);
        for v in 1..=n {
            let key = Key::new(format!("key{v:05}")).unwrap();
            map.apply(
                key,
                Some(Value::from(vec![v as u8; (v % 300) as usize])),
                Version::new(v),
            );
        }
        map
    }

    fn written(map: &ShardedMap) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let w = write(dir.path(), 3, 77, map, &AtomicBool::new(false)).unwrap();
        assert_eq!(w.path, dir.path().join("kv-0000000003.snap"));
        let bytes = fs::read(&w.path).unwrap();
        assert_eq!(bytes.len() as u64, w.bytes);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        bytes
    }

    fn load_bytes(bytes: &[u8]) -> Result<(Loaded, ShardedMap), LoadError> {
        let map = ShardedMap::new(2);
        let loaded = load_from(bytes, |rec| {
            let Op::Put(v) = rec.op else { unreachable!() };
            map.apply(
                Key::try_from(rec.key).unwrap(),
                Some(Value::from(v.to_vec())),
                Version::new(rec.version),
            );
        })?;
        Ok((loaded, map))
    }

    #[test]
    fn round_trip_keeps_every_entry_and_version() {
        // More entries than one chunk, so chunking is crossed inside a shard.
        let map = map_of(5000);
        let bytes = written(&map);
        let (loaded, copy) = load_bytes(&bytes).unwrap();
        assert_eq!(
            loaded,
            Loaded {
                entries: 5000,
                covered_version: 77,
                max_version: 5000
            }
        );
        for v in [1u64, 777, 5000] {
            let key = Key::new(format!("key{v:05}")).unwrap();
            assert_eq!(copy.get(&key), map.get(&key));
        }
        assert_eq!(copy.len(), 5000);
    }

    #[test]
    fn an_empty_map_makes_a_valid_snapshot() {
        let bytes = written(&ShardedMap::new(4));
        assert_eq!(bytes.len(), HEADER_LEN + FOOTER_LEN);
        assert_eq!(load_bytes(&bytes).unwrap().0.entries, 0);
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = written(&map_of(20));
        for cut in 0..bytes.len() {
            assert!(
                matches!(load_bytes(&bytes[..cut]), Err(LoadError::Damaged { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn cancel_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(dir.path(), 1, 1, &map_of(10), &AtomicBool::new(true)).unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn every_bit_flip_is_detected(bit in 0usize..100_000) {
            let bytes = written(&map_of(8));
            let mut damaged = bytes.clone();
            let bit = bit % (bytes.len() * 8);
            damaged[bit / 8] ^= 1 << (bit % 8);
            let detected = matches!(load_bytes(&damaged), Err(LoadError::Damaged { .. }));
            prop_assert!(detected, "bit {} flipped undetected", bit);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = load_bytes(&bytes);
        }
    }
}
