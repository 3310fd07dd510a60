//! Domain types: parsed once at the edge, trusted everywhere after.
//!
//! Every type here has a fallible constructor that enforces its rules ("parse, don't validate"), so a
//! function that receives a [`Key`] never checks it again. Transports convert their DTOs into these
//! types exactly once; stores receive only valid data.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a key (or a listing prefix) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// The key has no bytes.
    #[error("key must not be empty")]
    Empty,
    /// The key is longer than [`Key::MAX_LEN`] bytes.
    #[error("key is {len} bytes long; the limit is {max} bytes", max = Key::MAX_LEN)]
    TooLong {
        /// The key's length in bytes.
        len: usize,
    },
    /// The key holds a control character (Unicode category Cc).
    #[error("key contains a control character at byte {index}")]
    ControlCharacter {
        /// Byte offset of the offending character.
        index: usize,
    },
    /// The key's bytes are not valid UTF-8.
    #[error("key is not valid UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

/// A key: 1 to 1024 bytes of UTF-8 without control characters.
///
/// Keys may contain `/`, so hierarchical names (`users/42/profile`) work and list well by prefix.
/// Keys order byte-wise (which for UTF-8 is code-point order), the order listings use.
///
/// The text is shared (`Arc<str>`): a key is cloned into the map, the log's in-flight table and
/// every response, and a clone is a reference count, not an allocation.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(Arc<str>);

impl Key {
    /// The longest key, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Parses a key from a string.
    pub fn new(key: impl Into<String>) -> Result<Self, KeyError> {
        let key = key.into();
        check_key_text(&key)?;
        Ok(Self(key.into()))
    }

    /// Parses a key from raw bytes (for example a percent-decoded URL path segment).
    pub fn from_utf8(bytes: Vec<u8>) -> Result<Self, KeyError> {
        Self::from_bytes(&bytes)
    }

    /// Parses a key from borrowed raw bytes, with one allocation (the shared text).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|e| KeyError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        Self::parse(text)
    }

    /// Parses a key from borrowed text, with one allocation (the shared text).
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        check_key_text(text)?;
        Ok(Self(Arc::from(text)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a key has at least one byte. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

fn check_key_text(text: &str) -> Result<(), KeyError> {
    if text.is_empty() {
        return Err(KeyError::Empty);
    }
    if text.len() > Key::MAX_LEN {
        return Err(KeyError::TooLong { len: text.len() });
    }
    if let Some((index, _)) = text.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::ControlCharacter { index });
    }
    Ok(())
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets ordered maps keyed by [`Key`] be searched with a `&str` (prefix ranges).
/// Sound because `Key`'s ordering, equality and hash are those of its text.
impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Key {
    type Error = KeyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&str> for Key {
    type Error = KeyError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<&[u8]> for Key {
    type Error = KeyError;
    fn try_from(value: &[u8]) -> Result<Self, Self::Error> {
        Self::from_utf8(value.to_vec())
    }
}

impl FromStr for Key {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Key::new(text).map_err(serde::de::Error::custom)
    }
}

/// A value: opaque bytes. Cheap to clone (reference counted).
///
/// The size limit is configuration and is enforced by the service
/// ([`crate::KeyValueService`]), not by this type.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Value(Bytes);

impl Value {
    /// Wraps bytes as a value.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// The value's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as a shared buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The value's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value has no bytes (an empty value is a valid value).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Value {
    /// Values may be secrets: their bytes are never printed, only their size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

impl From<Bytes> for Value {
    fn from(value: Bytes) -> Self {
        Self(value)
    }
}

impl From<Vec<u8>> for Value {
    fn from(value: Vec<u8>) -> Self {
        Self(value.into())
    }
}

impl From<&'static str> for Value {
    fn from(value: &'static str) -> Self {
        Self(Bytes::from_static(value.as_bytes()))
    }
}

/// Why a value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValueError {
    /// The value is larger than the configured limit.
    #[error("value is {len} bytes; the limit is {max} bytes")]
    TooLarge {
        /// The value's size in bytes.
        len: usize,
        /// The configured limit in bytes.
        max: usize,
    },
}

/// A store-wide revision number.
///
/// Every write (put or delete of an existing key) takes the next version; versions strictly
/// increase, are never reused and survive restarts. An entry carries the version of its last write,
/// which makes it usable for compare-and-swap ([`Precondition::Version`]) and as an HTTP `ETag`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// Wraps a raw revision number.
    pub const fn new(version: u64) -> Self {
        Self(version)
    }

    /// The raw revision number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one.
    ///
    /// # Panics
    /// Never in practice: a store would need 2^64 writes.
    #[must_use]
    pub const fn next(self) -> Self {
        match self.0.checked_add(1) {
            Some(v) => Self(v),
            None => panic!("version space exhausted"),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Version {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

/// A stored entry: the key, its value and the version of its last write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's key.
    pub key: Key,
    /// The entry's value.
    pub value: Value,
    /// The version of the write that produced this value.
    pub version: Version,
}

/// A condition a write must meet to take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    /// No condition: write unconditionally.
    #[default]
    None,
    /// Create only: the key must not exist.
    Absent,
    /// Compare-and-swap: the key must exist with exactly this version.
    Version(Version),
}

impl Precondition {
    /// Whether a key whose current version is `current` (`None`: absent) meets this condition.
    pub fn is_met_by(self, current: Option<Version>) -> bool {
        match self {
            Precondition::None => true,
            Precondition::Absent => current.is_none(),
            Precondition::Version(expected) => current == Some(expected),
        }
    }
}

/// The outcome of a successful put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// The version the write was given.
    pub version: Version,
    /// True when the key did not exist before the write.
    pub created: bool,
}

/// The outcome of a successful delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The key existed and was removed; the removal was given this version.
    Deleted {
        /// The version of the delete.
        version: Version,
    },
    /// The key did not exist; nothing was written.
    Absent,
}

