//! The PostgreSQL adapter: one row per counter, one statement per operation.

use async_trait::async_trait;
use sqlx::PgPool;

use crate::{CounterName, CounterStore, StoreError};

/// Counters in a PostgreSQL table.
#[derive(Debug, Clone)]
pub struct PostgresCounters {
    pool: PgPool,
}

impl PostgresCounters {
    /// Connects and creates the table if needed. (A real service embeds migrations with
    /// `sqlx::migrate!`; one table needs no more here.)
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect(url)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS counters (name text COLLATE \"C\" PRIMARY KEY, value bigint NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool })
    }
}

/// Driver errors to the port's, in one place: an out-of-range result is an overflow
/// (SQLSTATE 22003), everything else makes the store unavailable for now.
fn store_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("22003") => StoreError::Overflow,
        _ => StoreError::Unavailable(e.to_string()),
    }
}

#[async_trait]
impl CounterStore for PostgresCounters {
    async fn add(&self, name: &CounterName, delta: i64) -> Result<i64, StoreError> {
        // One round trip; the row lock of the upsert serialises concurrent adds to one counter.
        sqlx::query_scalar(
            "INSERT INTO counters (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = counters.value + EXCLUDED.value \
             RETURNING value",
        )
        .bind(name.as_str())
        .bind(delta)
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)
    }

    async fn get(&self, name: &CounterName) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar("SELECT value FROM counters WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(store_error)
    }
}
