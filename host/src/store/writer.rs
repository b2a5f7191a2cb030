//! SQLite's one writing connection, and this process's turn to use it.
//!
//! SQLite takes one writer at a time. Writers here take turns on a mutex, first come first
//! served, instead of in SQLite's busy handler, which polls with sleeps of up to 100 ms and
//! so stretches tail latency under contention. (Other processes on the same file still meet
//! the busy timeout.)
//!
//! The mutex owns the connection that every write uses, and writes run on a thread of their
//! own, for reasons measured under the trading bench (BENCHMARKS.md, "One command per write,
//! one writing connection"):
//! - SQLite empties a connection's page cache whenever another connection has committed, so
//!   writes spread over the pool re-read every page they touch; this connection is the only
//!   one that commits, so its cache stays warm.
//! - A connection taken from and given back to the pool costs a task hand-off on its return,
//!   which the next writer would wait for while holding the turn.
//! - On the shared runtime a write that holds the turn waits, after each answer from SQLite,
//!   behind every other request's tasks; the writing thread runs nothing else.
//!
//! SQLite's automatic checkpoint stays on this connection. Tried and reverted: checkpoints on
//! a second connection (passive, every 250 ms) with the automatic one off. Under steady load
//! a passive checkpoint never finds a moment without readers, so the WAL was never restarted
//! and grew by ~100 MB a second; the automatic checkpoint, run by the writer itself, restarts
//! it.

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
pub(crate) struct WriteTurn(Arc<Inner>);

struct Inner {
    writer: Arc<Mutex<Option<Writer>>>,
    /// The writing thread's runtime; it stops when this handle's last clone is dropped.
    runtime: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WriteTurn {
    pub(crate) async fn connect(options: &AnyConnectOptions) -> Result<WriteTurn, sqlx::Error> {
        let mut conn = options.connect().await?;
        conn.execute(super::SQLITE_PRAGMAS).await?;
        let (runtime, stop) = writing_thread()?;
        Ok(WriteTurn(Arc::new(Inner {
            writer: Arc::new(Mutex::new(Some(Writer { conn, open: false }))),
            runtime,
            _stop: stop,
        })))
    }

    /// Runs `write` on the writing thread and waits for its result. The thread runs nothing
    /// else, so a write that holds the turn resumes the moment SQLite answers, where on the
    /// shared runtime it would queue behind the requests of every other connection. A write
    /// runs to its end even if the caller goes away.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        write: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, sqlx::Error> {
        self.0
            .runtime
            .spawn(write)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Waits for the turn; the connection comes back with no transaction open.
    pub(crate) async fn take(&self) -> Result<Turn, sqlx::Error> {
        let guard: OwnedMutexGuard<Option<Writer>> = Arc::clone(&self.0.writer).lock_owned().await;
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
        let writer = self.0.writer.lock().await.take();
        if let Some(writer) = writer
            && let Err(e) = sqlx::Connection::close(writer.conn).await
        {
            tracing::warn!(error = %e, "closing the SQLite writing connection");
        }
    }
}

/// Starts the writing thread: a single-threaded runtime that lives until `stop` is dropped.
fn writing_thread()
-> Result<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>), sqlx::Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(sqlx::Error::Io)?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-writes".into())
        .spawn(move || {
            let _ = runtime.block_on(stopped);
        })
        .map_err(sqlx::Error::Io)?;
    Ok((handle, stop))
}
