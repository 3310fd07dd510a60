//! hexkv's PostgreSQL store: [`PostgresStore`] implements [`KvStore`] with sqlx, so many
//! stateless `hexkv` replicas can serve one database.
//!
//! # Schema
//! `migrations/` (embedded with `sqlx::migrate!`, applied at start unless
//! [`PostgresOptions::migrate`] is off): a sequence `hexkv_version` for the store-wide version and
//! a table `hexkv_entries (key text COLLATE "C" PRIMARY KEY, value bytea, version bigint)`. The
//! "C" collation orders keys by their bytes, so the primary key serves prefix listings and cursor
//! pagination as index range scans.
//!
//! # One round trip per operation
//! Every operation is one statement, prepared once per connection:
//! - put: `INSERT … ON CONFLICT (key) DO UPDATE … RETURNING`;
//! - create-only: `INSERT … ON CONFLICT DO NOTHING` and, in the same statement, the current
//!   version for the failure report;
//! - compare-and-swap and conditional delete: the version check is in the `WHERE` clause, and the
//!   current version comes back in the same statement;
//! - list: a range scan `key >= prefix AND key < successor(prefix)` (or `key > cursor`), in key
//!   order, one row past the limit to know whether another page follows.
//!
//! A failed precondition may take a second read when the statement's snapshot is older than the
//! row that made it fail (a concurrent commit); see [`PostgresStore::put`].
//!
//! # Versions
//! A write takes `nextval('hexkv_version')` *after* it holds the row's lock (in `DO UPDATE SET`,
//! `UPDATE … SET`, `DELETE … RETURNING`), so one key's versions increase in commit order, and a
//! write that starts after another finished always takes a greater version. Concurrent writes to
//! different keys may commit in another order than their versions.
//!
//! # Batching
//! Concurrent `get`s are answered together: a `get` waits in a queue, and up to
//! [`PostgresOptions::read_batch_queries`] tasks each send up to [`PostgresOptions::read_batch`]
//! waiting keys as one `SELECT … WHERE key = ANY($1)`. Unconditional `put`s likewise share one
//! multi-row upsert (`INSERT … SELECT FROM unnest($1, $2) ON CONFLICT … DO UPDATE`), which is one
//! commit for the batch ([`PostgresOptions::write_batch`]). A lone operation is sent at once;
//! batches form only while statements are in flight, so batching adds no latency at low load and
//! saves most of the per-statement and per-commit cost under load. A batch runs after all its
//! operations were asked for, so a read still sees every write acknowledged before it began; a
//! write is acknowledged once its statement committed, and a failed statement fails every write
//! in it with nothing applied. Within a batch, rows are written in key order (concurrent batches,
//! from this replica or others, lock rows in the same order), and two writes to one key go in
//! successive statements, the later one with the greater version.
//! [`PostgresStore::batch_stats`] counts them.
//!
//! # Connections
//! A deadpool of sqlx `PgConnection`s (`pool.rs`): a connection goes back to the pool without a
//! round trip, unless its query broke it or was cancelled half-way, and then it is closed.
//!
//! # Errors
//! Driver errors are translated in one place (`error.rs`): connection failures, pool and statement
//! timeouts are `Unavailable`; serialization failures and deadlocks are retried once, then
//! `Unavailable`; everything else is `Internal`.

mod batch;
mod error;
mod pool;

