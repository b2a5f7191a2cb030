//! SQLite's one writing connection, and this process's turn to use it.
//!
//! SQLite takes one writer at a time. Writers here take turns on a mutex, first come first
//! served, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms and
//! so stretches tail latency under contention. (Other processes on the same file still meet
//! the busy timeout.)
//!
//! The mutex owns the connection that every write uses, for two reasons measured under the
//! trading bench (BENCHMARKS.md, "One writing connection"):
//! - SQLite empties a connection's page cache whenever another connection has committed, so
//!   writes spread over the pool re-read every page they touch; this connection is the only
//!   one that commits, so its cache stays warm.
//! - A connection taken from and given back to the pool costs a task hand-off on its return,
//!   which the next writer would wait for while holding the turn.

use std::sync::Arc;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Executor};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

/// The writing connection, and whether a transaction was left open on it.
pub(crate) struct Writer {
    pub(crate) conn: AnyConnection,
    /// Set while a transaction may be open: a `Tx` dropped without commit or rollback (an
    /// error returned early, a request cancelled half-way) leaves it set, and the next turn
    /// rolls that transaction back before anything else.
    pub(crate) open: bool,
}

/// The turn to write: the connection, held until dropped.
pub(crate) type Turn = OwnedMappedMutexGuard<Option<Writer>, Writer>;

#[derive(Clone)]
pub(crate) struct WriteTurn(Arc<Mutex<Option<Writer>>>);

impl WriteTurn {
    pub(crate) async fn connect(options: &AnyConnectOptions) -> Result<WriteTurn, sqlx::Error> {
        let mut conn = options.connect().await?;
        conn.execute(super::SQLITE_PRAGMAS).await?;
        Ok(WriteTurn(Arc::new(Mutex::new(Some(Writer {
            conn,
            open: false,
        })))))
    }

    /// Waits for the turn; the connection comes back with no transaction open.
    pub(crate) async fn take(&self) -> Result<Turn, sqlx::Error> {
        let guard: OwnedMutexGuard<Option<Writer>> = Arc::clone(&self.0).lock_owned().await;
        let mut turn =
            OwnedMutexGuard::try_map(guard, Option::as_mut).map_err(|_| sqlx::Error::PoolClosed)?;
        if turn.open {
            // Fails only when SQLite had already ended the transaction itself.
            if let Err(e) = turn.conn.execute("ROLLBACK").await {
                tracing::debug!(error = %e, "rolling back an abandoned write transaction");
            }
            turn.open = false;
        }
        Ok(turn)
    }

    /// Closes the connection once the current turn ends; later turns fail.
    pub(crate) async fn close(&self) {
        let writer = self.0.lock().await.take();
        if let Some(writer) = writer
            && let Err(e) = sqlx::Connection::close(writer.conn).await
        {
            tracing::warn!(error = %e, "closing the SQLite writing connection");
        }
    }
}
