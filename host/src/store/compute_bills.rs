//! Bill lines of compute providers (`compute_bill_lines`) and what charging them changes on the
//! orders. A line is charged in one transaction with its status, the order's hold and the
//! ledger posting, conditional on the line still being pending: two syncs running at once
//! charge each line once.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::compute::{ORDER_COLUMNS, billing_from_row, order_from_row};
use super::ledger::{PostOutcome, post};
use super::{Store, StoreError, Tx};
use crate::domain::compute::{Offering, Order};
use crate::domain::compute_billing::{
    BillLine, BillStatus, BillableOrder, ListedLine, line_transaction, split_payment,
};
use crate::domain::ledger::LedgerTransaction;
use crate::domain::money::Money;

const LINE_COLUMNS: &str = "id, provider_account_id, offering_id, resource_id, period_start, \
     period_end, unit, quantity_milli, amount_minor, currency, order_id, status, charge_minor, \
     fee_minor, rule, error, synced_at";

const UNPAID: &str = "the order's hold and the user's balance do not cover it";

/// Rows per multi-row insert: 13 parameters each, far below either database's limit.
const INSERT_CHUNK: usize = 250;

fn line_from_row(row: &AnyRow) -> Result<BillLine, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(BillLine {
        id: row.try_get("id")?,
        provider_account_id: row.try_get("provider_account_id")?,
        offering_id: row.try_get("offering_id")?,
        resource_id: row.try_get("resource_id")?,
        period_start: row.try_get("period_start")?,
        period_end: row.try_get("period_end")?,
        unit: row.try_get("unit")?,
        quantity_milli: row.try_get("quantity_milli")?,
        amount: Money::from_minor(row.try_get("amount_minor")?),
        currency: row.try_get("currency")?,
        order_id: row.try_get("order_id")?,
        status: BillStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("bill line status {status}")))?,
        charge: row
            .try_get::<Option<i64>, _>("charge_minor")?
            .map(Money::from_minor),
        fee: row
            .try_get::<Option<i64>, _>("fee_minor")?
            .map(Money::from_minor),
        rule: row.try_get("rule")?,
        error: row.try_get("error")?,
        synced_at: row.try_get("synced_at")?,
    })
}

/// A listed line to store: its new id, and the reason it cannot be charged, if any.
pub struct NewLine<'a> {
    pub id: String,
    pub line: &'a ListedLine,
    pub problem: Option<String>,
}

/// What charging a line came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineCharge {
    Charged,
    /// Neither the order's hold nor the user's balance covers it; the line is `unpaid`.
    Unpaid,
    /// Another sync charged or settled the line first; nothing was written.
    Taken,
}

/// How a line is charged: to which order, how much, the fee, the rule that priced it.
pub struct ChargeOfLine<'a> {
    pub line_id: &'a str,
    pub order_id: &'a str,
    pub buyer_account: &'a str,
    pub provider_account: &'a str,
    pub charge: Money,
    pub fee: Money,
    pub rule: &'a str,
    pub now: i64,
}