pub use crate::batch::BatchStats;

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hexkv_core::{
    Cursor, DeleteOutcome, Entry, Key, KvStore, ListItem, ListQuery, Page, Precondition,
    PutOutcome, StoreError, Value, Version,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::time::Instant;

use crate::batch::{Batcher, Run, copy_error};
use crate::error::{is_retryable, is_transient, store_error};
use crate::pool::{AcquireError, Checkout, Pool, breaks_connection};

/// How to reach and use the database.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database?sslmode=…`. A secret: never logged.
    pub url: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// Connections opened at start (the pool keeps the connections it opens).
    pub min_connections: u32,
    /// How long a request waits for a free connection before failing with `Unavailable`.
    pub acquire_timeout: Duration,
    /// The server-side `statement_timeout` of every statement, sent as a startup option of each
    /// connection; past it the statement is cancelled and the request fails with `Unavailable`.
    /// Zero: no startup option, the server's (or the role's) setting applies — for poolers in
    /// transaction mode (PgBouncer), which refuse or drop startup options.
    pub statement_timeout: Duration,
    /// Apply the embedded migrations at start.
    pub migrate: bool,
    /// Hold sqlx's session advisory lock while migrating, so replicas starting together take
    /// turns. Off for a pooler in transaction mode (the lock and its release may reach different
    /// server sessions) and for databases without advisory locks (CockroachDB); then start one
    /// replica first.
    pub migrate_lock: bool,
    /// How long to wait for the database at start before giving up (0: fail at once).
    pub connect_wait: Duration,
    /// The most keys one batched read asks for; 0 turns read batching off (one statement per
    /// `get`). See "Batching" above.
    pub read_batch: usize,
    /// The most batched reads in flight at once (each on its own connection; at most
    /// `max_connections`).
    pub read_batch_queries: usize,
    /// The most unconditional `put`s one batched upsert carries; 0 turns write batching off.
    pub write_batch: usize,
    /// The most batched upserts in flight at once (each on its own connection; at most
    /// `max_connections`).
    pub write_batch_queries: usize,
}

impl PostgresOptions {
    /// Defaults for `url`: 16 connections, 5 s acquire and statement timeouts, migrations on,
    /// no waiting at start, reads and unconditional writes batched up to 64 with 4 batches of
    /// each in flight.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            migrate: true,
            migrate_lock: true,
            connect_wait: Duration::ZERO,
            read_batch: 64,
            read_batch_queries: 4,
            write_batch: 64,
            write_batch_queries: 4,
        }
    }
}

impl PostgresOptions {
    /// `user@host:port/database` from the URL, without the password, for logs.
    pub fn target(&self) -> String {
        match PgConnectOptions::from_str(&self.url) {
            Ok(o) => format!(
                "{}@{}:{}/{}",
                o.get_username(),
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or("")
            ),
            Err(_) => "<invalid URL>".to_owned(),
        }
    }
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("migrate", &self.migrate)
            .field("migrate_lock", &self.migrate_lock)
            .field("connect_wait", &self.connect_wait)
            .field("read_batch", &self.read_batch)
            .field("read_batch_queries", &self.read_batch_queries)
            .field("write_batch", &self.write_batch)
            .field("write_batch_queries", &self.write_batch_queries)
            .finish()
    }
}

/// Why the store could not start. Messages never include the URL.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL does not parse.
    #[error("invalid PostgreSQL URL")]
    Url(#[source] sqlx::Error),
    /// The database did not answer (within `connect_wait`, if set).
    #[error("cannot connect to PostgreSQL at {target}{waited}")]
    Unreachable {
        /// `user@host:port/database`.
        target: String,
        /// " (waited 30 s)" when it waited.
        waited: String,
        /// The last connection error.
        #[source]
        source: sqlx::Error,
    },
    /// The database's encoding cannot hold keys as UTF-8 text.
    #[error("the database's encoding is {0}; hexkv needs UTF8 (CREATE DATABASE … ENCODING 'UTF8')")]
    Encoding(String),
    /// Applying the migrations failed.
    #[error("applying the database migrations failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Migrations are off and the schema is not there.
    #[error(
        "the table hexkv_entries does not exist: apply the migrations (store.postgres.migrate = true)"
    )]
    SchemaMissing,
    /// A start-up query failed.
    #[error("checking the database failed")]
    Query(#[source] sqlx::Error),
}

/// The embedded migrations (`crates/hexkv-store-postgres/migrations`), holding sqlx's advisory
/// lock while they run or not ([`PostgresOptions::migrate_lock`]).
fn migrator(lock: bool) -> &'static sqlx::migrate::Migrator {
    static LOCKED: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
    static UNLOCKED: std::sync::LazyLock<sqlx::migrate::Migrator> =
        std::sync::LazyLock::new(|| {
            let mut migrator = sqlx::migrate!("./migrations");
            migrator.set_locking(false);
            migrator
        });
    if lock { &LOCKED } else { &UNLOCKED }
}

