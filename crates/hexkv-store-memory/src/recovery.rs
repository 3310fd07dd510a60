//! Start-up recovery: replays the log and decides what a damaged end means.
//!
//! The log is read front to back. At the first bytes that are not a valid record there are two
//! cases, and telling them apart is the whole point of this module:
//!
//! - **A torn tail**: the process or machine stopped in the middle of writing the last batch. No
//!   valid record follows the damage. Nothing there was ever acknowledged (a write is acknowledged
//!   only after its batch is written and, under `fsync = always`, synced), so the tail is cut off
//!   with a warning and the store starts.
//! - **Corruption**: valid records follow the damage, so acknowledged writes sit behind it. The
//!   start stops with the file and offset, unless the operator asked for `repair`, which cuts the
//!   log at that offset (and loses what follows) on purpose.
//!
//! A log that ends in zeros instead is not damaged: the log writes zeros ahead of its records
//! (preallocation, so most syncs persist data only), and a crash leaves them behind. The log
//! ends where they start.
//!
//! "A valid record follows" is searched byte by byte after the damage, accepting only a record
//! whose checksum matches and whose version continues the history: a random match is about as
//! likely as a CRC32C collision.

use std::io::{self, Read};
use std::path::Path;

use crate::OpenError;
use crate::record::{self, Decoded, FORMAT, HEADER_LEN, MAGIC, Record};

/// What replay found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Bytes of the file that hold the header and valid records; the log continues from here.
    pub(crate) valid_len: u64,
    /// The highest version in the log (`after_version` for a log without records).
    pub(crate) last_version: u64,
    /// How many records were replayed.
    pub(crate) records: u64,
    /// Bytes cut off the end, if any (a torn tail, or damage cut by `repair`).
    pub(crate) cut: Option<Cut>,
    /// Zeros after the last record (preallocated space), not counted as damage.
    pub(crate) zeroed: u64,
}

/// Damage cut off the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cut {
    /// Where the damage starts.
    pub(crate) offset: u64,
    /// How many bytes were cut.
    pub(crate) bytes: u64,
    /// Whether valid records were lost (only with `repair`).
    pub(crate) lost_records: bool,
}

/// How much of a log file replay reads at a time: the whole file is never held in memory (a
/// large buffer, once freed, would stay in the process's resident memory).
pub(crate) const CHUNK: usize = 1 << 20;

/// Replays `data` (a whole log file, header included), calling `apply` for every valid record in
/// order.
///
/// Versions must rise above `after_version` (the history before this file).
#[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
pub(crate) fn replay(
    path: &Path,
    data: &[u8],
    repair: bool,
    after_version: u64,
    apply: impl FnMut(Record<'_>),
) -> Result<Recovered, OpenError> {
    replay_stream(path, data, CHUNK, repair, after_version, apply)
}

/// Replays the log file read from `source`, `chunk` bytes at a time (more when a record is
/// larger), calling `apply` for every valid record in order. Only where the records stop before
/// the end of the file is the rest read whole, to tell a torn tail from corruption.
///
/// Versions must rise above `after_version` (the history before this file).
pub(crate) fn replay_stream(
    path: &Path,
    mut source: impl Read,
    chunk: usize,
    repair: bool,
    after_version: u64,
    mut apply: impl FnMut(Record<'_>),
) -> Result<Recovered, OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_owned(),
        source,
    };
    let chunk = chunk.max(1);
    let mut buf = Vec::with_capacity(chunk.max(HEADER_LEN));
    let mut eof = fill(&mut source, &mut buf, HEADER_LEN).map_err(io)?;
    check_header(path, &buf)?;
    // `buf` holds the file from offset `base`; the next record starts at `buf[pos]`.
    let (mut base, mut pos) = (0usize, HEADER_LEN);
    let mut last_version = after_version;
    let mut records = 0u64;
    loop {
        let problem = match record::decode(&buf[pos..]) {
            Decoded::Record(rec, used) if rec.version > last_version => {
                last_version = rec.version;
                records += 1;
                apply(rec);
                pos += used;
                continue;
            }
            Decoded::Incomplete if !eof => {
                // Keep the partial record, read on.
                buf.drain(..pos);
                base += pos;
                pos = 0;
                let want = buf.len() + chunk;
                eof = fill(&mut source, &mut buf, want).map_err(io)?;
                continue;
            }
            _ if pos == buf.len() => {
                return Ok(Recovered {
                    valid_len: (base + pos) as u64,
                    last_version,
                    records,
                    cut: None,
                    zeroed: 0,
                });
            }
            Decoded::Record(..) => "version does not increase",
            Decoded::Incomplete => "record ends past the end of the file",
            Decoded::Invalid(why) => why,
        };
        // Damage, or the end of the records: read the rest, and look for valid records behind it.
        source.read_to_end(&mut buf).map_err(io)?;
        let offset = (base + pos) as u64;
        if buf[pos..].iter().all(|&b| b == 0) {
            return Ok(Recovered {
                valid_len: offset,
                last_version,
                records,
                cut: None,
                zeroed: (buf.len() - pos) as u64,
            });
        }
        let lost_records = valid_record_after(&buf, pos, last_version);
        if lost_records && !repair {
            return Err(OpenError::Corrupt {
                path: path.to_owned(),
                offset,
                reason: problem.to_owned(),
            });
        }
        return Ok(Recovered {
            valid_len: offset,
            last_version,
            records,
            cut: Some(Cut {
                offset,
                bytes: (buf.len() - pos) as u64,
                lost_records,
            }),
            zeroed: 0,
        });
    }
}

