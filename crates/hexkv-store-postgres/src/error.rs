//! The one place where sqlx errors become [`StoreError`]s.
//!
//! Connection failures, pool timeouts, statement timeouts, a server shutting down or out of
//! connections, and a read-only server (a standby during failover) are transient:
//! [`StoreError::Unavailable`] — except a write whose connection broke after it was sent, whose
//! outcome is unknown (`run` in the adapter says [`StoreError::OutcomeUnknown`]). Serialization failures and deadlocks are retried once by the
//! adapter, then reported as unavailable. Everything else is [`StoreError::Internal`], logged by
//! the service with its cause and never shown to clients.

use std::time::Duration;

use hexkv_core::StoreError;

/// SQLSTATE codes the adapter retries once: the transaction was rolled back, nothing applied.
pub(crate) fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(sqlstate(err).as_deref(), Some("40001" | "40P01"))
}

/// Whether a connection attempt may succeed later: the server is unreachable, starting, shutting
/// down or out of connections (unlike a wrong password or a missing database).
pub(crate) fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(_) => sqlstate(err).is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
        }),
        _ => false,
    }
}

/// The SQLSTATE of a database error.
pub(crate) fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// How long clients should wait before retrying a transient failure.
const RETRY_AFTER: Duration = Duration::from_secs(1);

fn unavailable(reason: impl Into<String>) -> StoreError {
    StoreError::Unavailable {
        reason: reason.into(),
        retry_after: Some(RETRY_AFTER),
    }
}

/// Translates a driver error.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::PoolTimedOut => {
            unavailable("no database connection was free within the acquire timeout")
        }
        sqlx::Error::PoolClosed => unavailable("the store is closed"),
        sqlx::Error::Io(e) => unavailable(format!("database connection failed: {e}")),
        sqlx::Error::Tls(e) => unavailable(format!("database TLS failed: {e}")),
        sqlx::Error::WorkerCrashed => unavailable("the database connection's worker stopped"),
        sqlx::Error::Database(db) => {
            let code = sqlstate(&err).unwrap_or_default();
            match code.as_str() {
                // serialization_failure, deadlock_detected (after the adapter's one retry).
                "40001" | "40P01" => unavailable("the database could not serialize the write"),
                // query_canceled: statement_timeout.
                "57014" => unavailable("the database did not answer within the statement timeout"),
                // admin_shutdown, crash_shutdown, cannot_connect_now.
                "57P01" | "57P02" | "57P03" => {
                    unavailable("the database is shutting down or starting")
                }
                // read_only_sql_transaction: a standby, e.g. during a failover.
                "25006" => unavailable("the database is read-only (a standby?)"),
                // connection_exception (08…), insufficient_resources (53…, too many connections).
                c if c.starts_with("08") || c.starts_with("53") => {
                    unavailable(format!("database unavailable: {}", db.message()))
                }
                _ => StoreError::internal(err),
            }
        }
        _ => StoreError::internal(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_pool_failures_are_transient() {
        for err in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        ] {
            let mapped = store_error(err);
            assert!(
                matches!(
                    mapped,
                    StoreError::Unavailable {
                        retry_after: Some(_),
                        ..
                    }
                ),
                "{mapped:?}"
            );
        }
    }

    #[test]
    fn other_failures_are_internal() {
        for err in [
            sqlx::Error::RowNotFound,
            sqlx::Error::Protocol("garbled".into()),
            sqlx::Error::ColumnNotFound("version".into()),
        ] {
            assert!(matches!(store_error(err), StoreError::Internal(_)));
        }
        assert!(!is_retryable(&sqlx::Error::PoolTimedOut));
    }
}