/// A [`KvStore`] over a PostgreSQL connection pool. Cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Batched `get`s; `None` when read batching is off.
    reads: Option<Arc<Batcher<Key, Option<Row>>>>,
    /// Batched unconditional `put`s; `None` when write batching is off.
    writes: Option<Arc<Batcher<Put, PutResult>>>,
}

/// A key's value and version.
type Row = (Bytes, i64);

/// An unconditional write, and its own outcome within a batch.
type Put = (Key, Value);
type PutResult = Result<PutOutcome, StoreError>;

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("connections", &status.size)
            .field("idle", &status.available)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

/// One query on a connection: a boxed future borrowing it.
type Query<'c, T> = Pin<Box<dyn Future<Output = Result<T, sqlx::Error>> + Send + 'c>>;

const GET: &str = "SELECT value, version FROM hexkv_entries WHERE key = $1";

/// A batch of reads: the keys are distinct; absent ones have no row.
const GET_MANY: &str = "SELECT key, value, version FROM hexkv_entries WHERE key = ANY($1)";

/// A batch of upserts, in one statement and one commit: distinct keys (`$1`, in key order) and
/// their values (`$2`). As in [`PUT`], `fresh` holds the
/// version each insert takes, and a write created its key exactly when its row has that version:
/// an update takes a new one after it holds the row lock. (No system column like `xmax`, which
/// PostgreSQL-compatible databases such as CockroachDB and YugabyteDB do not have.) A CTE with a
/// volatile function is evaluated once.
const PUT_MANY: &str = "WITH fresh AS (\
        SELECT k, v, nextval('hexkv_version') AS version \
        FROM unnest($1::text[], $2::bytea[]) AS t(k, v)), \
    written AS (\
        INSERT INTO hexkv_entries AS e (key, value, version) \
        SELECT k, v, version FROM fresh \
        ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = nextval('hexkv_version') \
        RETURNING e.key, e.version) \
    SELECT written.key, written.version, written.version = fresh.version AS created \
    FROM written JOIN fresh ON fresh.k = written.key";

const CURRENT: &str = "SELECT version FROM hexkv_entries WHERE key = $1";

/// Upsert. `fresh` is the version an insert takes; an update takes a new one after it holds the
/// row lock, so `created` is exact.
const PUT: &str = "WITH fresh AS (SELECT nextval('hexkv_version') AS version) \
    INSERT INTO hexkv_entries AS e (key, value, version) \
    VALUES ($1, $2, (SELECT version FROM fresh)) \
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, version = nextval('hexkv_version') \
    RETURNING e.version, e.version = (SELECT version FROM fresh) AS created";

/// Create only. `current` is read from the statement's snapshot.
const CREATE: &str = "WITH ins AS (\
        INSERT INTO hexkv_entries (key, value, version) \
        VALUES ($1, $2, nextval('hexkv_version')) \
        ON CONFLICT (key) DO NOTHING RETURNING version) \
    SELECT (SELECT version FROM ins) AS written, \
           (SELECT version FROM hexkv_entries WHERE key = $1) AS current";

/// Compare-and-swap: the check is in the `WHERE` clause.
const SWAP: &str = "WITH upd AS (\
        UPDATE hexkv_entries SET value = $2, version = nextval('hexkv_version') \
        WHERE key = $1 AND version = $3 RETURNING version) \
    SELECT (SELECT version FROM upd) AS written, \
           (SELECT version FROM hexkv_entries WHERE key = $1) AS current";

const DELETE: &str =
    "DELETE FROM hexkv_entries WHERE key = $1 RETURNING nextval('hexkv_version') AS version";

const DELETE_IF: &str = "WITH del AS (\
        DELETE FROM hexkv_entries WHERE key = $1 AND version = $2 \
        RETURNING nextval('hexkv_version') AS version) \
    SELECT (SELECT version FROM del) AS written, \
           (SELECT version FROM hexkv_entries WHERE key = $1) AS current";

const LIST_FROM_TO: &str = "SELECT key, version FROM hexkv_entries \
    WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3";
const LIST_AFTER_TO: &str = "SELECT key, version FROM hexkv_entries \
    WHERE key > $1 AND key < $2 ORDER BY key LIMIT $3";
const LIST_FROM: &str =
    "SELECT key, version FROM hexkv_entries WHERE key >= $1 ORDER BY key LIMIT $2";
