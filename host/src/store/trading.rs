//! Confirmations, settlements, licenses and deliveries (A.3).

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::batch::{Batch, Outcome, Stopped, Written};
use super::ledger::{PostOutcome, push_post};
use super::{Constraint, Store, StoreError};
use crate::domain::ledger::LedgerTransaction;
use crate::domain::money::Money;
use crate::domain::trading::{
    Confirmation, ConfirmationStatus, DeliveryRecord, LicenseRecord, SettlementContext,
    SettlementRecord,
};

/// The lock: one live (confirmed or settled) confirmation per demand.
const CONFIRMATION_LIVE: Constraint = Constraint {
    name: "confirmations_live_demand_key",
    sqlite_columns: "confirmations.demand_id",
};

macro_rules! confirmation_columns {
    () => {
        "id, demand_id, resource_id, registration_id, data_id, controlled, seller_account_id, \
         seller_name, buyer_account_id, buyer_name, price_minor, usage_restrictions, status, \
         created_at, expires_at, settled_at"
    };
}

const CONFIRMATION_COLUMNS: &str = confirmation_columns!();

/// Expires a demand's overdue unsettled confirmation. The `IN` repeats the condition of
/// `confirmations_live_demand_key`, a partial index, so that SQLite uses it: SQLite does not
/// infer that `status = 'confirmed'` implies it, and scanned the whole table on every
/// confirmation instead (found in the trading bench's profile). PostgreSQL uses the index
/// either way.
const EXPIRE_OVERDUE: &str = "UPDATE confirmations SET status = 'expired' \
     WHERE demand_id = $1 AND status IN ('confirmed', 'settled') AND status = 'confirmed' \
       AND expires_at <= $2";

const CONFIRMATION_INSERT: &str = concat!(
    "INSERT INTO confirmations (",
    confirmation_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
);

const LICENSE_COLUMNS: &str = "id, confirm_id, resource_id, licensee_account_id, document, \
    starts_at, ends_at, issued_at, superseded_by";

fn json_column(row: &AnyRow, column: &str) -> Result<Value, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

pub(super) fn confirmation_from_row(row: &AnyRow) -> Result<Confirmation, StoreError> {
    let status: String = row.try_get("status")?;
    let controlled: i64 = row.try_get("controlled")?;
    Ok(Confirmation {
        id: row.try_get("id")?,
        demand_id: row.try_get("demand_id")?,
        resource_id: row.try_get("resource_id")?,
        registration_id: row.try_get("registration_id")?,
        data_id: row.try_get("data_id")?,
        controlled: controlled != 0,
        seller_account_id: row.try_get::<String, _>("seller_account_id")?.into(),
        seller_name: row.try_get("seller_name")?,
        buyer_account_id: row.try_get::<String, _>("buyer_account_id")?.into(),
        buyer_name: row.try_get("buyer_name")?,
        price: Money::from_minor(row.try_get("price_minor")?),
        usage_restrictions: json_column(row, "usage_restrictions")?,
        status: ConfirmationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("confirmation status '{status}'")))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        settled_at: row.try_get("settled_at")?,
    })
}

fn license_from_row(row: &AnyRow) -> Result<LicenseRecord, StoreError> {
    Ok(LicenseRecord {
        id: row.try_get("id")?,
        confirm_id: row.try_get("confirm_id")?,
        resource_id: row.try_get("resource_id")?,
        licensee_account_id: row.try_get::<String, _>("licensee_account_id")?.into(),
        document: json_column(row, "document")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        issued_at: row.try_get("issued_at")?,
        superseded_by: row.try_get("superseded_by")?,
    })
}

/// The settlement columns of a row (`settled_at` under the name given).
fn settlement_from_row(
    row: &AnyRow,
    confirm_id: String,
    receipt_id: String,
    settled_at: &str,
) -> Result<SettlementRecord, StoreError> {
    let private_key: Option<String> = row.try_get("private_key")?;
    Ok(SettlementRecord {
        confirm_id,
        receipt_id,
        ledger_transaction_id: row.try_get("ledger_transaction_id")?,
        amount: Money::from_minor(row.try_get("amount_minor")?),
        payment_proof: json_column(row, "payment_proof")?,
        private_key: private_key
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("private_key: {e}")))?,
        settled_at: row.try_get(settled_at)?,
    })
}

