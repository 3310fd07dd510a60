//! Request ids shared by the front ends: the header, what a client may send, and how one is made.
//!
//! A client's `x-request-id` is kept when it is a sane token (1–128 characters of
//! `[A-Za-z0-9._:-]`), so ids can be correlated across services; otherwise one is made: a random
//! per-process prefix and a counter (`3f9a1c07d2b4e815-000000000000002a`), unique without a
//! system call per request.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};

/// The header (or gRPC metadata key) that carries the request id, both ways.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Whether a client's id is kept.
pub fn is_acceptable(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The client's id when acceptable, else a new one; marked sensitive either way.
///
/// Every response carries its own id, so HTTP/2's header compression (HPACK) must not index it
/// ("literal, never indexed"): indexed, each id took a new entry of the connection's 4 KiB
/// header table on both ends, pushing out the entries that do repeat (`content-type`,
/// `grpc-status`) and making every response's lookup compare its id with the fifty before it
/// (docs/performance.md, "The request id in the gRPC header table"). HTTP/1.1 ignores the mark.
pub fn from_client(given: Option<&HeaderValue>) -> HeaderValue {
    let mut id = match given {
        Some(given) if is_acceptable(given.as_bytes()) => given.clone(),
        _ => new_id(),
    };
    id.set_sensitive(true);
    id
}

/// `<16 hex digits of a random per-process prefix>-<16 hex digits of a counter>`, formatted by
/// hand into a stack buffer (this runs on every request without an id).
pub fn new_id() -> HeaderValue {
    static PREFIX: LazyLock<u64> = LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        // A random seed from the standard library's hasher keys, mixed with the time and pid.
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        hasher.write_u32(std::process::id());
        hasher.finish()
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [b'-'; 33];
    for (i, word) in [*PREFIX, n].into_iter().enumerate() {
        for digit in 0..16 {
            id[i * 17 + digit] = HEX[(word >> (60 - 4 * digit)) as usize & 0xf];
        }
    }
    // Owned by a shared buffer from the start: the id is cloned onto the request, the response
    // and into the log context, and a copied slice would allocate again on its first clone.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
        .expect("hex digits and a dash are a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acceptable_ids() {
        assert!(is_acceptable(b"abc-123_x.y:z"));
        assert!(!is_acceptable(b""));
        assert!(!is_acceptable(b"has space"));
        assert!(!is_acceptable("x".repeat(129).as_bytes()));
    }

    #[test]
    fn made_ids_are_unique_and_acceptable() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert!(is_acceptable(a.as_bytes()));
        assert_eq!(from_client(Some(&HeaderValue::from_static("mine"))), "mine");
        assert!(from_client(Some(&HeaderValue::from_static("mine"))).is_sensitive());
        assert!(from_client(None).is_sensitive());
        assert_ne!(
            from_client(Some(&HeaderValue::from_static("not mine"))),
            "not mine"
        );
    }
}