const LIST_AFTER: &str =
    "SELECT key, version FROM hexkv_entries WHERE key > $1 ORDER BY key LIMIT $2";

/// A conditional write's answer: the version it wrote, or the key's version in its snapshot.
type Conditional = (Option<i64>, Option<i64>);

/// How often a conditional write is tried when concurrent writers keep changing the key between
/// the write and the read that explains its failure.
const CONDITIONAL_ATTEMPTS: usize = 3;

impl PostgresStore {
    /// Connects (waiting up to `connect_wait` for the database), checks the encoding, and applies
    /// the migrations (or checks the schema is there).
    pub async fn connect(options: &PostgresOptions) -> Result<Self, ConnectError> {
        let mut connect = PgConnectOptions::from_str(&options.url)
            .map_err(ConnectError::Url)?
            .application_name("hexkv");
        let startup_timeout = !options.statement_timeout.is_zero();
        if startup_timeout {
            connect = connect.options([(
                "statement_timeout",
                options.statement_timeout.as_millis().max(1).to_string(),
            )]);
        }
        wait_for_database(&connect, options.connect_wait)
            .await
            .map_err(|(waited, source)| ConnectError::Unreachable {
                target: options.target(),
                waited,
                source,
            })?;
        let pool = pool::build(
            connect,
            options.max_connections as usize,
            options.acquire_timeout,
        )
        .map_err(|e| ConnectError::Query(sqlx::Error::Configuration(e.into())))?;
        let mut checkout = Checkout::get(&pool).await.map_err(|e| match e {
            AcquireError::Connect(e) => ConnectError::Query(e),
            AcquireError::Timeout | AcquireError::Closed => {
                ConnectError::Query(sqlx::Error::PoolTimedOut)
            }
        })?;
        let conn = checkout.start();
        let encoding: String = sqlx::query_scalar("SHOW server_encoding")
            .fetch_one(&mut *conn)
            .await
            .map_err(ConnectError::Query)?;
        if encoding != "UTF8" {
            return Err(ConnectError::Encoding(encoding));
        }
        if options.migrate {
            // A migration (an index build, say) may take longer than a request may: lift hexkv's
            // statement timeout for it, then restore the connection's own. Without hexkv's
            // startup option the session may be a pooler's (shared with other clients), where a
            // session-wide SET must not be left behind: nothing is changed then.
            if startup_timeout {
                sqlx::query("SET statement_timeout = 0")
                    .execute(&mut *conn)
                    .await
                    .map_err(ConnectError::Query)?;
            }
            migrator(options.migrate_lock)
                .run(&mut *conn)
                .await
                .map_err(ConnectError::Migrate)?;
            if startup_timeout {
                sqlx::query("RESET statement_timeout")
                    .execute(&mut *conn)
                    .await
                    .map_err(ConnectError::Query)?;
            }
        } else {
            let table: Option<String> =
                sqlx::query_scalar("SELECT to_regclass('hexkv_entries')::text")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(ConnectError::Query)?;
            if table.is_none() {
                return Err(ConnectError::SchemaMissing);
            }
        }
        checkout.done(&Ok(()));
        drop(checkout);
        // Open `min_connections` now rather than on the first requests.
        let mut warm = Vec::new();
        for _ in 1..options.min_connections.min(options.max_connections) {
            match Checkout::get(&pool).await {
                Ok(c) => warm.push(c),
                Err(_) => break,
            }
        }
        drop(warm);
        // The batches run on a store without batchers (no reference cycle).
        let unbatched = Self {
            pool: pool.clone(),
            reads: None,
            writes: None,
        };
        let connections = options.max_connections as usize;
        let store = unbatched.clone();
        let reads = batcher(
            options.read_batch,
            options.read_batch_queries.min(connections),
            Arc::new(move |keys| {
                let store = store.clone();
                Box::pin(async move { store.get_many(keys).await })
            }),
        );
        let store = unbatched;
        let writes = batcher(
            options.write_batch,
            options.write_batch_queries.min(connections),
            Arc::new(move |puts| {
                let store = store.clone();
                Box::pin(async move { Ok(store.put_many(puts).await) })
            }),
        );
        Ok(Self {
            pool,
            reads,
            writes,
        })
    }

