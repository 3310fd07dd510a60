//! The one record of an authentication refusal, shared by both front ends.

use hexkv_core::AuthError;

/// Counts a refusal in `hexkv_auth_failures_total{protocol, reason}` and logs it at WARN with the
/// reason and the key's name (`-` when unknown) — never the key.
pub fn auth_refused(protocol: &'static str, err: &AuthError, key_name: Option<&str>) {
    metrics::counter!(
        crate::metrics::AUTH_FAILURES,
        "protocol" => protocol,
        "reason" => err.reason()
    )
    .increment(1);
    tracing::warn!(
        protocol,
        reason = err.reason(),
        key_name = key_name.unwrap_or("-"),
        error = %err,
        "request refused by authentication"
    );
}
