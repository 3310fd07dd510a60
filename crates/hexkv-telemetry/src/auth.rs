//! The one record of an authentication refusal, shared by both front ends.

use std::fmt::Display;

/// Counts a refusal in `hexkv_auth_failures_total{protocol, reason}` and logs it at WARN with the
/// reason (a short, fixed code such as `unknown_key`), the error and the key's name (`-` when
/// unknown) — never the key.
pub fn auth_refused(
    protocol: &'static str,
    reason: &'static str,
    err: &dyn Display,
    key_name: Option<&str>,
) {
    metrics::counter!(
        crate::metrics::AUTH_FAILURES,
        "protocol" => protocol,
        "reason" => reason
    )
    .increment(1);
    tracing::warn!(
        protocol,
        reason,
        key_name = key_name.unwrap_or("-"),
        error = %err,
        "request refused by authentication"
    );
}
