//! The log's on-disk format: a file header, then length-prefixed, CRC32C-checked records.
//!
//! ```text
//! file   := header record*
//! header := "HEXKVLOG" (8 bytes) | format u32 LE (= 1) | reserved u32 LE (= 0)
//! record := len u32 LE | crc u32 LE | payload (len bytes)
//!           crc = CRC32C(len bytes ++ payload), so a damaged length is caught too
//! payload:= op u8 (1 put, 2 delete) | version u64 LE | key_len u16 LE | key | value (put only: the rest)
//! ```
//!
//! Keys and values are stored as raw bytes, so any value is binary safe. The decoder never trusts a
//! length before checking it against what is left and against [`MAX_PAYLOAD`].

/// The first bytes of every log file.
pub(crate) const MAGIC: &[u8; 8] = b"HEXKVLOG";
/// The format this code writes and reads.
pub(crate) const FORMAT: u32 = 1;
/// Length of the file header.
pub(crate) const HEADER_LEN: usize = 16;
/// Length of a record's frame (len + crc).
pub(crate) const FRAME_LEN: usize = 8;
/// The longest payload the decoder accepts: the longest key, the largest value the configuration
/// allows ([`crate::MAX_VALUE_BYTES`]) and the fixed fields.
pub(crate) const MAX_PAYLOAD: usize = 1 + 8 + 2 + hexkv_core::Key::MAX_LEN + crate::MAX_VALUE_BYTES;

const OP_PUT: u8 = 1;
const OP_DELETE: u8 = 2;
const FIXED: usize = 1 + 8 + 2;

/// The encoded length of a put record of a `key_len`-byte key and a `value_len`-byte value.
pub(crate) fn encoded_len(key_len: usize, value_len: usize) -> u64 {
    (FRAME_LEN + FIXED + key_len + value_len) as u64
}

/// The file header.
pub(crate) fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
    h
}

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op<'a> {
    /// Write `value` under the key.
    Put(&'a [u8]),
    /// Remove the key.
    Delete,
}

/// A decoded record, borrowing from the buffer it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) version: u64,
    pub(crate) key: &'a [u8],
    pub(crate) op: Op<'a>,
}

/// Appends the encoded record to `out`.
pub(crate) fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let value: &[u8] = match record.op {
        Op::Put(v) => v,
        Op::Delete => &[],
    };
    let payload_len = FIXED + record.key.len() + value.len();
    let key_len = u16::try_from(record.key.len()).expect("keys are at most 1024 bytes");
    let len = u32::try_from(payload_len).expect("records are bounded by MAX_PAYLOAD");
    let start = out.len();
    out.reserve(FRAME_LEN + payload_len);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(match record.op {
        Op::Put(_) => OP_PUT,
        Op::Delete => OP_DELETE,
    });
    out.extend_from_slice(&record.version.to_le_bytes());
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(record.key);
    out.extend_from_slice(value);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The result of decoding at one offset.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded<'a> {
    /// A valid record and the number of bytes it occupies.
    Record(Record<'a>, usize),
    /// The buffer ends inside the record (a torn write, or the end of the data).
    Incomplete,
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

/// Decodes the record at the start of `buf`.
pub(crate) fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < FRAME_LEN {
        return Decoded::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if !(FIXED..=MAX_PAYLOAD).contains(&len) {
        return Decoded::Invalid("record length out of range");
    }
    let Some(payload) = buf.get(FRAME_LEN..FRAME_LEN + len) else {
        return Decoded::Incomplete;
    };
    if crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), payload) != crc {
        return Decoded::Invalid("checksum mismatch");
    }
    let version = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
    let key_len = u16::from_le_bytes(payload[9..11].try_into().expect("2 bytes")) as usize;
    let Some(key) = payload.get(FIXED..FIXED + key_len) else {
        return Decoded::Invalid("key length exceeds record");
    };
    let rest = &payload[FIXED + key_len..];
    let op = match payload[0] {
        OP_PUT => Op::Put(rest),
        OP_DELETE if rest.is_empty() => Op::Delete,
        OP_DELETE => return Decoded::Invalid("delete record carries a value"),
        _ => return Decoded::Invalid("unknown operation"),
    };
    Decoded::Record(Record { version, key, op }, FRAME_LEN + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(record: &Record<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(record, &mut out);
        out
    }

    #[test]
    fn put_and_delete_round_trip() {
        for record in [
            Record {
                version: 1,
                key: b"a",
                op: Op::Put(b""),
            },
            Record {
                version: u64::MAX,
                key: b"k/\xc3\xa9",
                op: Op::Put(&[0, 255, 10, 13]),
            },
            Record {
                version: 42,
                key: b"gone",
                op: Op::Delete,
            },
        ] {
            let bytes = encoded(&record);
            assert_eq!(decode(&bytes), Decoded::Record(record, bytes.len()));
        }
    }

    #[test]
    fn short_buffers_are_incomplete() {
        let bytes = encoded(&Record {
            version: 7,
            key: b"key",
            op: Op::Put(b"value"),
        });
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn zeroed_tail_is_invalid_not_a_record() {
        assert!(matches!(decode(&[0u8; 64]), Decoded::Invalid(_)));
    }

    proptest! {
        #[test]
        fn round_trip(version: u64, key in proptest::collection::vec(any::<u8>(), 0..1024),
                      value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4096))) {
            let record = Record { version, key: &key, op: value.as_deref().map_or(Op::Delete, Op::Put) };
            let bytes = encoded(&record);
            prop_assert_eq!(decode(&bytes), Decoded::Record(record, bytes.len()));
        }

        #[test]
        fn every_truncation_is_incomplete(key in proptest::collection::vec(any::<u8>(), 0..64),
                                          value in proptest::collection::vec(any::<u8>(), 0..256),
                                          cut: proptest::sample::Index) {
            let bytes = encoded(&Record { version: 3, key: &key, op: Op::Put(&value) });
            let cut = cut.index(bytes.len());
            prop_assert_eq!(decode(&bytes[..cut]), Decoded::Incomplete);
        }

        #[test]
        fn every_bit_flip_is_detected(value in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..1024) {
            let record = Record { version: 9, key: b"key", op: Op::Put(&value) };
            let mut bytes = encoded(&record);
            let bit = bit % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            // A flipped length may make the record look longer than the buffer: incomplete, not wrong.
            prop_assert!(!matches!(decode(&bytes), Decoded::Record(..)));
        }

        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
