//! Statements of one write transaction that travel to the database together.
//!
//! On SQLite every statement is a hand-off to the connection's own thread and back, made while
//! this process's write turn is held, so the turn lasts as long as its hand-offs: under load
//! each cost ~90 µs of wake-ups, more than the statement itself (BENCHMARKS.md, "One command
//! per write, one writing connection"). A batch goes to SQLite as one multi-statement command:
//! one hand-off for all of its statements. PostgreSQL's extended protocol takes one statement per command, so there a
//! batch runs its statements one after another, exactly as separate calls would.
//!
//! The statements of a batch must not need each other's results to be built; they may read
//! what earlier ones wrote. Each statement's outcome (rows and rows affected) comes back in
//! order, so a caller can check a guarded update after the fact and roll back.
//!
//! sqlx's SQLite driver runs a query string of several statements with its parameters bound
//! across them; upstream calls that behaviour deprecated (launchbadge/sqlx#3108) without a
//! replacement. Should a release drop it, `Batch::new` can send SQLite's statements separately
//! as it does PostgreSQL's. The SQLite tests of publishing, settling and the ledger would say
//! so: they read what every statement of those batches wrote.

use futures_util::TryStreamExt;
use sqlx::AnyConnection;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Arguments, AssertSqlSafe, Either, Executor};

use super::writer::WriteTurn;
use super::{Backend, Store, StoreError, Tx};

/// What one statement of a batch did.
#[derive(Default)]
pub(crate) struct Outcome {
    pub rows_affected: u64,
    pub rows: Vec<AnyRow>,
}

/// A batch that stopped at a failing statement: the outcomes of the statements before it, and
/// its error. The transaction must be rolled back.
pub(crate) struct Stopped {
    pub done: Vec<Outcome>,
    pub error: sqlx::Error,
}

impl From<Stopped> for StoreError {
    fn from(stopped: Stopped) -> StoreError {
        StoreError::Database(stopped.error)
    }
}

enum Parts {
    /// One command: the statements joined, each one's `$N` shifted past the parameters of
    /// those before it (SQLite binds `$N` by number across the whole string).
    Joined { sql: String, args: AnyArguments },
    /// One command per statement.
    Separate(Vec<(String, AnyArguments)>),
}

pub(crate) struct Batch {
    parts: Parts,
    statements: usize,
    /// The first parameter that could not be encoded; reported when the batch runs.
    encode_error: Option<sqlx::error::BoxDynError>,
}

impl Batch {
    pub(crate) fn new(backend: Backend) -> Batch {
        let parts = match backend {
            Backend::Sqlite => Parts::Joined {
                sql: String::new(),
                args: AnyArguments::default(),
            },
            Backend::Postgres => Parts::Separate(Vec::new()),
        };
        Batch {
            parts,
            statements: 0,
            encode_error: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.statements
    }

    /// The database the batch was built for: SQLite's statements are joined.
    pub(crate) fn backend(&self) -> Backend {
        match self.parts {
            Parts::Joined { .. } => Backend::Sqlite,
            Parts::Separate(_) => Backend::Postgres,
        }
    }

    /// Adds a statement written with `$1…$n` (each parameter numbered, none anonymous); bind
    /// its parameters, in order, on the returned handle.
    pub(crate) fn push(&mut self, sql: &str) -> Binder<'_> {
        self.statements += 1;
        let args = match &mut self.parts {
            Parts::Joined { sql: joined, args } => {
                shift_parameters(joined, sql, args.len());
                joined.push_str(";\n");
                args
            }
            Parts::Separate(list) => {
                list.push((sql.to_owned(), AnyArguments::default()));
                match list.last_mut() {
                    Some((_, args)) => args,
                    None => unreachable!("a statement was just pushed"),
                }
            }
        };
        Binder {
            args,
            encode_error: &mut self.encode_error,
        }
    }
}

/// Binds one statement's parameters.
pub(crate) struct Binder<'b> {
    args: &'b mut AnyArguments,
    encode_error: &'b mut Option<sqlx::error::BoxDynError>,
}