/// `Store::mark_bill_line` inside `tx`.
async fn mark_in(
    tx: &mut Tx,
    line_id: &str,
    status: BillStatus,
    order_id: Option<&str>,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE compute_bill_lines SET status = $2, order_id = COALESCE($3, order_id), \
         error = $4 WHERE id = $1 AND status IN ('unmatched', 'unpaid')",
    )
    .bind(line_id)
    .bind(status.as_str())
    .bind(order_id)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// Offerings with their provider's username, grouped by provider; with `provider`, only
    /// that provider's.
    pub async fn offerings_by_provider(
        &self,
        provider: Option<&str>,
    ) -> Result<Vec<(Offering, String)>, StoreError> {
        let sql = format!(
            "SELECT o.{}, a.username AS provider_username FROM compute_offerings o \
             JOIN accounts a ON a.id = o.provider_account_id \
             WHERE ($1 = '' OR a.username = $1) \
             ORDER BY o.provider_account_id, o.created_at, o.id",
            super::compute::OFFERING_COLUMNS.replace(", ", ", o.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider.unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    super::compute::offering_from_row(r)?,
                    r.try_get("provider_username")?,
                ))
            })
            .collect()
    }

    /// Stores listed lines of one provider, each once: a line whose key (provider, resource,
    /// period, unit) is stored already is left as it is. Lines with a problem are stored
    /// `rejected` with it, the others `unmatched` until a sync matches them. Returns the ids
    /// of the new ones.
    pub async fn insert_bill_lines(
        &self,
        provider_account_id: &str,
        offering_id: &str,
        lines: &[NewLine<'_>],
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut new = Vec::new();
        for chunk in lines.chunks(INSERT_CHUNK) {
            let mut sql = String::from(
                "INSERT INTO compute_bill_lines (id, provider_account_id, offering_id, \
                 resource_id, period_start, period_end, unit, quantity_milli, amount_minor, \
                 currency, status, error, synced_at) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 13;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10,
                    b + 11,
                    b + 12,
                    b + 13
                ));
            }
            sql.push_str(
                " ON CONFLICT (provider_account_id, resource_id, period_start, period_end, unit) \
                 DO NOTHING RETURNING id",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in chunk {
                let status = if n.problem.is_some() {
                    BillStatus::Rejected
                } else {
                    BillStatus::Unmatched
                };
                q = q
                    .bind(n.id.clone())
                    .bind(provider_account_id.to_owned())
                    .bind(offering_id.to_owned())
                    .bind(n.line.resource_id.clone())
                    .bind(n.line.period_start.clone())
                    .bind(n.line.period_end.clone())
                    .bind(n.line.unit.clone())
                    .bind(n.line.quantity_milli)
                    .bind(n.line.amount.minor())
                    .bind(n.line.currency.clone())
                    .bind(status.as_str())
                    .bind(n.problem.clone())
                    .bind(now);
            }
            let mut tx = self.begin_write().await?;
            for row in q.fetch_all(&mut *tx).await? {
                new.push(row.try_get("id")?);
            }
            tx.commit().await?;
        }
        Ok(new)
    }

    /// A provider's lines that a sync looks at again (unmatched, unpaid) whose period starts
    /// within `[from, to)` (dates).
    pub async fn pending_bill_lines(
        &self,
        provider_account_id: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<BillLine>, StoreError> {
        let sql = format!(
            "SELECT {LINE_COLUMNS} FROM compute_bill_lines \
             WHERE provider_account_id = $1 AND status IN ('unmatched', 'unpaid') \
             AND period_start >= $2 AND period_start < $3 ORDER BY period_start, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider_account_id)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(line_from_row).collect()
    }

    /// Every order of a provider's offerings that has a provider resource, with what charging
    /// its bill lines needs.
    pub async fn billable_orders(
        &self,
        provider_account_id: &str,
    ) -> Result<Vec<BillableOrder>, StoreError> {
        let rows = sqlx::query(
            "SELECT o.id, o.offering_id, o.provider_resource_id, o.account_id, \
             ua.username AS buyer, f.provider_account_id, pa.username AS seller, \
             f.billing_plugin, f.billing_config \
             FROM compute_orders o \
             JOIN compute_offerings f ON f.id = o.offering_id \
             JOIN accounts ua ON ua.id = o.account_id \
             JOIN accounts pa ON pa.id = f.provider_account_id \
             WHERE f.provider_account_id = $1 AND o.provider_resource_id IS NOT NULL \
             ORDER BY o.created_at, o.id",
        )
        .bind(provider_account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BillableOrder {
                    order_id: r.try_get("id")?,
                    offering_id: r.try_get("offering_id")?,
                    resource_id: r.try_get("provider_resource_id")?,
                    account_id: r.try_get("account_id")?,
                    buyer: r.try_get("buyer")?,
                    provider_account_id: r.try_get("provider_account_id")?,
                    seller: r.try_get("seller")?,
                    billing: billing_from_row(r)?,
                })
            })
            .collect()
    }

    /// Marks a pending line as `status` (matched to `order_id` or not), with `error`; a line
    /// that is not pending any more is left alone.
    pub async fn mark_bill_line(
        &self,
        line_id: &str,
        status: BillStatus,
        order_id: Option<&str>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        mark_in(&mut tx, line_id, status, order_id, error).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Charges pending lines to their orders in one transaction (one commit for the batch).
    /// Per line: the line's status, the order's hold and charged total, and the posting
    /// (`line_transaction`); the hold pays first (`split_payment`), the user's balance the
    /// rest, and a line they do not cover is marked `unpaid`. The order's and the user's
    /// balance rows are written before they are read, so PostgreSQL locks them and no
    /// concurrent debit slips between the check and the posting. Should a posting still be
    /// refused (a provider's balance at the maximum), the batch is rolled back and each line
    /// charged on its own, so that only the refused one is held back (`unpaid`).
    pub async fn charge_bill_lines(
        &self,
        charges: &[ChargeOfLine<'_>],
    ) -> Result<Vec<LineCharge>, StoreError> {
        if let Ok(out) = self.try_charge(charges).await? {
            return Ok(out);
        }
        let mut out = Vec::with_capacity(charges.len());
        for c in charges {
            match self.try_charge(std::slice::from_ref(c)).await? {
                Ok(one) => out.extend(one),
                Err(PostOutcome::ReferenceTaken) => out.push(LineCharge::Taken),
                Err(_) => {
                    self.mark_bill_line(
                        c.line_id,
                        BillStatus::Unpaid,
                        Some(c.order_id),
                        Some(UNPAID),
                    )
                    .await?;
                    out.push(LineCharge::Unpaid);
                }
            }
        }
        Ok(out)
    }

    /// `charge_bill_lines` in one transaction, or nothing written and the posting outcome
    /// that refused a line.
    async fn try_charge(
        &self,
        charges: &[ChargeOfLine<'_>],
    ) -> Result<Result<Vec<LineCharge>, PostOutcome>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(charges.len());
        for c in charges {
            let held: Option<i64> = sqlx::query(
                "UPDATE compute_orders SET updated_at = updated_at WHERE id = $1 \
                 RETURNING held_minor",
            )
            .bind(c.order_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("held_minor"))
            .transpose()?;
            let Some(held) = held else {
                out.push(LineCharge::Taken);
                continue;
            };
            let (from_hold, from_balance) = split_payment(c.charge, Money::from_minor(held));
            if !from_balance.is_zero() {
                let balance: i64 = sqlx::query(
                    "UPDATE ledger_balances SET balance = balance WHERE account = $1 \
                     RETURNING balance",
                )
                .bind(c.buyer_account)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("balance"))
                .transpose()?
                .unwrap_or(0);
                if balance < from_balance.minor() {
                    mark_in(
                        &mut tx,
                        c.line_id,
                        BillStatus::Unpaid,
                        Some(c.order_id),
                        Some(UNPAID),
                    )
                    .await?;
                    out.push(LineCharge::Unpaid);
                    continue;
                }
            }
            let taken = sqlx::query(
                "UPDATE compute_bill_lines SET status = 'charged', order_id = $2, \
                 charge_minor = $3, fee_minor = $4, rule = $5, error = NULL, charged_at = $6 \
                 WHERE id = $1 AND status IN ('unmatched', 'unpaid')",
            )
            .bind(c.line_id)
            .bind(c.order_id)
            .bind(c.charge.minor())
            .bind(c.fee.minor())
            .bind(c.rule)
            .bind(c.now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if taken != 1 {
                out.push(LineCharge::Taken);
                continue;
            }
            sqlx::query(
                "UPDATE compute_orders SET held_minor = held_minor - $2, \
                 charged_minor = charged_minor + $3 WHERE id = $1",
            )
            .bind(c.order_id)
            .bind(from_hold.minor())
            .bind(c.charge.minor())
            .execute(&mut *tx)
            .await?;
            let t = line_transaction(
                c.line_id,
                c.buyer_account,
                c.provider_account,
                c.charge,
                c.fee,
                from_hold,
            )
            .map_err(|e| StoreError::Corrupt(format!("bill line {}: {e}", c.line_id)))?;
            if !t.postings.is_empty() {
                let outcome = post(&mut tx, &t).await?;
                if outcome != PostOutcome::Posted {
                    tx.rollback().await?;
                    return Ok(Err(outcome));
                }
            }
            out.push(LineCharge::Charged);
        }
        tx.commit().await?;
        Ok(Ok(out))
    }

    /// Ended orders (before `ended_before`) that still hold a reserve for bills.
    pub async fn orders_with_reserve(
        &self,
        ended_before: i64,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM compute_orders \
             WHERE ended_at IS NOT NULL AND ended_at < $1 AND held_minor > 0 \
             ORDER BY ended_at, id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ended_before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Returns an ended order's reserve to the user (`release`), if it still holds `held`.
    pub async fn release_reserve(
        &self,
        order_id: &str,
        held: Money,
        release: &LedgerTransaction,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE compute_orders SET held_minor = 0 WHERE id = $1 AND held_minor = $2 \
             AND ended_at IS NOT NULL",
        )
        .bind(order_id)
        .bind(held.minor())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        match post(&mut tx, release).await? {
            PostOutcome::Posted => {
                tx.commit().await?;
                Ok(true)
            }
            PostOutcome::ReferenceTaken | PostOutcome::LimitReached { .. } => {
                tx.rollback().await?;
                Ok(false)
            }
        }
    }

    /// Every bill line whose period starts within `[from, to)` (dates), with the provider's
    /// username.
    pub async fn bill_lines_in(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<(BillLine, String)>, StoreError> {
        let sql = format!(
            "SELECT l.{}, a.username AS provider_username FROM compute_bill_lines l \
             JOIN accounts a ON a.id = l.provider_account_id \
             WHERE l.period_start >= $1 AND l.period_start < $2 ORDER BY l.period_start, l.id",
            LINE_COLUMNS.replace(", ", ", l.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((line_from_row(r)?, r.try_get("provider_username")?)))
            .collect()
    }

    /// Orders that were active at some time within `[from_ms, to_ms)`, with their offerings.
    pub async fn orders_active_in(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM compute_orders \
             WHERE active_at IS NOT NULL AND active_at < $2 \
             AND (ended_at IS NULL OR ended_at > $1) ORDER BY active_at, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(order_from_row).collect()
    }
}