/// Everything one settlement writes, in one transaction.
#[derive(Debug, Clone)]
pub struct SettlementWrite {
    pub confirm_id: String,
    pub now: i64,
    pub ledger: LedgerTransaction,
    pub settlement: SettlementRecord,
    pub license: LicenseRecord,
}

/// What a confirmation insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ConfirmationInsert {
    Created,
    /// The demand already has a live (confirmed or settled) confirmation; nothing was written.
    DemandAlreadyBound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    Settled,
    /// Another call settled it first; its documents stand.
    AlreadySettled,
    /// The confirmation is no longer waiting for settlement (it expired).
    NotSettleable,
    /// A posting would cross an account's limit (the buyer's balance is too low).
    LimitReached {
        account: String,
    },
}

fn push_license(batch: &mut Batch, l: &LicenseRecord) {
    batch
        .push(
            "INSERT INTO licenses (id, confirm_id, resource_id, licensee_account_id, document, \
               starts_at, ends_at, issued_at, superseded_by, superseded_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)",
        )
        .bind(&l.id)
        .bind(&l.confirm_id)
        .bind(&l.resource_id)
        .bind(l.licensee_account_id.as_str())
        .bind(l.document.to_string())
        .bind(l.starts_at)
        .bind(l.ends_at)
        .bind(l.issued_at);
}

impl Store {
    /// Inserts a confirmation, first expiring the demand's overdue unsettled one so that its
    /// lock is released. A second live confirmation of the demand violates
    /// `CONFIRMATION_LIVE`, also when both are attempted at once.
    pub async fn insert_confirmation(
        &self,
        c: &Confirmation,
    ) -> Result<ConfirmationInsert, StoreError> {
        let mut batch = Batch::new(self.backend());
        batch
            .push(EXPIRE_OVERDUE)
            .bind(&c.demand_id)
            .bind(c.created_at);
        batch
            .push(CONFIRMATION_INSERT)
            .bind(&c.id)
            .bind(&c.demand_id)
            .bind(&c.resource_id)
            .bind(&c.registration_id)
            .bind(&c.data_id)
            .bind(i64::from(c.controlled))
            .bind(c.seller_account_id.as_str())
            .bind(&c.seller_name)
            .bind(c.buyer_account_id.as_str())
            .bind(&c.buyer_name)
            .bind(c.price.minor())
            .bind(c.usage_restrictions.to_string())
            .bind(c.status.as_str())
            .bind(c.created_at)
            .bind(c.expires_at)
            .bind(c.settled_at);
        match self.write_batch(batch).await {
            Ok(_) => Ok(ConfirmationInsert::Created),
            Err(stopped) => match StoreError::classify(stopped.error, &[CONFIRMATION_LIVE]) {
                StoreError::Unique(_) => Ok(ConfirmationInsert::DemandAlreadyBound),
                e => Err(e),
            },
        }
    }

