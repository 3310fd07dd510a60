//! The counters' domain types.

use std::fmt;

/// A counter's name: 1 to 128 bytes of `a-z`, `0-9`, `_`, `-`, `.` (parse, don't validate: a
/// `CounterName` is valid by construction).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterName(String);

impl CounterName {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Parses a name.
    pub fn new(name: impl Into<String>) -> Result<Self, CounterError> {
        let name = name.into();
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(CounterError::InvalidName(format!(
                "a name has 1 to {} bytes, got {}",
                Self::MAX_LEN,
                name.len()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-' | '.'))
        {
            return Err(CounterError::InvalidName(format!(
                "{c:?} is not allowed; use a-z, 0-9, '_', '-', '.'"
            )));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CounterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the counters service can fail with, as its callers see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CounterError {
    /// The name is not a valid counter name.
    #[error("invalid counter name: {0}")]
    InvalidName(String),
    /// The delta is outside the allowed range.
    #[error("delta must be between -{max} and {max}, and not 0", max = crate::service::MAX_DELTA)]
    InvalidDelta,
    /// The counter does not exist (it was never added to).
    #[error("no such counter")]
    NotFound,
    /// The addition would leave the range of a 64-bit integer; nothing changed.
    #[error("the counter would overflow; nothing changed")]
    Overflow,
    /// The store cannot answer now; nothing changed. Retrying later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_once() {
        assert_eq!(
            CounterName::new("page.views-2").unwrap().as_str(),
            "page.views-2"
        );
        for bad in ["", "Upper", "with space", "slash/no", &"x".repeat(129)] {
            assert!(matches!(
                CounterName::new(bad),
                Err(CounterError::InvalidName(_))
            ));
        }
    }
}
