//! Write transactions through the real store, on both databases: one left open by a dropped
//! `Tx` or by a request cancelled half-way is rolled back, never committed in part, and the
//! next write proceeds. On SQLite every write shares one connection (the write turn), so a
//! transaction left open there would otherwise swallow the next writer's statements.

use std::time::Duration;

use sqlx::Row;

use liutong::domain::matching::Terms;
use liutong::store::Store;

use crate::on_both_backends;
use crate::support::TestApp;
use crate::support::fixtures::register_demand;

/// Polls `fut` at most `polls` times, letting the runtime run in between, and drops it if it
/// has not finished by then: a cancellation at a chosen await point, finer than a timer's
/// millisecond.
async fn cancel_after<F: std::future::Future>(polls: u64, fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        if let std::task::Poll::Ready(out) = futures_util::poll!(fut.as_mut()) {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

async fn ledger_transactions(store: &Store, id: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM ledger_transactions WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .expect("count")
        .try_get::<i64, _>(0)
        .expect("count column")
}

async fn insert_header(tx: &mut liutong::store::Tx, id: &str) {
    sqlx::query(
        "INSERT INTO ledger_transactions (id, kind, reference, request, created_at) \
         VALUES ($1, 'credit', $1, '{}', 0)",
    )
    .bind(id)
    .execute(&mut **tx)
    .await
    .expect("insert");
}

/// A write transaction of one header row, committed and read back: the store still writes.
async fn commit_header(store: &Store, id: &str) {
    let mut tx = store.begin_write().await.expect("begin");
    insert_header(&mut tx, id).await;
    tx.commit().await.expect("commit");
    assert_eq!(ledger_transactions(store, id).await, 1);
}

async fn a_dropped_transaction_is_rolled_back(app: TestApp) {
    let store = &app.store;
    let mut tx = store.begin_write().await.expect("begin");
    insert_header(&mut tx, "txn_abandoned").await;
    drop(tx);

    // The next writer starts clean: its own transaction commits, the dropped one's row is gone.
    commit_header(store, "txn_kept").await;
    assert_eq!(ledger_transactions(store, "txn_abandoned").await, 0);

    // An explicit rollback ends the transaction as well.
    let mut tx = store.begin_write().await.expect("begin");
    insert_header(&mut tx, "txn_rolled_back").await;
    tx.rollback().await.expect("rollback");
    assert_eq!(ledger_transactions(store, "txn_rolled_back").await, 0);
}

/// Publishing a demand is one batch of five or six statements (status, terms, the match
/// feed's version and item). Cancelled at every await point from the first to past its end,
/// it either happened entirely or not at all, and the store keeps working.
async fn a_cancelled_write_is_all_or_nothing(app: TestApp) {
    let store = &app.store;
    let carol = app.user("carol").await;
    let terms = Terms::of(&["cancel".to_owned()], &["bench".to_owned()], None);
    let mut completed = 0;
    for attempt in 0..80u64 {
        let id = app
            .register_demand_from(&carol, &register_demand("carol", &["cancel"], "dataset"))
            .await;
        let publish = store.publish_demand(&id, "dataset", &terms);
        let finished = match cancel_after(attempt * attempt, publish).await {
            Some(result) => {
                result.expect("publish");
                true
            }
            None => false,
        };
        // One statement, so one snapshot: a cancelled publish whose COMMIT was already on its
        // way may land between two separate reads.
        let row = sqlx::query(
            "SELECT d.status, \
               (SELECT COUNT(*) FROM match_terms t WHERE t.item_id = d.id) AS terms, \
               (SELECT COUNT(*) FROM match_items i WHERE i.item_id = d.id AND i.live = 1) \
                 AS feed \
             FROM demands d WHERE d.id = $1",
        )
        .bind(&id)
        .fetch_one(store.pool())
        .await
        .expect("demand row");
        let status: String = row.try_get("status").expect("status");
        let terms_rows: i64 = row.try_get("terms").expect("terms");
        let feed_rows: i64 = row.try_get("feed").expect("feed");
        let published = status == "published";
        assert_eq!(
            (terms_rows > 0, feed_rows == 1),
            (published, published),
            "attempt {attempt}: status {status}, {terms_rows} terms, {feed_rows} feed rows"
        );
        assert!(published || !finished, "a finished publish must show");
        completed += usize::from(published);
    }
    // The later attempts, polled long enough, ran to the end.
    assert!(completed > 0, "no publish completed");
    commit_header(store, "txn_after").await;
}

/// Opening a write transaction, cancelled at every point of its `BEGIN`, leaves no connection
/// inside a transaction (on PostgreSQL sqlx 0.9's own `begin` did, transact-rs/sqlx#4393), and
/// the next write commits.
async fn a_cancelled_begin_leaves_no_transaction_open(app: TestApp) {
    use liutong::store::Backend;
    let store = &app.store;
    for attempt in 0..200u64 {
        // Dropped at once when it completes in time: nothing was written.
        let _ = cancel_after(attempt % 40, store.begin_write()).await;
    }
    if store.backend() == Backend::Postgres {
        // A cancelled BEGIN finishes on its own task and is rolled back as the connection
        // returns to the pool: give those returns a moment.
        let mut stuck = -1;
        for _ in 0..50 {
            stuck = sqlx::query(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            )
            .fetch_one(store.pool())
            .await
            .expect("activity")
            .try_get::<i64, _>(0)
            .expect("count");
            if stuck == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(stuck, 0, "connections left inside a transaction");
    }
    for n in 0..20 {
        commit_header(store, &format!("txn_after_begin_{n}")).await;
    }
}

/// On SQLite a batch runs on the writing thread once handed over, so a publish whose caller
/// goes away after its first poll still happens, entirely. (On PostgreSQL it is all or
/// nothing, as above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_write_handed_over_runs_to_its_end() {
    let app = TestApp::spawn(crate::support::Backend::Sqlite).await;
    let store = &app.store;
    let carol = app.user("carol").await;
    let terms = Terms::of(&["gone".to_owned()], &[], None);
    // The writing thread may, rarely, finish a publish before its first poll returns: then
    // nothing was cancelled, and the next demand is tried.
    let mut dropped = None;
    for _ in 0..20 {
        let id = app
            .register_demand_from(&carol, &register_demand("carol", &["gone"], "dataset"))
            .await;
        if cancel_after(1, store.publish_demand(&id, "dataset", &terms))
            .await
            .is_none()
        {
            dropped = Some(id);
            break;
        }
    }
    let id = dropped.expect("a publish still running after its first poll, in 20 tries");
    let mut status = String::new();
    for _ in 0..100 {
        status = sqlx::query("SELECT status FROM demands WHERE id = $1")
            .bind(&id)
            .fetch_one(store.pool())
            .await
            .expect("demand")
            .try_get("status")
            .expect("status");
        if status == "published" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "published");
    let feed: i64 = sqlx::query("SELECT COUNT(*) FROM match_items WHERE item_id = $1 AND live = 1")
        .bind(&id)
        .fetch_one(store.pool())
        .await
        .expect("feed")
        .try_get(0)
        .expect("count");
    assert_eq!(feed, 1);
}

/// Text a batch carries reaches the database exactly as written, whatever it holds. On SQLite
/// a batch is one command whose `$N` are renumbered across its statements (store/batch.rs):
/// quotes, backslashes and `$N` inside a value must stay in the value, and a term list that
/// grows the batch must not shift another statement's parameters.
async fn text_in_a_batch_is_stored_as_written(app: TestApp) {
    let store = &app.store;
    let carol = app.user("carol").await;
    let keywords: Vec<String> = [
        "it's",
        r"back\slash",
        r"\'; DELETE FROM demands; --",
        "$1 $2",
        "E'x'",
        "引号'\"",
        r"\x00ff",
        "''",
        r"\",
        "naïve 💡",
    ]
    .iter()
    .map(|k| (*k).to_owned())
    .collect();
    let terms = Terms::of(&keywords, &[], None);
    let data_type = r"data'type\ $1";
    let id = app
        .register_demand_from(&carol, &register_demand("carol", &["plain"], "dataset"))
        .await;
    store
        .publish_demand(&id, data_type, &terms)
        .await
        .expect("publish");
    let rows =
        sqlx::query("SELECT term, data_type FROM match_terms WHERE item_id = $1 AND field = 'k'")
            .bind(&id)
            .fetch_all(store.pool())
            .await
            .expect("terms");
    // Sorted here, by bytes as the expected set is: the database's collation may order text
    // otherwise.
    let mut stored: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("term"), r.get("data_type")))
        .collect();
    stored.sort();
    let expected: Vec<(String, String)> = terms
        .keywords
        .iter()
        .map(|k| (k.clone(), data_type.to_owned()))
        .collect();
    assert_eq!(stored.len(), keywords.len(), "{stored:?}");
    assert_eq!(stored, expected);
    let demands: i64 = sqlx::query("SELECT COUNT(*) FROM demands")
        .fetch_one(store.pool())
        .await
        .expect("count")
        .get(0);
    assert_eq!(demands, 1, "the demand survived its own keywords");

    if matches!(app.db, crate::support::TestDb::Postgres { .. }) {
        // PostgreSQL text cannot hold NUL (SQLite's can): refused, and nothing of the batch is
        // written.
        let other = app
            .register_demand_from(&carol, &register_demand("carol", &["plain"], "dataset"))
            .await;
        let nul = Terms::of(&["nul\0byte".to_owned()], &[], None);
        assert!(store.publish_demand(&other, "dataset", &nul).await.is_err());
        let row = sqlx::query(
            "SELECT d.status, (SELECT COUNT(*) FROM match_terms t WHERE t.item_id = d.id) AS terms \
             FROM demands d WHERE d.id = $1",
        )
        .bind(&other)
        .fetch_one(store.pool())
        .await
        .expect("demand");
        assert_ne!(row.get::<String, _>("status"), "published");
        assert_eq!(row.get::<i64, _>("terms"), 0);
    }
}

on_both_backends!(
    text_in_a_batch_is_stored_as_written,
    a_dropped_transaction_is_rolled_back,
    a_cancelled_write_is_all_or_nothing,
    a_cancelled_begin_leaves_no_transaction_open
);