    pub async fn confirmation(&self, id: &str) -> Result<Option<Confirmation>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONFIRMATION_COLUMNS} FROM confirmations WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(confirmation_from_row).transpose()
    }

    /// Everything settling `confirm_id` needs, in one statement: the confirmation, its
    /// resource's type and URL, an existing settlement with its current license, the buyer's
    /// recipient, the provider's sealed key and whether a data file was uploaded.
    pub async fn settlement_context(
        &self,
        confirm_id: &str,
    ) -> Result<Option<SettlementContext>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id, c.demand_id, c.resource_id, c.registration_id, c.data_id, \
               c.controlled, c.seller_account_id, c.seller_name, c.buyer_account_id, \
               c.buyer_name, c.price_minor, c.usage_restrictions, c.status, c.created_at, \
               c.expires_at, c.settled_at, \
               r.data_type, r.resource_url, \
               s.receipt_id, s.ledger_transaction_id, s.amount_minor, s.payment_proof, \
               s.private_key, s.settled_at AS s_settled_at, \
               (SELECT l.document FROM licenses l \
                  WHERE l.confirm_id = c.id AND l.superseded_by IS NULL \
                  ORDER BY l.issued_at DESC, l.id DESC LIMIT 1) AS license, \
               ak.recipient AS buyer_recipient, dk.sealed AS sealed_key, \
               f.object_key AS file_key \
             FROM confirmations c \
             JOIN resources r ON r.id = c.resource_id \
             LEFT JOIN settlements s ON s.confirm_id = c.id \
             LEFT JOIN account_delivery_keys ak ON ak.account_id = c.buyer_account_id \
             LEFT JOIN resource_delivery_keys dk ON dk.resource_id = c.resource_id \
             LEFT JOIN resource_files f ON f.resource_id = c.resource_id \
             WHERE c.id = $1",
        )
        .bind(confirm_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let confirmation = confirmation_from_row(&row)?;
        let receipt_id: Option<String> = row.try_get("receipt_id")?;
        let settled = match receipt_id {
            None => None,
            Some(receipt_id) => {
                let license: Option<String> = row.try_get("license")?;
                let license = license.ok_or_else(|| {
                    StoreError::Corrupt(format!("settlement {confirm_id} has no license"))
                })?;
                Some((
                    settlement_from_row(&row, confirmation.id.clone(), receipt_id, "s_settled_at")?,
                    serde_json::from_str(&license)
                        .map_err(|e| StoreError::Corrupt(format!("license: {e}")))?,
                ))
            }
        };
        let file_key: Option<String> = row.try_get("file_key")?;
        Ok(Some(SettlementContext {
            confirmation,
            data_type: row.try_get("data_type")?,
            resource_url: row.try_get("resource_url")?,
            settled,
            buyer_recipient: row.try_get("buyer_recipient")?,
            sealed_key: row.try_get("sealed_key")?,
            has_file: file_key.is_some(),
        }))
    }

    pub async fn settlement(
        &self,
        confirm_id: &str,
    ) -> Result<Option<SettlementRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT confirm_id, receipt_id, ledger_transaction_id, amount_minor, payment_proof, \
               private_key, settled_at \
             FROM settlements WHERE confirm_id = $1",
        )
        .bind(confirm_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let receipt_id = row.try_get("receipt_id")?;
        settlement_from_row(&row, confirm_id.to_owned(), receipt_id, "settled_at").map(Some)
    }

    /// Settles a confirmation: marks it settled (only if it is still confirmed and not
    /// expired), posts the ledger transaction, stores the payment proof and the license; all or
    /// nothing. Concurrent calls for one confirmation serialise on its row: exactly one
    /// settles, the others see `AlreadySettled`.
    pub async fn settle(&self, w: &SettlementWrite) -> Result<SettleOutcome, StoreError> {
        let mut batch = Batch::new(self.backend());
        batch
            .push(
                "UPDATE confirmations SET status = 'settled', settled_at = $2 \
                 WHERE id = $1 AND status = 'confirmed' AND expires_at > $2",
            )
            .bind(&w.confirm_id)
            .bind(w.now);
        let posting = push_post(&mut batch, &w.ledger);
        let s = &w.settlement;
        batch
            .push(
                "INSERT INTO settlements (confirm_id, receipt_id, ledger_transaction_id, \
                   amount_minor, payment_proof, private_key, settled_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&s.confirm_id)
            .bind(&s.receipt_id)
            .bind(&s.ledger_transaction_id)
            .bind(s.amount.minor())
            .bind(s.payment_proof.to_string())
            .bind(s.private_key.as_ref().map(Value::to_string))
            .bind(s.settled_at);
        push_license(&mut batch, &w.license);
        fn marked(done: &[Outcome]) -> Option<u64> {
            done.first().map(|o| o.rows_affected)
        }
        let fits = posting.clone();
        let (done, error) = match self
            .write_batch_if(batch, move |done| {
                marked(done) == Some(1) && fits.fits(done)
            })
            .await
        {
            Ok(Written {
                committed: true, ..
            }) => return Ok(SettleOutcome::Settled),
            Ok(Written { done, .. }) => (done, None),
            Err(Stopped { done, error }) => (done, Some(error)),
        };
        // Rolled back.
        if marked(&done).is_some_and(|rows| rows != 1) {
            // Not (or no longer) settleable; the confirmation's status says why (a settled
            // confirmation stays settled).
            let status: Option<String> =
                sqlx::query("SELECT status FROM confirmations WHERE id = $1")
                    .bind(&w.confirm_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .map(|r| r.try_get("status"))
                    .transpose()?;
            return Ok(match status.as_deref() {
                Some("settled") => SettleOutcome::AlreadySettled,
                _ => SettleOutcome::NotSettleable,
            });
        }
        // An error before the postings (the mark itself failed) comes back as it is.
        match posting.outcome(&done, error)? {
            PostOutcome::LimitReached { account } => Ok(SettleOutcome::LimitReached { account }),
            // The confirmation's row serialises its settlements, so its ledger reference can
            // only be taken by a settlement that committed: this one is a repetition.
            PostOutcome::ReferenceTaken => Ok(SettleOutcome::AlreadySettled),
            PostOutcome::Posted => Err(StoreError::Corrupt(format!(
                "settlement of {} rolled back with every statement done",
                w.confirm_id
            ))),
        }
    }

    /// The license of a confirmation that has not been superseded.
    pub async fn current_license(
        &self,
        confirm_id: &str,
    ) -> Result<Option<LicenseRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses \
             WHERE confirm_id = $1 AND superseded_by IS NULL \
             ORDER BY issued_at DESC, id DESC LIMIT 1"
        )))
        .bind(confirm_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(license_from_row).transpose()
    }

    pub async fn license(&self, id: &str) -> Result<Option<LicenseRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(license_from_row).transpose()
    }

    /// Licenses of a resource that are neither superseded nor past their term at `now`.
    pub async fn live_licenses_for_resource(
        &self,
        resource_id: &str,
        now: i64,
    ) -> Result<Vec<LicenseRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {LICENSE_COLUMNS} FROM licenses \
             WHERE resource_id = $1 AND superseded_by IS NULL AND ends_at > $2 \
             ORDER BY issued_at, id"
        )))
        .bind(resource_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(license_from_row).collect()
    }

    /// Replaces each `(old id, new license)`: inserts the new one and marks the old one
    /// superseded by it. Returns false, changing nothing, if any old license was superseded
    /// meanwhile by a concurrent update.
    pub async fn reissue_licenses(
        &self,
        replacements: &[(String, LicenseRecord)],
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut batch = Batch::new(self.backend());
        for (old, new) in replacements {
            push_license(&mut batch, new);
            batch
                .push(
                    "UPDATE licenses SET superseded_by = $1, superseded_at = $2 \
                     WHERE id = $3 AND superseded_by IS NULL",
                )
                .bind(&new.id)
                .bind(now)
                .bind(old);
        }
        // Every second statement marks an old license superseded; one that changed no row was
        // superseded meanwhile.
        let superseded =
            |done: &[Outcome]| done.iter().skip(1).step_by(2).all(|o| o.rows_affected == 1);
        Ok(self.write_batch_if(batch, superseded).await?.committed)
    }

    pub async fn insert_delivery(&self, d: &DeliveryRecord) -> Result<(), StoreError> {
        let mut insert = Batch::new(self.backend());
        insert
            .push(
                "INSERT INTO deliveries (id, confirm_id, license_id, proof, delivered_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&d.id)
            .bind(&d.confirm_id)
            .bind(&d.license_id)
            .bind(d.proof.to_string())
            .bind(d.delivered_at);
        self.write_one(insert).await?;
        Ok(())
    }

    /// Delivery proofs of a confirmation, oldest first.
    pub async fn delivery_proofs(&self, confirm_id: &str) -> Result<Vec<Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT proof FROM deliveries WHERE confirm_id = $1 ORDER BY delivered_at, id",
        )
        .bind(confirm_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| json_column(r, "proof")).collect()
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::EXPIRE_OVERDUE;
    use crate::store::Store;

    #[tokio::test]
    async fn expiring_a_demands_confirmation_uses_its_index_on_sqlite() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("plan.db").display());
        let store = Store::connect(&url, 1).await.expect("connect");
        store.migrate().await.expect("migrate");
        let sql = format!(
            "EXPLAIN QUERY PLAN {}",
            EXPIRE_OVERDUE.replace("$1", "'d'").replace("$2", "0")
        );
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(store.pool())
            .await
            .expect("plan")
            .iter()
            .map(|row| row.try_get::<String, _>("detail").expect("detail"))
            .collect();
        assert_eq!(
            plan,
            ["SEARCH confirmations USING INDEX confirmations_live_demand_key (demand_id=?)"]
        );
        store.close().await;
    }
}
