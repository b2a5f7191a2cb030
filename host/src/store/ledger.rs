//! The double-entry ledger's tables: `ledger_balances`, `ledger_transactions`,
//! `ledger_entries`.

use sqlx::Row;

use super::matching::value_rows;
use super::{Constraint, Store, StoreError, Tx};
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

/// Posts a balanced transaction inside `tx`. Postings are applied in the order given (by
/// account), each with one conditional upsert that refuses to cross the account's floor or
/// the maximum, so concurrent debits of one account serialise on its row and never overdraw
/// it. The entries follow in one multi-row insert: 2 + postings statements in all.
pub(crate) async fn post(tx: &mut Tx, t: &LedgerTransaction) -> Result<PostOutcome, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO ledger_transactions (id, kind, reference, request, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&t.id)
    .bind(t.kind.as_str())
    .bind(&t.reference)
    .bind(&t.request)
    .bind(t.created_at)
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::classify(e, &[LEDGER_REFERENCE_TAKEN]));
    match inserted {
        Ok(_) => {}
        Err(StoreError::Unique(_)) => return Ok(PostOutcome::ReferenceTaken),
        Err(e) => return Err(e),
    }
    for p in &t.postings {
        let (floor, max) = (p.kind.floor().minor(), MAX_BALANCE.minor());
        let query = if (floor..=max).contains(&p.amount.minor()) {
            // A new account opens at the amount; an existing one moves only within its limits.
            sqlx::query(
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
            sqlx::query(
                "UPDATE ledger_balances SET balance = balance + $2 \
                 WHERE account = $1 AND balance + $2 >= $3 AND balance + $2 <= $4",
            )
            .bind(&p.account)
        };
        let done = query
            .bind(p.amount.minor())
            .bind(floor)
            .bind(max)
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(PostOutcome::LimitReached {
                account: p.account.clone(),
            });
        }
    }
    if t.postings.is_empty() {
        return Ok(PostOutcome::Posted);
    }
    let sql = format!(
        "INSERT INTO ledger_entries (transaction_id, account, amount) VALUES {}",
        value_rows(tx.backend(), t.postings.len(), 3)
    );
    let mut entries = sqlx::query(sqlx::AssertSqlSafe(sql));
    for p in &t.postings {
        entries = entries.bind(&t.id).bind(&p.account).bind(p.amount.minor());
    }
    entries.execute(&mut **tx).await?;
    Ok(PostOutcome::Posted)
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