impl Binder<'_> {
    pub(crate) fn bind<'q, T>(self, value: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        if let Err(e) = self.args.add(value)
            && self.encode_error.is_none()
        {
            *self.encode_error = Some(e);
        }
        self
    }
}

/// Appends `sql` to `out` with every `$N` outside quotes written as `$(N + offset)`.
fn shift_parameters(out: &mut String, sql: &str, offset: usize) {
    let mut chars = sql.char_indices().peekable();
    let mut quoted = false;
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '$' || quoted {
            out.push(c);
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some((j, d)) = chars.peek().copied()
            && d.is_ascii_digit()
        {
            end = j + 1;
            chars.next();
        }
        match sql[start..end].parse::<usize>() {
            Ok(n) => {
                out.push('$');
                out.push_str(&(n + offset).to_string());
            }
            Err(_) => out.push('$'),
        }
    }
}

impl Tx {
    /// Runs `batch` in this transaction; each statement's outcome, in order. A failing
    /// statement stops the batch (the transaction must then be rolled back).
    pub(crate) async fn run(&mut self, batch: Batch) -> Result<Vec<Outcome>, Stopped> {
        run_on(self, batch).await
    }
}

/// Decides from a batch's outcomes whether to commit it.
type Keep = Box<dyn FnOnce(&[Outcome]) -> bool + Send + 'static>;

/// A batch run as a transaction of its own, and whether it was committed.
pub(crate) struct Written {
    pub done: Vec<Outcome>,
    pub committed: bool,
}

impl Store {
    /// Runs `batch` as a write transaction of its own and commits it; a failing statement
    /// rolls it back. On SQLite `BEGIN`, the statements and `COMMIT` go as one command: one
    /// hand-off to the connection's thread while the write turn is held, where a transaction
    /// opened with `begin_write` takes one for `BEGIN`, one per command and one for `COMMIT`.
    pub(crate) async fn write_batch(&self, batch: Batch) -> Result<Vec<Outcome>, Stopped> {
        Ok(self.transact(batch, None).await?.done)
    }

    /// Like `write_batch`, but commits only if `keep` accepts the statements' outcomes (a
    /// guarded update that changed no row, say), and rolls back otherwise. On SQLite that is
    /// two hand-offs: `BEGIN` with the statements, then `COMMIT` or `ROLLBACK`.
    pub(crate) async fn write_batch_if(
        &self,
        batch: Batch,
        keep: impl FnOnce(&[Outcome]) -> bool + Send + 'static,
    ) -> Result<Written, Stopped> {
        self.transact(batch, Some(Box::new(keep))).await
    }

    async fn transact(&self, batch: Batch, keep: Option<Keep>) -> Result<Written, Stopped> {
        let stopped = |error| Stopped {
            done: Vec::new(),
            error,
        };
        let (Some(write_turn), Parts::Joined { .. }) = (&self.write_turn, &batch.parts) else {
            let mut tx = self.open_write().await.map_err(stopped)?;
            let done = tx.run(batch).await?;
            let committed = keep.is_none_or(|keep| keep(&done));
            if committed {
                tx.commit().await.map_err(stopped)?;
            } else {
                tx.rollback().await.map_err(stopped)?;
            }
            return Ok(Written { done, committed });
        };
        let turn = write_turn.clone();
        write_turn
            .run(async move { transact_on_writer(turn, batch, keep).await })
            .await
            .unwrap_or_else(|error| Err(stopped(error)))
    }

    /// Runs a batch of one statement on its own, without `BEGIN` and `COMMIT`: one statement
    /// is atomic by itself, and this saves two round trips (on SQLite, two hand-offs while
    /// holding the write turn). SQLite still takes this process's write turn, as in
    /// `begin_write`.
    pub(crate) async fn write_one(&self, statement: Batch) -> Result<Outcome, sqlx::Error> {
        debug_assert_eq!(statement.len(), 1, "write_one runs one statement");
        let mut done = match &self.write_turn {
            Some(write_turn) => {
                let turn = write_turn.clone();
                write_turn
                    .run(async move {
                        let mut turn = turn.take().await?;
                        run_on(&mut turn.conn, statement).await.map_err(|s| s.error)
                    })
                    .await??
            }
            None => run_on(&mut *self.pool.acquire().await?, statement)
                .await
                .map_err(|s| s.error)?,
        };
        Ok(done.pop().unwrap_or_default())
    }
}

