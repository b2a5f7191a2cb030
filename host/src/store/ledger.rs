//! The double-entry ledger's tables: `ledger_balances`, `ledger_transactions`,
//! `ledger_entries`.

use sqlx::Row;

use super::batch::{Batch, Outcome, Stopped};
use super::matching::value_rows;
use super::{Backend, Constraint, Store, StoreError, Tx};
use crate::domain::ledger::{LedgerAudit, LedgerTransaction, MAX_BALANCE, TransactionKind};
use crate::domain::money::Money;

const LEDGER_REFERENCE_TAKEN: Constraint = Constraint {
    name: "ledger_transactions_reference_key",
    sqlite_columns: "ledger_transactions.kind, ledger_transactions.reference",
};

/// Whether every posting fitted its account's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Posted,
    /// Posting to `account` would take it below its floor (a user below zero) or above the
    /// maximum; nothing was written and the caller must roll back.
    LimitReached {
        account: String,
    },
    /// A transaction of this kind with this reference exists already; nothing was written.
    ReferenceTaken,
}

/// A stored transaction header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTransaction {
    pub id: String,
    pub request: String,
    pub created_at: i64,
}

/// Where a posted transaction's statements sit in a batch, to read its outcome back.
#[derive(Clone)]
pub(crate) struct Posting {
    /// The header's index in the batch.
    header: usize,
    accounts: Vec<String>,
}

/// Adds the statements that post `t` to `batch`: the header, one conditional upsert per
/// posting (in the order given, by account) that refuses to cross the account's floor or the
/// maximum, so concurrent debits of one account serialise on its row and never overdraw it,
/// and the entries in one multi-row insert.
pub(crate) fn push_post(batch: &mut Batch, t: &LedgerTransaction) -> Posting {
    let header = batch.len();
    batch
        .push(
            "INSERT INTO ledger_transactions (id, kind, reference, request, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.id)
        .bind(t.kind.as_str())
        .bind(&t.reference)
        .bind(&t.request)
        .bind(t.created_at);
    for p in &t.postings {
        let (floor, max) = (p.kind.floor().minor(), MAX_BALANCE.minor());
        let statement = if (floor..=max).contains(&p.amount.minor()) {
            // A new account opens at the amount; an existing one moves only within its limits.
            batch
                .push(
                    "INSERT INTO ledger_balances (account, kind, balance) VALUES ($1, $2, $3) \
                     ON CONFLICT (account) DO UPDATE \
                     SET balance = ledger_balances.balance + excluded.balance \
                     WHERE ledger_balances.balance + excluded.balance >= $4 \
                       AND ledger_balances.balance + excluded.balance <= $5",
                )
                .bind(&p.account)
                .bind(p.kind.as_str())
        } else {
            // Opening at this amount would already cross a limit: only an existing account
            // can take it.
            batch
                .push(
                    "UPDATE ledger_balances SET balance = balance + $2 \
                     WHERE account = $1 AND balance + $2 >= $3 AND balance + $2 <= $4",
                )
                .bind(&p.account)
        };
        statement.bind(p.amount.minor()).bind(floor).bind(max);
    }
    if !t.postings.is_empty() {
        // Numbered parameters: a batch shifts them past the statements before (see `batch`).
        let sql = format!(
            "INSERT INTO ledger_entries (transaction_id, account, amount) VALUES {}",
            value_rows(Backend::Postgres, t.postings.len(), 3)
        );
        let mut entries = batch.push(&sql);
        for p in &t.postings {
            entries = entries.bind(&t.id).bind(&p.account).bind(p.amount.minor());
        }
    }
    Posting {
        header,
        accounts: t.postings.iter().map(|p| p.account.clone()).collect(),
    }
}

impl Posting {
    /// The first account whose posting ran and did not fit its limits.
    fn refused<'p>(&'p self, done: &[Outcome]) -> Option<&'p String> {
        let postings = done.iter().skip(self.header + 1);
        postings
            .zip(&self.accounts)
            .find(|(o, _)| o.rows_affected != 1)
            .map(|(_, account)| account)
    }

    /// Whether every posting ran and fitted its account's limits, from the batch's outcomes.
    pub(crate) fn fits(&self, done: &[Outcome]) -> bool {
        done.len() > self.header + self.accounts.len() && self.refused(done).is_none()
    }

    /// The posting's outcome, from the outcomes of the batch's statements that ran (`done`)
    /// and the error that stopped it, if any. A posting that did not fit its limits wins over
    /// a later error (an entry for an account that was never opened), since the caller rolls
    /// back either way; a taken reference stops the batch at the header.
    pub(crate) fn outcome(
        &self,
        done: &[Outcome],
        error: Option<sqlx::Error>,
    ) -> Result<PostOutcome, StoreError> {
        if let Some(account) = self.refused(done) {
            return Ok(PostOutcome::LimitReached {
                account: account.clone(),
            });
        }
        match error {
            None => Ok(PostOutcome::Posted),
            Some(e) if done.len() == self.header => {
                match StoreError::classify(e, &[LEDGER_REFERENCE_TAKEN]) {
                    StoreError::Unique(_) => Ok(PostOutcome::ReferenceTaken),
                    other => Err(other),
                }
            }
            Some(e) => Err(StoreError::Database(e)),
        }
    }
}