/// One item of a listing: a key and the version of its value (values are fetched with `get`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListItem {
    /// The key.
    pub key: Key,
    /// The version of its current value.
    pub version: Version,
}

/// Why a listing request was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ListQueryError {
    /// The prefix holds a control character.
    #[error("invalid prefix: {0}")]
    Prefix(KeyError),
    /// The prefix is longer than [`ListQuery::MAX_PREFIX_CHARS`] characters.
    #[error("invalid prefix: {chars} characters, at most {max} are allowed", max = ListQuery::MAX_PREFIX_CHARS)]
    PrefixTooLong {
        /// Its length, in characters.
        chars: usize,
    },
    /// The limit is outside `1..=ListQuery::MAX_LIMIT`.
    #[error("limit must be between 1 and {max}, got {value}", max = ListQuery::MAX_LIMIT)]
    Limit {
        /// The rejected limit.
        value: u64,
    },
    /// The cursor was not produced by this service.
    #[error("malformed cursor")]
    Cursor,
}

/// An opaque pagination cursor: where the next page of a listing starts.
///
/// Clients treat it as an opaque string ([`Cursor::encode`], [`Cursor::decode`]); inside, it is the
/// last key of the previous page, so paging is stable under concurrent writes (no skipped or
/// repeated keys among those that exist throughout).
///
/// Written as `2` and the lowercase hex of the key's UTF-8 bytes: URL-safe, and a format whose
/// every string is a valid cursor is one a regular expression can describe exactly
/// ([`Cursor::PATTERN`]), so the OpenAPI document says precisely which cursors the service
/// accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    after: Key,
}

impl Cursor {
    /// The format's tag, the first character.
    const TAG: char = '2';