/// SQLite: `batch` as a transaction of its own on the writing connection (see `writer`).
async fn transact_on_writer(
    write_turn: WriteTurn,
    batch: Batch,
    keep: Option<Keep>,
) -> Result<Written, Stopped> {
    let stopped = |error| Stopped {
        done: Vec::new(),
        error,
    };
    let mut turn = write_turn.take().await.map_err(stopped)?;
    let Parts::Joined { sql, args } = batch.parts else {
        unreachable!("SQLite batches are joined")
    };
    let end = if keep.is_none() { "COMMIT" } else { "" };
    let whole = Batch {
        parts: Parts::Joined {
            sql: format!("BEGIN IMMEDIATE;\n{sql}{end}"),
            args,
        },
        statements: batch.statements + 2,
        encode_error: batch.encode_error,
    };
    // Until the transaction has ended, a dropped future leaves it for the next turn to roll
    // back.
    turn.open = true;
    let mut done = match run_on(&mut turn.conn, whole).await {
        Ok(done) => done,
        Err(Stopped { mut done, error }) => {
            if !done.is_empty() {
                // BEGIN ran: the transaction is open.
                done.remove(0);
                turn.conn.execute("ROLLBACK").await.map_err(stopped)?;
            }
            turn.open = false;
            return Err(Stopped { done, error });
        }
    };
    // BEGIN's (and COMMIT's) outcomes are not the caller's.
    if !done.is_empty() {
        done.remove(0);
    }
    let committed = match keep {
        None => {
            done.pop();
            true
        }
        Some(keep) => {
            let committed = keep(&done);
            let end = if committed { "COMMIT" } else { "ROLLBACK" };
            if let Err(error) = turn.conn.execute(end).await {
                return Err(Stopped { done, error });
            }
            committed
        }
    };
    turn.open = false;
    Ok(Written { done, committed })
}

async fn run_on(conn: &mut AnyConnection, batch: Batch) -> Result<Vec<Outcome>, Stopped> {
    let mut done = Vec::with_capacity(batch.statements);
    if let Some(e) = batch.encode_error {
        return Err(Stopped {
            done,
            error: sqlx::Error::Encode(e),
        });
    }
    let commands = match batch.parts {
        Parts::Joined { sql, args } => vec![(sql, args)],
        Parts::Separate(list) => list,
    };
    for (sql, args) in commands {
        let mut steps = conn.fetch_many(sqlx::query_with(AssertSqlSafe(sql), args));
        let mut rows = Vec::new();
        loop {
            match steps.try_next().await {
                // Each statement's rows come first, then its result.
                Ok(Some(Either::Right(row))) => rows.push(row),
                Ok(Some(Either::Left(result))) => done.push(Outcome {
                    rows_affected: result.rows_affected(),
                    rows: std::mem::take(&mut rows),
                }),
                Ok(None) => break,
                Err(error) => {
                    drop(steps);
                    return Err(Stopped { done, error });
                }
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::shift_parameters;

    fn shifted(sql: &str, offset: usize) -> String {
        let mut out = String::new();
        shift_parameters(&mut out, sql, offset);
        out
    }

    #[test]
    fn parameters_move_past_the_earlier_statements() {
        assert_eq!(
            shifted("UPDATE t SET a = $2 WHERE id = $1 AND b <= $2", 5),
            "UPDATE t SET a = $7 WHERE id = $6 AND b <= $7"
        );
        assert_eq!(
            shifted("VALUES ($9, $10), ($11, $12)", 3),
            "VALUES ($12, $13), ($14, $15)"
        );
        assert_eq!(shifted("SELECT $1", 0), "SELECT $1");
    }

    #[test]
    fn quoted_dollars_stay_as_written() {
        assert_eq!(shifted("SELECT '$1', $1", 2), "SELECT '$1', $3");
        assert_eq!(
            shifted("SELECT 'it''s $2' || $2", 1),
            "SELECT 'it''s $2' || $3"
        );
    }
}
