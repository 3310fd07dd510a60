//! The connection pool: deadpool over sqlx's `PgConnection`.
//!
//! sqlx's own pool checks every connection as it comes back (a `Sync` round trip in a spawned
//! task), which costs a round trip and a task per request (see `docs/performance.md`). Here a
//! connection goes back to the pool as it is, unless it is suspect: its last query failed at the
//! connection level (I/O, TLS, protocol, the server shutting down), or was cancelled half-way
//! (the request was dropped), which could leave a reply unread. A suspect connection is closed
//! instead of reused, so the pool recovers by itself after the database restarts.

use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{
    Manager, Metrics, Object, PoolError, RecycleError, RecycleResult, Timeouts,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

use crate::error::sqlstate;

/// A pooled connection and whether it can be handed out again.
pub(crate) struct Conn {
    raw: PgConnection,
    reusable: bool,
}

pub(crate) struct Connector {
    options: PgConnectOptions,
}

impl Manager for Connector {
    type Type = Conn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<Conn, sqlx::Error> {
        Ok(Conn {
            raw: self.options.connect().await?,
            reusable: true,
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<sqlx::Error> {
        if conn.reusable {
            Ok(())
        } else {
            Err(RecycleError::message(
                "the connection failed, or a query on it was cancelled",
            ))
        }
    }
}

pub(crate) type Pool = deadpool::managed::Pool<Connector>;

pub(crate) fn build(
    options: PgConnectOptions,
    max_size: usize,
    acquire_timeout: Duration,
) -> Result<Pool, String> {
    Pool::builder(Connector { options })
        .max_size(max_size.max(1))
        .timeouts(Timeouts {
            wait: Some(acquire_timeout),
            create: Some(acquire_timeout),
            recycle: Some(acquire_timeout),
        })
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| e.to_string())
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum AcquireError {
    /// None was free, or none could be opened, within the acquire timeout.
    Timeout,
    /// Opening one failed.
    Connect(sqlx::Error),
    /// The pool is closed.
    Closed,
}

/// A checked-out connection. Marked suspect while a query runs; [`Checkout::done`] clears the
/// mark unless the query broke the connection.
pub(crate) struct Checkout(Object<Connector>);

impl Checkout {
    pub(crate) async fn get(pool: &Pool) -> Result<Checkout, AcquireError> {
        match pool.get().await {
            Ok(object) => Ok(Checkout(object)),
            Err(PoolError::Backend(e)) => Err(AcquireError::Connect(e)),
            Err(PoolError::Closed) => Err(AcquireError::Closed),
            Err(_) => Err(AcquireError::Timeout),
        }
    }

    /// The connection, marked suspect until [`Checkout::done`].
    pub(crate) fn start(&mut self) -> &mut PgConnection {
        self.0.reusable = false;
        &mut self.0.raw
    }

    /// Records the query's outcome: the connection is reusable unless the error broke it.
    pub(crate) fn done<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.0.reusable = match result {
            Ok(_) => true,
            Err(e) => !breaks_connection(e),
        };
    }
}

/// Whether an error leaves the connection unusable (or in an unknown protocol state).
pub(crate) fn breaks_connection(err: &sqlx::Error) -> bool {
    match err {
        // The server answered with an error and the protocol is in step, unless the error
        // ends the session (connection exceptions, the server shutting down).
        sqlx::Error::Database(_) => {
            sqlstate(err).is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        sqlx::Error::RowNotFound
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_break_the_connection_and_answers_do_not() {
        assert!(breaks_connection(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(breaks_connection(&sqlx::Error::Protocol("garbled".into())));
        assert!(breaks_connection(&sqlx::Error::WorkerCrashed));
        assert!(!breaks_connection(&sqlx::Error::RowNotFound));
        assert!(!breaks_connection(&sqlx::Error::ColumnNotFound("v".into())));
    }
}
