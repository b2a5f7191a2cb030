//! Persistence. One SQL dialect for both backends through sqlx's `Any` driver: `$N` placeholders
//! (SQLite accepts them too), integers for flags, money and times, TEXT for identifiers and JSON.
//! Each backend has its own migrations because DDL differs.

pub mod accounts;
pub(crate) mod batch;
pub mod compute;
pub mod compute_bills;
pub mod delivery;
pub mod demands;
pub mod gateway;
pub mod identifiers;
pub mod ledger;
pub mod matching;
pub mod notifications;
pub mod plugins;
pub mod policies;
pub mod provider;
pub mod resources;
pub mod subscriptions;
pub mod trading;
mod writer;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection, Executor, Transaction};

/// A write transaction. On SQLite it also holds this process's turn to write (see
/// `Store::begin_write`). It dereferences to the connection, so `&mut *tx` is an executor.
pub struct Tx {
    tx: Open,
}

enum Open {
    Postgres(Transaction<'static, sqlx::Any>),
    /// On SQLite's writing connection, for the length of the turn.
    Sqlite(writer::Turn),
}

impl Tx {
    pub(crate) fn backend(&self) -> Backend {
        match self.tx {
            Open::Postgres(_) => Backend::Postgres,
            Open::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.tx {
            Open::Postgres(tx) => tx.commit().await,
            Open::Sqlite(turn) => end(turn, "COMMIT").await,
        }
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.tx {
            Open::Postgres(tx) => tx.rollback().await,
            Open::Sqlite(turn) => end(turn, "ROLLBACK").await,
        }
    }
}

/// Ends the transaction open on SQLite's writing connection with `statement`.
async fn end(mut turn: writer::Turn, statement: &'static str) -> Result<(), sqlx::Error> {
    turn.conn.execute(statement).await?;
    turn.open = false;
    Ok(())
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        match &self.tx {
            Open::Postgres(tx) => tx,
            Open::Sqlite(turn) => &turn.conn,
        }
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match &mut self.tx {
            Open::Postgres(tx) => tx,
            Open::Sqlite(turn) => &mut turn.conn,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A named uniqueness or reference rule of the schema. PostgreSQL reports the constraint's name;
/// SQLite reports only the columns ("UNIQUE constraint failed: t.a, t.b"), so both are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constraint {
    pub name: &'static str,
    pub sqlite_columns: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint {} violated", .0.name)]
    Unique(Constraint),
    #[error("foreign key {} violated", .0.name)]
    ForeignKey(Constraint),
    #[error("database URL must start with sqlite: or postgres:")]
    UnsupportedUrl,
    #[error("stored row is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Classifies a database error against the constraints a statement can violate.
    pub fn classify(err: sqlx::Error, candidates: &[Constraint]) -> StoreError {
        let Some(db) = err.as_database_error() else {
            return StoreError::Database(err);
        };
        let matches = |c: &Constraint| match db.constraint() {
            Some(name) => name == c.name,
            None => db
                .message()
                .rsplit_once(": ")
                .is_some_and(|(_, cols)| cols == c.sqlite_columns),
        };
        let found = candidates.iter().find(|c| matches(c)).copied();
        match (db.kind(), found) {
            (sqlx::error::ErrorKind::UniqueViolation, Some(c)) => StoreError::Unique(c),
            (sqlx::error::ErrorKind::ForeignKeyViolation, Some(c)) => StoreError::ForeignKey(c),
            _ => StoreError::Database(err),
        }
    }

    pub fn is_unique(&self, constraint: Constraint) -> bool {
        matches!(self, StoreError::Unique(c) if *c == constraint)
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite's writing connection, one writer at a time (see `writer`); none on PostgreSQL.
    write_turn: Option<writer::WriteTurn>,
}

/// Every SQLite connection's settings. WAL lets readers run beside the single writer; NORMAL
/// sync stays durable across process crashes, which is what kill -9 recovery needs.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 15000;";

/// A pooled PostgreSQL connection idle this long is pinged before it is handed out.
const PING_IDLE_CONNECTIONS: Duration = Duration::from_secs(10);

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

impl Store {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = if backend == Backend::Sqlite {
            create_sqlite_parent_dir(url)?;
            sqlite_create_if_missing(url)
        } else {
            url.to_owned()
        };
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = pool_options(backend, max_connections)
            .connect_with(options.clone())
            .await?;
        let write_turn = match backend {
            Backend::Sqlite => Some(writer::WriteTurn::connect(&options).await?),
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            backend,
            write_turn,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Opens a transaction that will write. SQLite must take its write lock up front: a
    /// deferred transaction that reads first and writes later fails with SQLITE_BUSY instead of
    /// waiting when another writer got in between.
    pub async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(self.open_write().await?)
    }

    pub(crate) async fn open_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self.write_turn().await? {
            Some(mut turn) => {
                turn.open = true;
                turn.conn.execute("BEGIN IMMEDIATE").await?;
                Tx {
                    tx: Open::Sqlite(turn),
                }
            }
            None => {
                // sqlx 0.9's PostgreSQL `begin` is not cancel-safe: a caller dropped while its
                // BEGIN is in flight leaves the pooled connection inside a transaction that
                // nothing rolls back, and the next borrowers' statements run in it
                // (transact-rs/sqlx#4393, fixed upstream after 0.9.0; found by
                // `a_cancelled_write_is_all_or_nothing`). A task of its own always finishes
                // the BEGIN; if the caller has gone by then, the transaction it returns is
                // dropped, and rolled back, like any other.
                let pool = self.pool.clone();
                let tx = tokio::spawn(async move { pool.begin().await })
                    .await
                    .map_err(|_| sqlx::Error::WorkerCrashed)??;
                Tx {
                    tx: Open::Postgres(tx),
                }
            }
        })
    }

    /// SQLite's turn to write, with its connection (see `writer`); none on PostgreSQL.
    pub(crate) async fn write_turn(&self) -> Result<Option<writer::Turn>, sqlx::Error> {
        match &self.write_turn {
            Some(turn) => Ok(Some(turn.take().await?)),
            None => Ok(None),
        }
    }

    pub async fn close(&self) {
        if let Some(turn) = &self.write_turn {
            turn.close().await;
        }
        self.pool.close().await;
    }
}

fn pool_options(backend: Backend, max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out by default: a round trip to PostgreSQL,
        // a hand-off to the connection's thread on SQLite, on every query outside a
        // transaction and every transaction (~25 a trade). A connection that was in use
        // moments ago is alive; only one that sat idle may have been cut meanwhile (a
        // database restart, an idle timeout on the way), so only those are pinged. An
        // in-process SQLite connection cannot be cut.
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if backend == Backend::Postgres && meta.idle_for >= PING_IDLE_CONNECTIONS {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    conn.execute(SQLITE_PRAGMAS).await?;
                }
                Ok(())
            })
        })
}

fn create_sqlite_parent_dir(url: &str) -> Result<(), StoreError> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    }
    Ok(())
}

/// `sqlite://PATH` opens read-write and creates the file, like the default database does,
/// unless the URL chooses its own `mode` (e.g. `mode=ro`).
fn sqlite_create_if_missing(url: &str) -> String {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    if url.contains(":memory:") || query.split('&').any(|pair| pair.starts_with("mode=")) {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

/// Reads a JSON array of strings stored in a TEXT column.
pub(crate) fn decode_string_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("string list: {e}")))
}

pub(crate) fn encode_string_list(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

impl Store {
    /// Rows of `table` whose `id` is one of `ids` (any order).
    pub(crate) async fn fetch_by_ids(
        &self,
        table: &'static str,
        columns: &'static str,
        ids: &[String],
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE id IN ({})",
            matching::placeholders(1, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }
}