    /// Every cursor [`Cursor::decode`] accepts, and nothing else: the tag, then each character of
    /// a key (UTF-8 without control characters) as the lowercase hex of its bytes. At most
    /// [`Cursor::MAX_LEN`] characters.
    pub const PATTERN: &'static str = concat!(
        "^2(?:",
        // U+0020–U+007E
        "[2-6][0-9a-f]|7[0-9a-e]",
        // U+00A0–U+00BF (U+0080–U+009F are control characters)
        "|c2[ab][0-9a-f]",
        // U+00C0–U+07FF
        "|(?:c[3-9a-f]|d[0-9a-f])[89ab][0-9a-f]",
        // U+0800–U+0FFF
        "|e0[ab][0-9a-f][89ab][0-9a-f]",
        // U+1000–U+CFFF, U+E000–U+FFFF
        "|(?:e[1-9a-c]|e[ef])[89ab][0-9a-f][89ab][0-9a-f]",
        // U+D000–U+D7FF (no surrogates)
        "|ed[89][0-9a-f][89ab][0-9a-f]",
        // U+10000–U+3FFFF
        "|f0[9ab][0-9a-f](?:[89ab][0-9a-f]){2}",
        // U+40000–U+FFFFF
        "|f[1-3][89ab][0-9a-f](?:[89ab][0-9a-f]){2}",
        // U+100000–U+10FFFF
        "|f48[0-9a-f](?:[89ab][0-9a-f]){2}",
        ")+$"
    );

    /// The longest cursor, in characters: the tag and two hex digits per byte of the longest key.
    pub const MAX_LEN: usize = 1 + 2 * Key::MAX_LEN;

    /// A cursor that continues after `key`.
    pub fn after(key: Key) -> Self {
        Self { after: key }
    }

    /// The last key of the previous page.
    pub fn after_key(&self) -> &Key {
        &self.after
    }

    /// The cursor as an opaque, URL-safe string.
    pub fn encode(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(1 + 2 * self.after.len());
        out.push(Self::TAG);
        for byte in self.after.as_bytes() {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        out
    }

    /// Parses a string produced by [`Cursor::encode`]: exactly the strings [`Cursor::PATTERN`]
    /// matches.
    pub fn decode(text: &str) -> Result<Self, ListQueryError> {
        let body = text.strip_prefix(Self::TAG).ok_or(ListQueryError::Cursor)?;
        if body.len() % 2 != 0 || body.len() > 2 * Key::MAX_LEN {
            return Err(ListQueryError::Cursor);
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(ListQueryError::Cursor),
        };
        let bytes = body
            .as_bytes()
            .chunks_exact(2)
            .map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?))
            .collect::<Result<Vec<u8>, ListQueryError>>()?;
        let after = Key::from_utf8(bytes).map_err(|_| ListQueryError::Cursor)?;
        Ok(Self { after })
    }
}

/// A listing request: keys starting with `prefix`, in key order, at most `limit`, after the cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    prefix: String,
    limit: usize,
    cursor: Option<Cursor>,
}

impl ListQuery {
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: usize = 100;
    /// The largest page a client may ask for.
    pub const MAX_LIMIT: usize = 1000;
    /// The longest prefix, in characters. A prefix is a position, not a key: one longer than a
    /// key may be (1024 bytes) matches nothing, and is answered with an empty page rather than
    /// refused, so any string of at most this many characters (without control characters) is a
    /// prefix — which JSON Schema can say, as it cannot say a length in bytes.
    pub const MAX_PREFIX_CHARS: usize = 1024;

    /// Builds a query; `limit` of `None` means [`ListQuery::DEFAULT_LIMIT`].
    pub fn new(
        prefix: impl Into<String>,
        limit: Option<u64>,
        cursor: Option<Cursor>,
    ) -> Result<Self, ListQueryError> {
        let prefix = prefix.into();
        if let Some((index, _)) = prefix.char_indices().find(|(_, c)| c.is_control()) {
            return Err(ListQueryError::Prefix(KeyError::ControlCharacter { index }));
        }
        let chars = prefix.chars().count();
        if chars > Self::MAX_PREFIX_CHARS {
            return Err(ListQueryError::PrefixTooLong { chars });
        }
        let limit = match limit {
            None => Self::DEFAULT_LIMIT,
            Some(n) if (1..=Self::MAX_LIMIT as u64).contains(&n) => n as usize,
            Some(value) => return Err(ListQueryError::Limit { value }),
        };
        Ok(Self {
            prefix,
            limit,
            cursor,
        })
    }

    /// Every key, first page, default limit.
    pub fn all() -> Self {
        Self {
            prefix: String::new(),
            limit: Self::DEFAULT_LIMIT,
            cursor: None,
        }
    }