/// Posts a balanced transaction inside `tx`: 2 + postings statements in all, sent as one
/// batch.
pub(crate) async fn post(tx: &mut Tx, t: &LedgerTransaction) -> Result<PostOutcome, StoreError> {
    let mut batch = Batch::new(tx.backend());
    let posting = push_post(&mut batch, t);
    match tx.run(batch).await {
        Ok(done) => posting.outcome(&done, None),
        Err(Stopped { done, error }) => posting.outcome(&done, Some(error)),
    }
}

impl Store {
    /// Posts a transaction on its own (credits); rolls back when a limit is reached.
    pub async fn post_ledger_transaction(
        &self,
        t: &LedgerTransaction,
    ) -> Result<PostOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let outcome = post(&mut tx, t).await?;
        if outcome == PostOutcome::Posted {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    pub async fn ledger_transaction_by_reference(
        &self,
        kind: TransactionKind,
        reference: &str,
    ) -> Result<Option<StoredTransaction>, StoreError> {
        let row = sqlx::query(
            "SELECT id, request, created_at FROM ledger_transactions \
             WHERE kind = $1 AND reference = $2",
        )
        .bind(kind.as_str())
        .bind(reference)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(StoredTransaction {
            id: row.try_get("id")?,
            request: row.try_get("request")?,
            created_at: row.try_get("created_at")?,
        }))
    }

    /// An account's balance; 0 when it has never been posted to.
    pub async fn ledger_balance(&self, account: &str) -> Result<Money, StoreError> {
        let row = sqlx::query("SELECT balance FROM ledger_balances WHERE account = $1")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        Ok(Money::from_minor(match row {
            Some(row) => row.try_get("balance")?,
            None => 0,
        }))
    }

    /// The ledger's invariants, read in one statement so that both databases answer from one
    /// consistent snapshot even while settlements run.
    pub async fn ledger_audit(&self) -> Result<LedgerAudit, StoreError> {
        let row = sqlx::query(
            "SELECT \
               (SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_entries) \
                 AS entries_sum, \
               (SELECT COUNT(*) FROM ledger_transactions) AS transactions, \
               (SELECT COUNT(*) FROM (SELECT transaction_id FROM ledger_entries \
                  GROUP BY transaction_id HAVING SUM(amount) <> 0) u) AS unbalanced, \
               (SELECT COUNT(*) FROM ledger_balances b WHERE b.balance <> \
                  (SELECT COALESCE(SUM(e.amount), 0) FROM ledger_entries e \
                   WHERE e.account = b.account)) AS mismatched, \
               (SELECT COUNT(*) FROM ledger_balances WHERE kind = 'user' AND balance < 0) \
                 AS negative, \
               (SELECT COUNT(*) FROM confirmations c WHERE c.status = 'settled' AND NOT EXISTS \
                  (SELECT 1 FROM settlements s JOIN ledger_transactions t \
                     ON t.id = s.ledger_transaction_id AND t.kind = 'settlement' \
                       AND t.reference = s.confirm_id \
                   WHERE s.confirm_id = c.id)) \
               + (SELECT COUNT(*) FROM settlements s JOIN confirmations c ON c.id = s.confirm_id \
                  WHERE c.status <> 'settled') \
               + (SELECT COUNT(*) FROM ledger_transactions t WHERE t.kind = 'settlement' \
                  AND NOT EXISTS (SELECT 1 FROM settlements s \
                                  WHERE s.ledger_transaction_id = t.id)) AS incomplete, \
               CAST((CASE WHEN (SELECT COALESCE(SUM(balance), 0) FROM ledger_balances \
                           WHERE account = 'system:holds') \
                        = (SELECT COALESCE(SUM(hold_minor), 0) FROM subscription_charges \
                           WHERE status = 'held') THEN 0 ELSE 1 END) \
               + (CASE WHEN (SELECT COALESCE(SUM(balance), 0) FROM ledger_balances \
                           WHERE account = 'system:subscriptions') \
                        = (SELECT COALESCE(SUM(amount_minor), 0) FROM subscription_charges \
                           WHERE status = 'charged' AND payout_id IS NULL) THEN 0 ELSE 1 END) AS BIGINT) \
                 AS subscription_mismatches, \
               CAST((CASE WHEN (SELECT COALESCE(SUM(balance), 0) FROM ledger_balances \
                           WHERE account = 'system:compute-holds') \
                        = (SELECT COALESCE(SUM(held_minor), 0) FROM compute_orders) \
                        THEN 0 ELSE 1 END) AS BIGINT) \
                 AS compute_mismatches",
        )
        .fetch_one(&self.pool)
        .await?;
        let audit = LedgerAudit {
            entries_sum: row.try_get("entries_sum")?,
            transactions: row.try_get("transactions")?,
            unbalanced_transactions: row.try_get("unbalanced")?,
            balance_mismatches: row.try_get("mismatched")?,
            negative_balances: row.try_get("negative")?,
            incomplete_settlements: row.try_get("incomplete")?,
            subscription_mismatches: row.try_get("subscription_mismatches")?,
            compute_mismatches: row.try_get("compute_mismatches")?,
            balanced: false,
        };
        Ok(LedgerAudit {
            balanced: audit.entries_sum == 0
                && audit.unbalanced_transactions == 0
                && audit.balance_mismatches == 0
                && audit.negative_balances == 0
                && audit.incomplete_settlements == 0
                && audit.subscription_mismatches == 0
                && audit.compute_mismatches == 0,
            ..audit
        })
    }
}