    /// How many batched statements ran for `get`s and for `put`s, and how many operations they
    /// carried (zeros for a kind whose batching is off).
    pub fn batch_stats(&self) -> (BatchStats, BatchStats) {
        (
            self.reads.as_ref().map(|b| b.stats()).unwrap_or_default(),
            self.writes.as_ref().map(|b| b.stats()).unwrap_or_default(),
        )
    }

    /// One key's row, in a statement of its own.
    async fn get_one(&self, key: &str) -> Result<Option<Row>, StoreError> {
        let key: Arc<str> = key.into();
        let row: Option<(Vec<u8>, i64)> = self
            .run(true, |conn| {
                let key = key.clone();
                Box::pin(async move { sqlx::query_as(GET).bind(&*key).fetch_optional(conn).await })
            })
            .await?;
        Ok(row.map(|(value, version)| (Bytes::from(value), version)))
    }

    /// The rows of `keys`, one answer per key, in one statement (a single key takes the
    /// single-key one).
    async fn get_many(&self, keys: Vec<Key>) -> Result<Vec<Option<Row>>, StoreError> {
        if let [key] = keys.as_slice() {
            return Ok(vec![self.get_one(key.as_str()).await?]);
        }
        let mut distinct: Vec<&str> = keys.iter().map(Key::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let distinct: Arc<[String]> = distinct.into_iter().map(str::to_owned).collect();
        let rows: Vec<(String, Vec<u8>, i64)> = self
            .run(true, |conn| {
                let keys = distinct.clone();
                Box::pin(async move {
                    sqlx::query_as(GET_MANY)
                        .bind(&keys[..])
                        .fetch_all(conn)
                        .await
                })
            })
            .await?;
        let rows: HashMap<String, Row> = rows
            .into_iter()
            .map(|(key, value, version)| (key, (Bytes::from(value), version)))
            .collect();
        Ok(keys.iter().map(|k| rows.get(k.as_str()).cloned()).collect())
    }

    /// One unconditional write, in a statement of its own.
    async fn put_one(&self, key: &Key, value: &Value) -> Result<PutOutcome, StoreError> {
        let (version, created): (i64, bool) = self
            .run(false, |conn| {
                let (key, value) = (key.clone(), value.clone());
                Box::pin(async move {
                    sqlx::query_as(PUT)
                        .bind(key.as_str())
                        .bind(value.as_bytes())
                        .fetch_one(conn)
                        .await
                })
            })
            .await?;
        Ok(PutOutcome {
            version: version_of(version)?,
            created,
        })
    }

    /// Unconditional writes, one answer each: one statement for the first write of every key,
    /// then one for the second writes of keys written twice, and so on (an upsert cannot touch
    /// a row twice). Each statement commits on its own, so each write has its own outcome.
    async fn put_many(&self, puts: Vec<Put>) -> Vec<PutResult> {
        if let [(key, value)] = puts.as_slice() {
            return vec![self.put_one(key, value).await];
        }
        let mut answers: Vec<Option<PutResult>> = puts.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..puts.len()).collect();
        while !pending.is_empty() {
            let mut seen = HashSet::new();
            let (mut round, later): (Vec<usize>, Vec<usize>) = pending
                .iter()
                .partition(|&&i| seen.insert(puts[i].0.as_str()));
            round.sort_unstable_by(|&a, &b| puts[a].0.cmp(&puts[b].0));
            let keys: Arc<[String]> = round
                .iter()
                .map(|&i| puts[i].0.as_str().to_owned())
                .collect();
            let values: Arc<[Value]> = round.iter().map(|&i| puts[i].1.clone()).collect();
            let written: Result<Vec<(String, i64, bool)>, StoreError> = self
                .run(false, |conn| {
                    let (keys, values) = (keys.clone(), values.clone());
                    Box::pin(async move {
                        let values: Vec<&[u8]> = values.iter().map(Value::as_bytes).collect();
                        sqlx::query_as(PUT_MANY)
                            .bind(&keys[..])
                            .bind(&values)
                            .fetch_all(conn)
                            .await
                    })
                })
                .await;
            match written {
                Ok(rows) => {
                    let rows: HashMap<String, (i64, bool)> = rows
                        .into_iter()
                        .map(|(key, version, created)| (key, (version, created)))
                        .collect();
                    for &i in &round {
                        answers[i] = Some(match rows.get(puts[i].0.as_str()) {
                            Some(&(version, created)) => {
                                version_of(version).map(|version| PutOutcome { version, created })
                            }
                            None => Err(StoreError::internal("a batched upsert returned no row")),
                        });
                    }
                }
                Err(err) => {
                    // Nothing in this statement was applied; later rounds are not tried.
                    for &i in round.iter().chain(&later) {
                        answers[i] = Some(Err(copy_error(&err)));
                    }
                    break;
                }
            }
            pending = later;
        }
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| Err(StoreError::internal("a batched write got no answer")))
            })
            .collect()
    }

    /// Runs `op` on a pooled connection. It runs once more if it failed with a serialization
    /// failure or a deadlock (the transaction was rolled back, so nothing was applied), or, when
    /// `idempotent`, if the connection turned out to be broken (a stale connection after the
    /// database restarted; the retry gets a fresh one). A write whose connection broke was sent
    /// and not confirmed: its outcome is unknown ([`StoreError::OutcomeUnknown`]).
    async fn run<T, F>(&self, idempotent: bool, op: F) -> Result<T, StoreError>
    where
        F: for<'c> Fn(&'c mut PgConnection) -> Query<'c, T>,
    {
        let mut retried = false;
        loop {
            let mut checkout = Checkout::get(&self.pool).await.map_err(acquire_error)?;
            let result = op(checkout.start()).await;
            checkout.done(&result);
            drop(checkout);
            match result {
                Ok(value) => return Ok(value),
                Err(e)
                    if !retried && (is_retryable(&e) || (idempotent && breaks_connection(&e))) =>
                {
                    tracing::debug!(error = %e, "retrying once");
                    retried = true;
                }
                Err(e) if !idempotent && breaks_connection(&e) => {
                    return Err(StoreError::outcome_unknown(format!(
                        "the database connection broke before the write was confirmed: {e}"
                    )));
                }
                Err(e) => return Err(store_error(e)),
            }
        }
    }

    async fn current(&self, key: &Key) -> Result<Option<Version>, StoreError> {
        let version: Option<i64> = self
            .run(true, |conn| {
                let key = key.clone();
                Box::pin(async move {
                    sqlx::query_scalar(CURRENT)
                        .bind(key.as_str())
                        .fetch_optional(conn)
                        .await
                })
            })
            .await?;
        version.map(version_of).transpose()
    }

    /// Runs a conditional write. `Ok(Ok(v))`: written with version `v`; `Ok(Err(current))`: the
    /// precondition failed and `current` is the key's version.
    ///
    /// When the write did not happen, the statement also read the key's version, but from its
    /// snapshot, which predates a concurrent commit that the write itself waited for. If that
    /// version would have met the precondition, it is stale: read again, and if the key changed
    /// back in between, try the write again.
    async fn conditional<F>(
        &self,
        key: &Key,
        precondition: Precondition,
        write: F,
    ) -> Result<Result<Version, Option<Version>>, StoreError>
    where
        F: for<'c> Fn(&'c mut PgConnection) -> Query<'c, Conditional>,
    {
        let mut current = None;
        for _ in 0..CONDITIONAL_ATTEMPTS {
            let (written, snapshot) = self.run(false, &write).await?;
            if let Some(v) = written {
                return Ok(Ok(version_of(v)?));
            }
            let snapshot = snapshot.map(version_of).transpose()?;
            if !precondition.is_met_by(snapshot) {
                return Ok(Err(snapshot));
            }
            current = self.current(key).await?;
            if !precondition.is_met_by(current) {
                return Ok(Err(current));
            }
        }
        Ok(Err(current))
    }
}

