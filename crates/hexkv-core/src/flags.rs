//! hexkv's feature flags: their names and defaults ([`KNOWN`]). The mechanism — switches and
//! percentage rollouts by client, changed while running — is [`hexkv_auth::flags`], read from
//! `[flags]` by the platform.
//!
//! The flags hexkv itself uses are [`READ_ONLY`] and [`LIST_KEYS`]; the configuration refuses
//! other names so that a typo cannot silently do nothing. A service built from this template
//! names its own.

pub use hexkv_auth::flags::{FeatureFlags, Rollout, bucket};

/// Writes are refused (503 `read_only` / `UNAVAILABLE`) while reads go on: for maintenance,
/// migrations, or a store that must not change. Evaluated without a client identity, so only
/// on and off are meaningful.
pub const READ_ONLY: &str = "read_only";

/// The listing endpoint (`GET /v1/kv`, `List`). Off for a client: REST 404 `feature_disabled`,
/// gRPC `UNIMPLEMENTED`.
pub const LIST_KEYS: &str = "list_keys";

/// Every flag name the service knows, with its default.
pub const KNOWN: &[(&str, Rollout)] = &[(READ_ONLY, Rollout::Off), (LIST_KEYS, Rollout::On)];

/// The flags with hexkv's defaults.
pub fn defaults() -> FeatureFlags {
    FeatureFlags::with_defaults(KNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hexkv_s_defaults() {
        let flags = defaults();
        assert!(!flags.is_on(READ_ONLY, ""));
        assert!(flags.is_on(LIST_KEYS, "key:alice"));
    }
}