/// Reads from `source` until `buf` holds `len` bytes or the source ends; whether it ended.
fn fill(source: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> io::Result<bool> {
    while buf.len() < len {
        let before = buf.len();
        match source.by_ref().take((len - before) as u64).read_to_end(buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

fn check_header(path: &Path, data: &[u8]) -> Result<(), OpenError> {
    let not_a_log = |reason: &str| OpenError::NotALog {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    if data.len() < HEADER_LEN || &data[..8] != MAGIC {
        return Err(not_a_log("missing or wrong header"));
    }
    let format = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(not_a_log(&format!(
            "format {format} is not supported (this build reads format {FORMAT})"
        )));
    }
    Ok(())
}

/// Whether a record that continues the history (version above `last_version`) starts anywhere
/// after `damaged`.
///
/// Every position is tried, so a damaged length field cannot hide what follows. To keep this linear
/// on large damaged regions, the checksum is computed only where the cheap fields are plausible: a
/// known operation and a version no further above `last_version` than there are bytes left (each
/// version takes at least one record).
fn valid_record_after(data: &[u8], damaged: usize, last_version: u64) -> bool {
    let ceiling = last_version.saturating_add(data.len() as u64);
    (damaged + 1..data.len()).any(|at| {
        let Some(fixed) = data.get(at + 8..at + 17) else {
            return false;
        };
        let version = u64::from_le_bytes(fixed[1..9].try_into().expect("8 bytes"));
        (1..=2).contains(&fixed[0])
            && version > last_version
            && version <= ceiling
            && matches!(record::decode(&data[at..]), Decoded::Record(..))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Op, encode, header};

    fn log_of(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut data = header().to_vec();
        let mut starts = Vec::new();
        for v in 1..=n {
            starts.push(data.len());
            let key = format!("key{v}");
            encode(
                &Record {
                    version: v,
                    key: key.as_bytes(),
                    op: Op::Put(b"value"),
                },
                &mut data,
            );
        }
        (data, starts)
    }

    fn replay_count(data: &[u8], repair: bool) -> Result<(Recovered, u64), OpenError> {
        let mut n = 0;
        let whole = replay(Path::new("test.log"), data, repair, 0, |_| n += 1).map(|r| (r, n));
        // Read in small pieces, so records and the header straddle every kind of boundary:
        // the same records and the same verdict.
        for chunk in [1, 7, 64] {
            let mut m = 0;
            let streamed = replay_stream(Path::new("test.log"), data, chunk, repair, 0, |_| m += 1)
                .map(|r| (r, m));
            assert_eq!(
                format!("{streamed:?}"),
                format!("{whole:?}"),
                "chunk {chunk}"
            );
        }
        whole
    }

    #[test]
    fn a_log_is_read_a_chunk_at_a_time() {
        /// Counts the bytes asked for at once.
        struct Counting<'a> {
            data: &'a [u8],
            largest_read: usize,
        }
        impl Read for Counting<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                self.largest_read = self.largest_read.max(out.len());
                self.data.read(out)
            }
        }
        let (data, _) = log_of(2000);
        let mut source = Counting {
            data: &data,
            largest_read: 0,
        };
        let mut n = 0;
        let r = replay_stream(Path::new("t.log"), &mut source, 1024, false, 0, |_| n += 1).unwrap();
        assert_eq!((n, r.records, r.valid_len), (2000, 2000, data.len() as u64));
        assert!(data.len() > 40_000);
        assert!(source.largest_read <= 2048, "{}", source.largest_read);
    }

    #[test]
    fn clean_log_replays_everything() {
        let (data, _) = log_of(5);
        let (r, n) = replay_count(&data, false).unwrap();
        assert_eq!((n, r.records, r.last_version), (5, 5, 5));
        assert_eq!(r.valid_len, data.len() as u64);
        assert_eq!(r.cut, None);
    }

    #[test]
    fn torn_tail_is_cut_at_every_truncation_point() {
        let (data, starts) = log_of(3);
        let last = *starts.last().unwrap();
        for cut in last + 1..data.len() {
            let (r, n) = replay_count(&data[..cut], false).unwrap();
            assert_eq!(n, 2);
            assert_eq!(r.valid_len, last as u64);
            assert_eq!(
                r.cut,
                Some(Cut {
                    offset: last as u64,
                    bytes: (cut - last) as u64,
                    lost_records: false
                })
            );
        }
    }

    #[test]
    fn a_zero_filled_end_is_the_end_of_the_log() {
        let (mut data, starts) = log_of(2);
        let end = data.len();
        data.extend_from_slice(&[0u8; 4096]);
        let (r, n) = replay_count(&data, false).unwrap();
        assert_eq!((n, r.records), (2, 2));
        assert_eq!((r.valid_len, r.cut, r.zeroed), (end as u64, None, 4096));
        // Fewer zeros than a record's frame too.
        let (r, _) = replay_count(&data[..end + 3], false).unwrap();
        assert_eq!((r.valid_len, r.cut, r.zeroed), (end as u64, None, 3));
        // A record torn inside the zeros is a torn tail, cut with what follows it.
        let mut torn = data[..starts[1]].to_vec();
        torn.extend_from_slice(&data[starts[1]..starts[1] + 10]);
        torn.extend_from_slice(&[0u8; 4096]);
        let (r, n) = replay_count(&torn, false).unwrap();
        assert_eq!((n, r.valid_len, r.zeroed), (1, starts[1] as u64, 0));
        assert_eq!(
            r.cut.map(|c| (c.bytes, c.lost_records)),
            Some((4106, false))
        );
    }

    #[test]
    fn zeros_followed_by_records_are_corruption() {
        let (mut data, starts) = log_of(3);
        data[starts[1]..starts[2]].fill(0);
        match replay_count(&data, false).unwrap_err() {
            OpenError::Corrupt { offset, .. } => assert_eq!(offset, starts[1] as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn corruption_before_valid_records_stops_with_the_offset() {
        let (mut data, starts) = log_of(4);
        data[starts[1] + 12] ^= 0x40; // inside the second record's payload
        let err = replay_count(&data, false).unwrap_err();
        match err {
            OpenError::Corrupt { offset, .. } => assert_eq!(offset, starts[1] as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let (r, n) = replay_count(&data, true).unwrap();
        assert_eq!(n, 1);
        assert!(r.cut.unwrap().lost_records);
    }

    #[test]
    fn damaged_length_before_valid_records_is_corruption() {
        let (mut data, starts) = log_of(3);
        data[starts[0]] = 0xff; // length field of the first record
        assert!(matches!(
            replay_count(&data, false),
            Err(OpenError::Corrupt { .. })
        ));
    }

    #[test]
    fn wrong_header_is_not_a_log() {
        assert!(matches!(
            replay_count(b"hello world, not a log", false),
            Err(OpenError::NotALog { .. })
        ));
        let mut data = header().to_vec();
        data[8] = 9;
        assert!(matches!(
            replay_count(&data, false),
            Err(OpenError::NotALog { .. })
        ));
    }
}
