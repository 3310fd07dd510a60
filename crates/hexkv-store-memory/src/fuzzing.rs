//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`). Not a stable API.
//!
//! Each function takes arbitrary bytes, must never panic on them, and asserts what must hold
//! for any input.

use std::path::Path;

use crate::record::{self, Decoded};
use crate::{recovery, snapshot};

/// The log's record decoder and recovery: a decoded record re-encodes to the same bytes, and
/// replaying the bytes as a log (with and without repair) never panics and never reports more
/// valid bytes than there are.
pub fn log_record(data: &[u8]) {
    if let Decoded::Record(rec, used) = record::decode(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        record::encode(&rec, &mut again);
        assert_eq!(
            again,
            &data[..used],
            "a decoded record must re-encode to its bytes"
        );
    }
    let mut log = record::header().to_vec();
    log.extend_from_slice(data);
    for repair in [false, true] {
        let mut last = 0;
        if let Ok(recovered) = recovery::replay(Path::new("fuzz.log"), &log, repair, 0, |rec| {
            assert!(rec.version > last, "replay must apply rising versions only");
            last = rec.version;
        }) {
            assert!(recovered.valid_len as usize <= log.len());
            assert_eq!(recovered.last_version, last);
        }
    }
}

/// The snapshot decoder: never panics; what it accepts has a footer that counts its entries.
pub fn snapshot(data: &[u8]) {
    let mut entries = 0u64;
    if let Ok(loaded) = snapshot::load_from(data, |_| entries += 1) {
        assert_eq!(loaded.entries, entries);
    }
}