/// Connects once to see that the database answers, retrying transient failures until `wait` has
/// passed. Authentication errors and a missing database fail at once.
/// On failure: how long it waited (for the message) and the last error.
async fn wait_for_database(
    connect: &PgConnectOptions,
    wait: Duration,
) -> Result<(), (String, sqlx::Error)> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let err = match PgConnection::connect_with(connect).await {
            Ok(conn) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Err(err) => err,
        };
        if !is_transient(&err) || started.elapsed() + delay > wait {
            let waited = if wait.is_zero() {
                String::new()
            } else {
                format!(" (waited {} s)", started.elapsed().as_secs())
            };
            return Err((waited, err));
        }
        tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "PostgreSQL is not reachable yet");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A batcher running `run`, or `None` when `max_batch` is 0 (batching off).
fn batcher<Q: Send + 'static, A: Send + 'static>(
    max_batch: usize,
    max_statements: usize,
    run: Run<Q, A>,
) -> Option<Arc<Batcher<Q, A>>> {
    (max_batch > 0).then(|| Arc::new(Batcher::new(run, max_batch, max_statements)))
}

fn acquire_error(err: AcquireError) -> StoreError {
    match err {
        AcquireError::Connect(e) => store_error(e),
        AcquireError::Timeout => store_error(sqlx::Error::PoolTimedOut),
        AcquireError::Closed => store_error(sqlx::Error::PoolClosed),
    }
}