    /// The prefix every listed key starts with (may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The largest number of items in the page.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Where the page starts: after this key, if set.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Whether `key` belongs to this listing: it has the prefix and comes after the cursor.
    pub fn admits(&self, key: &Key) -> bool {
        key.as_str().starts_with(&self.prefix)
            && self.cursor.as_ref().is_none_or(|c| key > c.after_key())
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The items, in key order.
    pub items: Vec<ListItem>,
    /// Present when more items may follow; pass it back to get the next page.
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_rules() {
        assert_eq!(Key::new(""), Err(KeyError::Empty));
        assert!(Key::new("a").is_ok());
        assert!(Key::new("users/42/profile").is_ok());
        assert!(Key::new("ключ/🔑").is_ok());
        assert!(Key::new("x".repeat(1024)).is_ok());
        assert_eq!(
            Key::new("x".repeat(1025)),
            Err(KeyError::TooLong { len: 1025 })
        );
        assert_eq!(
            Key::new("ab\ncd"),
            Err(KeyError::ControlCharacter { index: 2 })
        );
        assert_eq!(
            Key::new("\u{7f}"),
            Err(KeyError::ControlCharacter { index: 0 })
        );
        assert_eq!(
            Key::from_utf8(vec![b'a', 0xff]),
            Err(KeyError::NotUtf8 { valid_up_to: 1 })
        );
        assert_eq!(Key::from_bytes(b"a/b").unwrap().as_str(), "a/b");
        assert_eq!(Key::from_bytes(b""), Err(KeyError::Empty));
        assert_eq!(
            Key::parse("a\tb"),
            Err(KeyError::ControlCharacter { index: 1 })
        );
        assert_eq!(Key::parse("k").unwrap(), Key::new("k").unwrap());
    }

    #[test]
    fn value_debug_hides_bytes() {
        let v = Value::from("secret");
        assert_eq!(format!("{v:?}"), "Value(6 bytes)");
    }

    #[test]
    fn preconditions() {
        let v3 = Version::new(3);
        assert!(Precondition::None.is_met_by(None));
        assert!(Precondition::None.is_met_by(Some(v3)));
        assert!(Precondition::Absent.is_met_by(None));
        assert!(!Precondition::Absent.is_met_by(Some(v3)));
        assert!(Precondition::Version(v3).is_met_by(Some(v3)));
        assert!(!Precondition::Version(v3).is_met_by(Some(Version::new(4))));
        assert!(!Precondition::Version(v3).is_met_by(None));
    }

    #[test]
    fn list_query_limits() {
        assert_eq!(ListQuery::new("", None, None).unwrap().limit(), 100);
        assert_eq!(ListQuery::new("", Some(1000), None).unwrap().limit(), 1000);
        assert_eq!(
            ListQuery::new("", Some(0), None),
            Err(ListQueryError::Limit { value: 0 })
        );
        assert_eq!(
            ListQuery::new("", Some(1001), None),
            Err(ListQueryError::Limit { value: 1001 })
        );
        assert!(matches!(
            ListQuery::new("a\u{0}", None, None),
            Err(ListQueryError::Prefix(KeyError::ControlCharacter { .. }))
        ));
    }

    #[test]
    fn malformed_cursors_are_rejected() {
        for bad in [
            "", "2", "0", "1YQ", "2abc", "2ABCD", "26g", "2c280", "20a", "2eda080", "2ff",
        ] {
            assert_eq!(Cursor::decode(bad), Err(ListQueryError::Cursor), "{bad:?}");
            assert!(!pattern().is_match(bad), "{bad:?} matches the pattern");
        }
        // Past the longest key: the document's `maxLength` says so, the pattern does not.
        let too_long = format!("2{}", "61".repeat(Key::MAX_LEN + 1));
        assert!(too_long.len() > Cursor::MAX_LEN);
        assert_eq!(Cursor::decode(&too_long), Err(ListQueryError::Cursor));
        assert_eq!(
            Cursor::decode("2612f62").unwrap().after_key(),
            &Key::new("a/b").unwrap()
        );
    }

    fn pattern() -> regex::Regex {
        regex::Regex::new(Cursor::PATTERN).unwrap()
    }

    proptest! {
        /// Every cursor the service makes matches the pattern the document publishes, and
        /// decodes to its key.
        #[test]
        fn cursor_round_trips(key in "[^\\p{Cc}]{1,300}") {
            let key = Key::new(key).unwrap();
            let cursor = Cursor::after(key);
            let text = cursor.encode();
            prop_assert!(text.len() <= Cursor::MAX_LEN);
            prop_assert!(pattern().is_match(&text), "{}", text);
            prop_assert_eq!(Cursor::decode(&text).unwrap(), cursor);
        }

        /// And every string the pattern matches, within the length, is a cursor the service
        /// accepts: the document is as strict as the service, no stricter.
        #[test]
        fn every_string_of_the_pattern_is_a_cursor(
            text in proptest::string::string_regex(
                Cursor::PATTERN.trim_start_matches('^').trim_end_matches('$')
            )
            .unwrap()
        ) {
            prop_assume!(text.len() <= Cursor::MAX_LEN);
            prop_assert!(Cursor::decode(&text).is_ok(), "{}", text);
        }

        #[test]
        fn key_parsing_never_panics_and_keeps_rules(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            if let Ok(key) = Key::from_utf8(bytes.clone()) {
                prop_assert!(!bytes.is_empty() && bytes.len() <= Key::MAX_LEN);
                prop_assert!(!key.as_str().chars().any(char::is_control));
                prop_assert_eq!(key.as_bytes(), &bytes[..]);
            }
        }
    }
}