fn version_of(v: i64) -> Result<Version, StoreError> {
    u64::try_from(v)
        .map(Version::new)
        .map_err(|_| StoreError::internal(format!("negative version {v} in the database")))
}

/// The smallest string greater than every string that starts with `prefix`, in byte (code point)
/// order; `None` when there is none (an empty prefix, or one of only `char::MAX`).
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000; // skip the surrogates, which are not chars
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl KvStore for PostgresStore {
    /// Batched with concurrent `get`s unless read batching is off (see "Batching").
    async fn get(&self, key: &Key) -> Result<Option<Entry>, StoreError> {
        let row = match &self.reads {
            Some(batcher) => batcher.call(key.clone()).await?,
            None => self.get_one(key.as_str()).await?,
        };
        row.map(|(value, version)| {
            Ok(Entry {
                key: key.clone(),
                value: Value::new(value),
                version: version_of(version)?,
            })
        })
        .transpose()
    }

    /// Writes in one statement; an unconditional write is batched with concurrent ones unless
    /// write batching is off (see "Batching"). A failed precondition reports the version from the statement's
    /// snapshot, or, when a concurrent commit made that stale, from a second read.
    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, StoreError> {
        let result = match precondition {
            Precondition::None => {
                return match &self.writes {
                    Some(batcher) => batcher.call((key, value)).await?,
                    None => self.put_one(&key, &value).await,
                };
            }
            Precondition::Absent => {
                let create = write_statement(CREATE, &key, &value, None);
                self.conditional(&key, precondition, create).await?
            }
            Precondition::Version(expected) => {
                let expected = expected_version(expected)?;
                let swap = write_statement(SWAP, &key, &value, Some(expected));
                self.conditional(&key, precondition, swap).await?
            }
        };
        match result {
            Ok(version) => Ok(PutOutcome {
                version,
                created: precondition == Precondition::Absent,
            }),
            Err(current) => Err(StoreError::PreconditionFailed { current }),
        }
    }

    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, StoreError> {
        match precondition {
            Precondition::None => {
                let version: Option<i64> = self
                    .run(false, |conn| {
                        let key = key.clone();
                        Box::pin(async move {
                            sqlx::query_scalar(DELETE)
                                .bind(key.as_str())
                                .fetch_optional(conn)
                                .await
                        })
                    })
                    .await?;
                match version {
                    Some(v) => Ok(DeleteOutcome::Deleted {
                        version: version_of(v)?,
                    }),
                    None => Ok(DeleteOutcome::Absent),
                }
            }
            Precondition::Absent => match self.current(key).await? {
                None => Ok(DeleteOutcome::Absent),
                current => Err(StoreError::PreconditionFailed { current }),
            },
            Precondition::Version(expected) => {
                let expected = expected_version(expected)?;
                let result = self
                    .conditional(key, precondition, |conn| {
                        let key = key.clone();
                        Box::pin(async move {
                            sqlx::query_as(DELETE_IF)
                                .bind(key.as_str())
                                .bind(expected)
                                .fetch_one(conn)
                                .await
                        })
                    })
                    .await?;
                match result {
                    Ok(version) => Ok(DeleteOutcome::Deleted { version }),
                    Err(current) => Err(StoreError::PreconditionFailed { current }),
                }
            }
        }
    }

    async fn list(&self, query: &ListQuery) -> Result<Page, StoreError> {
        let prefix = query.prefix();
        let upper = successor(prefix);
        // Start after the cursor when it lies inside the range, else at the prefix.
        let after = query
            .cursor()
            .map(|c| c.after_key().as_str())
            .filter(|after| *after >= prefix);
        let (sql, lower) = match (after, &upper) {
            (None, Some(_)) => (LIST_FROM_TO, prefix),
            (Some(after), Some(_)) => (LIST_AFTER_TO, after),
            (None, None) => (LIST_FROM, prefix),
            (Some(after), None) => (LIST_AFTER, after),
        };
        let lower: std::sync::Arc<str> = lower.into();
        let upper: Option<std::sync::Arc<str>> = upper.map(Into::into);
        let fetch = i64::try_from(query.limit() + 1).unwrap_or(i64::MAX);
        let rows: Vec<(String, i64)> = self
            .run(true, |conn| {
                let (lower, upper) = (lower.clone(), upper.clone());
                Box::pin(async move {
                    let q = sqlx::query_as(sql).bind(&*lower);
                    let q = match &upper {
                        Some(upper) => q.bind(&**upper),
                        None => q,
                    };
                    q.bind(fetch).fetch_all(conn).await
                })
            })
            .await?;
        let more = rows.len() > query.limit();
        let mut items = Vec::with_capacity(rows.len().min(query.limit()));
        for (key, version) in rows.into_iter().take(query.limit()) {
            let key = Key::new(key).map_err(|e| {
                StoreError::internal(format!("an invalid key in the database: {e}"))
            })?;
            items.push(ListItem {
                key,
                version: version_of(version)?,
            });
        }
        let next_cursor = if more {
            items.last().map(|item| Cursor::after(item.key.clone()))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.run(true, |conn| {
            Box::pin(async move { sqlx::query("SELECT 1").execute(conn).await.map(drop) })
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.pool.close();
        Ok(())
    }
}

/// A conditional write (`CREATE` or `SWAP`) as a query to run on a connection; each attempt owns
/// cheap clones (reference counts) of the key and the value.
fn write_statement(
    sql: &'static str,
    key: &Key,
    value: &Value,
    expected: Option<i64>,
) -> impl for<'c> Fn(&'c mut PgConnection) -> Query<'c, Conditional> {
    let (key, value) = (key.clone(), value.clone());
    move |conn| {
        let (key, value) = (key.clone(), value.clone());
        Box::pin(async move {
            let q = sqlx::query_as(sql)
                .bind(key.as_str())
                .bind(value.as_bytes());
            let q = match expected {
                Some(v) => q.bind(v),
                None => q,
            };
            q.fetch_one(conn).await
        })
    }
}

fn expected_version(v: Version) -> Result<i64, StoreError> {
    // A version past i64::MAX cannot be stored, so it matches no key.
    Ok(i64::try_from(v.get()).unwrap_or(-1))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn successors_bound_prefix_ranges() {
        assert_eq!(successor(""), None);
        assert_eq!(successor("ab").as_deref(), Some("ac"));
        assert_eq!(successor("a/").as_deref(), Some("a0"));
        assert_eq!(successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(successor("\u{10FFFF}\u{10FFFF}"), None);
    }

    proptest! {
        #[test]
        fn every_key_with_the_prefix_sorts_below_the_successor(
            prefix in "\\PC{0,4}",
            rest in "\\PC{0,4}",
            other in "\\PC{0,6}",
        ) {
            let key = format!("{prefix}{rest}");
            if let Some(upper) = successor(&prefix) {
                prop_assert!(key.as_bytes() < upper.as_bytes());
                // Anything at or past the prefix and below the bound has the prefix.
                if other.as_str() >= prefix.as_str() && other.as_bytes() < upper.as_bytes() {
                    prop_assert!(other.starts_with(&prefix));
                }
            }
        }
    }

    #[test]
    fn options_never_print_the_url() {
        let options = PostgresOptions::new("postgres://u:hunter2@db:6543/kv");
        assert!(!format!("{options:?}").contains("hunter2"));
        assert_eq!(options.target(), "u@db:6543/kv");
    }
}
