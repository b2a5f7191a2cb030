//! Subscriptions (A.4, A.5): `publications`, `subscription_orders`, `subscription_charges`
//! (one row per call or paid term: the usage record and its money) and
//! `subscription_statements`. Every movement of money is a ledger transaction posted in the
//! same database transaction as the charge row it belongs to.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::ledger::{PostOutcome, post};
use super::{Constraint, Store, StoreError, Tx};
use crate::domain::ledger::LedgerTransaction;
use crate::domain::money::Money;
use crate::domain::subscriptions::{
    BillingType, ChargeRecord, Kind, Order, Publication, Totals, Unit, Usage,
};

const IDEMPOTENCY_KEY_TAKEN: Constraint = Constraint {
    name: "subscription_charges_idempotency_key",
    sqlite_columns: "subscription_charges.order_id, subscription_charges.idempotency_key",
};

const TERM_TAKEN: Constraint = Constraint {
    name: "subscription_charges_term_key",
    sqlite_columns: "subscription_charges.order_id, subscription_charges.term",
};

const PUBLICATION_COLUMNS: &str = "p.id, p.kind, p.resource_id, r.registration_id, p.data_id, \
    p.publisher_account_id, p.publisher_name, p.billing_type, p.unit, p.price_minor, \
    p.term_days, p.billing_method, p.billing_plugin, p.billing_config, p.endpoint, p.adapter, \
    p.adapter_config, p.created_at";

const ORDER_COLUMNS: &str = "id, publication_id, subscriber_account_id, subscriber_name, \
    license_id, license, starts_at, ends_at, paid_until, created_at";

const CHARGE_COLUMNS: &str = "id, order_id, kind, status, idempotency_key, term, at, \
    finished_at, calls, input_tokens, output_tokens, duration_ms, hold_minor, amount_minor, \
    fee_minor, provider_minor, adapter_plugin, adapter_version, billing_rule, upstream_status, \
    output, error_status, error_code, error, statement_id, payout_id";

/// How the start of a call went.
#[derive(Debug, Clone, PartialEq)]
pub enum CallStart {
    /// The charge row is written and its hold posted.
    Started,
    /// A call of this order with this idempotency key exists: here it is.
    Repeated(Box<ChargeRecord>),
    /// The subscriber's balance cannot hold the call; nothing was written.
    InsufficientFunds,
}

/// How paying a term went.
#[derive(Debug, Clone, PartialEq)]
pub enum TermPayment {
    Paid,
    /// This term was paid already (by a concurrent request): its charge row.
    AlreadyPaid(Box<ChargeRecord>),
    InsufficientFunds,
}

/// How a call ended, to be written over its held row.
#[derive(Debug, Clone)]
pub struct CallEnd<'a> {
    pub charge_id: &'a str,
    pub status: &'static str,
    pub finished_at: i64,
    pub usage: Usage,
    pub amount: Money,
    pub fee: Money,
    pub provider_share: Money,
    pub adapter_version: Option<&'a str>,
    pub billing_rule: Option<&'a str>,
    pub upstream_status: Option<i64>,
    pub output: Option<&'a str>,
    pub error_status: Option<i64>,
    pub error_code: Option<&'a str>,
    pub error: Option<&'a str>,
}

fn u64_of(row: &AnyRow, column: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(column)?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column} {v} is negative")))
}

fn publication_from_row(row: &AnyRow) -> Result<Publication, StoreError> {
    let kind: String = row.try_get("kind")?;
    let billing_type: String = row.try_get("billing_type")?;
    let unit: String = row.try_get("unit")?;
    let method: String = row.try_get("billing_method")?;
    Ok(Publication {
        id: row.try_get("id")?,
        kind: Kind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("publication kind '{kind}'")))?,
        resource_id: row.try_get("resource_id")?,
        registration_id: row.try_get("registration_id")?,
        data_id: row.try_get("data_id")?,
        publisher_account_id: row.try_get("publisher_account_id")?,
        publisher_name: row.try_get("publisher_name")?,
        billing_type: BillingType::parse(&billing_type)
            .ok_or_else(|| StoreError::Corrupt(format!("billing type '{billing_type}'")))?,
        unit: Unit::parse(&unit).ok_or_else(|| StoreError::Corrupt(format!("unit '{unit}'")))?,
        price: Money::from_minor(row.try_get("price_minor")?),
        term_days: row.try_get("term_days")?,
        billing_method: serde_json::from_str(&method)
            .map_err(|e| StoreError::Corrupt(format!("billing_method: {e}")))?,
        billing_plugin: row.try_get("billing_plugin")?,
        billing_config: row.try_get("billing_config")?,
        endpoint: row.try_get("endpoint")?,
        adapter: row.try_get("adapter")?,
        adapter_config: row.try_get("adapter_config")?,
        created_at: row.try_get("created_at")?,
    })
}

fn order_from_row(row: &AnyRow) -> Result<Order, StoreError> {
    let license: String = row.try_get("license")?;
    Ok(Order {
        id: row.try_get("id")?,
        publication_id: row.try_get("publication_id")?,
        subscriber_account_id: row.try_get("subscriber_account_id")?,
        subscriber_name: row.try_get("subscriber_name")?,
        license_id: row.try_get("license_id")?,
        license: serde_json::from_str(&license)
            .map_err(|e| StoreError::Corrupt(format!("order license: {e}")))?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        paid_until: row.try_get("paid_until")?,
        created_at: row.try_get("created_at")?,
    })
}

fn charge_from_row(row: &AnyRow) -> Result<ChargeRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(ChargeRecord {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        kind: match kind.as_str() {
            "call" => "call",
            "term" => "term",
            other => return Err(StoreError::Corrupt(format!("charge kind '{other}'"))),
        },
        status: row.try_get("status")?,
        idempotency_key: row.try_get("idempotency_key")?,
        term: row.try_get("term")?,
        at: row.try_get("at")?,
        finished_at: row.try_get("finished_at")?,
        usage: Usage {
            calls: u64_of(row, "calls")?,
            input_tokens: u64_of(row, "input_tokens")?,
            output_tokens: u64_of(row, "output_tokens")?,
            duration_ms: u64_of(row, "duration_ms")?,
        },
        hold: Money::from_minor(row.try_get("hold_minor")?),
        amount: Money::from_minor(row.try_get("amount_minor")?),
        fee: Money::from_minor(row.try_get("fee_minor")?),
        provider_share: Money::from_minor(row.try_get("provider_minor")?),
        adapter_plugin: row.try_get("adapter_plugin")?,
        adapter_version: row.try_get("adapter_version")?,
        billing_rule: row.try_get("billing_rule")?,
        upstream_status: row.try_get("upstream_status")?,
        output: row.try_get("output")?,
        error_status: row.try_get("error_status")?,
        error_code: row.try_get("error_code")?,
        error: row.try_get("error")?,
        statement_id: row.try_get("statement_id")?,
        payout_id: row.try_get("payout_id")?,
    })
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

async fn insert_charge(tx: &mut Tx, c: &ChargeRecord) -> Result<(), StoreError> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO subscription_charges ({CHARGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, \
         $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, \
         $24, $25, $26)"
    )))
    .bind(&c.id)
    .bind(&c.order_id)
    .bind(c.kind)
    .bind(&c.status)
    .bind(&c.idempotency_key)
    .bind(c.term)
    .bind(c.at)
    .bind(c.finished_at)
    .bind(to_i64(c.usage.calls))
    .bind(to_i64(c.usage.input_tokens))
    .bind(to_i64(c.usage.output_tokens))
    .bind(to_i64(c.usage.duration_ms))
    .bind(c.hold.minor())
    .bind(c.amount.minor())
    .bind(c.fee.minor())
    .bind(c.provider_share.minor())
    .bind(&c.adapter_plugin)
    .bind(&c.adapter_version)
    .bind(&c.billing_rule)
    .bind(c.upstream_status)
    .bind(&c.output)
    .bind(c.error_status)
    .bind(&c.error_code)
    .bind(&c.error)
    .bind(&c.statement_id)
    .bind(&c.payout_id)
    .execute(&mut **tx)
    .await
    .map_err(|e| StoreError::classify(e, &[IDEMPOTENCY_KEY_TAKEN, TERM_TAKEN]))?;
    Ok(())
}

/// The sums of charge rows returned by an `UPDATE … RETURNING`.
fn totals_of(rows: &[AnyRow]) -> Result<Totals, StoreError> {
    let mut t = Totals::default();
    for row in rows {
        t.charges += 1;
        t.usage.calls += u64_of(row, "calls")?;
        t.usage.input_tokens += u64_of(row, "input_tokens")?;
        t.usage.output_tokens += u64_of(row, "output_tokens")?;
        t.usage.duration_ms += u64_of(row, "duration_ms")?;
        t.amount += Money::from_minor(row.try_get("amount_minor")?);
        t.fee += Money::from_minor(row.try_get("fee_minor")?);
        t.provider_share += Money::from_minor(row.try_get("provider_minor")?);
    }
    Ok(t)
}

/// What a statement closes: its id, and the document built from the totals it covers.
pub struct StatementDraft {
    pub id: String,
    pub document: String,
    /// The payout's ledger transaction (provider statements with money to move).
    pub ledger: Option<LedgerTransaction>,
}

impl Store {
    pub async fn insert_publication(&self, p: &Publication) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO publications (id, kind, resource_id, data_id, publisher_account_id, \
             publisher_name, billing_type, unit, price_minor, term_days, billing_method, \
             billing_plugin, billing_config, endpoint, adapter, adapter_config, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&p.id)
        .bind(p.kind.as_str())
        .bind(&p.resource_id)
        .bind(&p.data_id)
        .bind(&p.publisher_account_id)
        .bind(&p.publisher_name)
        .bind(p.billing_type.as_str())
        .bind(p.unit.as_str())
        .bind(p.price.minor())
        .bind(p.term_days)
        .bind(p.billing_method.to_string())
        .bind(&p.billing_plugin)
        .bind(&p.billing_config)
        .bind(&p.endpoint)
        .bind(&p.adapter)
        .bind(&p.adapter_config)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn publication(&self, id: &str) -> Result<Option<Publication>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PUBLICATION_COLUMNS} FROM publications p \
             JOIN resources r ON r.id = p.resource_id WHERE p.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(publication_from_row).transpose()
    }

    /// Publications, newest first, of one kind or all.
    pub async fn publications(
        &self,
        kind: Option<Kind>,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<Publication>), StoreError> {
        let kind = kind.map(Kind::as_str);
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM publications WHERE ($1 IS NULL OR kind = $1)")
                .bind(kind)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PUBLICATION_COLUMNS} FROM publications p \
             JOIN resources r ON r.id = p.resource_id WHERE ($1 IS NULL OR p.kind = $1) \
             ORDER BY p.created_at DESC, p.id DESC LIMIT $2 OFFSET $3"
        )))
        .bind(kind)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let list = rows
            .iter()
            .map(publication_from_row)
            .collect::<Result<_, _>>()?;
        Ok((total, list))
    }

    pub async fn insert_order(&self, o: &Order) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO subscription_orders ({ORDER_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        )))
        .bind(&o.id)
        .bind(&o.publication_id)
        .bind(&o.subscriber_account_id)
        .bind(&o.subscriber_name)
        .bind(&o.license_id)
        .bind(o.license.to_string())
        .bind(o.starts_at)
        .bind(o.ends_at)
        .bind(o.paid_until)
        .bind(o.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM subscription_orders WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// The orders of one subscriber with their publications, oldest first (the OpenAI front's
    /// model list).
    pub async fn orders_of(&self, subscriber_account_id: &str) -> Result<Vec<Order>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM subscription_orders WHERE subscriber_account_id = $1 \
             ORDER BY created_at, id"
        )))
        .bind(subscriber_account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(order_from_row).collect()
    }

    pub async fn charge(&self, id: &str) -> Result<Option<ChargeRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM subscription_charges WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(charge_from_row).transpose()
    }

    async fn charge_by_key(
        &self,
        order_id: &str,
        key: &str,
    ) -> Result<Option<ChargeRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM subscription_charges \
             WHERE order_id = $1 AND idempotency_key = $2"
        )))
        .bind(order_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(charge_from_row).transpose()
    }

    async fn charge_by_term(
        &self,
        order_id: &str,
        term: i64,
    ) -> Result<Option<ChargeRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM subscription_charges WHERE order_id = $1 AND term = $2"
        )))
        .bind(order_id)
        .bind(term)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(charge_from_row).transpose()
    }

    /// An order's charges, newest first.
    pub async fn charges(
        &self,
        order_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(i64, Vec<ChargeRecord>), StoreError> {
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM subscription_charges WHERE order_id = $1")
                .bind(order_id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM subscription_charges WHERE order_id = $1 \
             ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3"
        )))
        .bind(order_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let list = rows.iter().map(charge_from_row).collect::<Result<_, _>>()?;
        Ok((total, list))
    }

    /// An order's usage and money: (calls, input tokens, output tokens, paid, paid out).
    pub async fn order_totals(&self, order_id: &str) -> Result<(Totals, Money), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS charges, \
               CAST(COALESCE(SUM(calls), 0) AS BIGINT) AS calls, \
               CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
               CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
               CAST(COALESCE(SUM(duration_ms), 0) AS BIGINT) AS duration_ms, \
               CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS amount_minor, \
               CAST(COALESCE(SUM(fee_minor), 0) AS BIGINT) AS fee_minor, \
               CAST(COALESCE(SUM(provider_minor), 0) AS BIGINT) AS provider_minor, \
               CAST(COALESCE(SUM(CASE WHEN payout_id IS NULL THEN 0 ELSE amount_minor END), 0) \
                 AS BIGINT) AS paid_out \
             FROM subscription_charges WHERE order_id = $1 AND status = 'charged'",
        )
        .bind(order_id)
        .fetch_one(&self.pool)
        .await?;
        let totals = Totals {
            charges: u64_of(&row, "charges")?,
            usage: Usage {
                calls: u64_of(&row, "calls")?,
                input_tokens: u64_of(&row, "input_tokens")?,
                output_tokens: u64_of(&row, "output_tokens")?,
                duration_ms: u64_of(&row, "duration_ms")?,
            },
            amount: Money::from_minor(row.try_get("amount_minor")?),
            fee: Money::from_minor(row.try_get("fee_minor")?),
            provider_share: Money::from_minor(row.try_get("provider_minor")?),
        };
        Ok((totals, Money::from_minor(row.try_get("paid_out")?)))
    }

    /// Writes a call's held row and posts its hold, in one transaction. A repeated
    /// idempotency key finds the first call instead (waiting for it to commit if it races).
    pub async fn start_call(
        &self,
        charge: &ChargeRecord,
        hold: &LedgerTransaction,
    ) -> Result<CallStart, StoreError> {
        let mut tx = self.begin_write().await?;
        match insert_charge(&mut tx, charge).await {
            Ok(()) => {}
            Err(StoreError::Unique(c)) if c == IDEMPOTENCY_KEY_TAKEN => {
                tx.rollback().await?;
                let key = charge.idempotency_key.as_deref().unwrap_or_default();
                let first = self
                    .charge_by_key(&charge.order_id, key)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("idempotent call vanished".into()))?;
                return Ok(CallStart::Repeated(Box::new(first)));
            }
            Err(e) => return Err(e),
        }
        if !hold.postings.is_empty() {
            match post(&mut tx, hold).await? {
                PostOutcome::Posted => {}
                PostOutcome::LimitReached { .. } | PostOutcome::ReferenceTaken => {
                    tx.rollback().await?;
                    return Ok(CallStart::InsufficientFunds);
                }
            }
        }
        tx.commit().await?;
        Ok(CallStart::Started)
    }

    /// Ends a held call: writes its outcome and posts what replaces the hold (the usage, or
    /// the hold's release), in one transaction. `false`: the call was not held any more.
    pub async fn finish_call(
        &self,
        end: &CallEnd<'_>,
        ledger: Option<&LedgerTransaction>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE subscription_charges SET status = $2, finished_at = $3, calls = $4, \
             input_tokens = $5, output_tokens = $6, duration_ms = $7, amount_minor = $8, \
             fee_minor = $9, provider_minor = $10, adapter_version = $11, billing_rule = $12, \
             upstream_status = $13, output = $14, error_status = $15, error_code = $16, \
             error = $17 WHERE id = $1 AND status = 'held'",
        )
        .bind(end.charge_id)
        .bind(end.status)
        .bind(end.finished_at)
        .bind(to_i64(end.usage.calls))
        .bind(to_i64(end.usage.input_tokens))
        .bind(to_i64(end.usage.output_tokens))
        .bind(to_i64(end.usage.duration_ms))
        .bind(end.amount.minor())
        .bind(end.fee.minor())
        .bind(end.provider_share.minor())
        .bind(end.adapter_version)
        .bind(end.billing_rule)
        .bind(end.upstream_status)
        .bind(end.output)
        .bind(end.error_status)
        .bind(end.error_code)
        .bind(end.error)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(t) = ledger
            && post(&mut tx, t).await? != PostOutcome::Posted
        {
            // Moving a hold can only fail if the books are wrong: keep them as they were.
            tx.rollback().await?;
            return Err(StoreError::Corrupt(format!(
                "ledger transaction {} of call {} was refused",
                t.reference, end.charge_id
            )));
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Pays term `charge.term` of an order: the charge row, its ledger transaction and the
    /// order's new `paid_until`, in one transaction. Each term is paid at most once.
    pub async fn pay_term(
        &self,
        charge: &ChargeRecord,
        payment: &LedgerTransaction,
        paid_until: i64,
        statement: (&str, &str),
    ) -> Result<TermPayment, StoreError> {
        let mut tx = self.begin_write().await?;
        match insert_charge(&mut tx, charge).await {
            Ok(()) => {}
            Err(StoreError::Unique(c)) if c == TERM_TAKEN => {
                tx.rollback().await?;
                let first = self
                    .charge_by_term(&charge.order_id, charge.term.unwrap_or_default())
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("paid term vanished".into()))?;
                return Ok(TermPayment::AlreadyPaid(Box::new(first)));
            }
            Err(e) => return Err(e),
        }
        if !payment.postings.is_empty() && post(&mut tx, payment).await? != PostOutcome::Posted {
            tx.rollback().await?;
            return Ok(TermPayment::InsufficientFunds);
        }
        sqlx::query("UPDATE subscription_orders SET paid_until = $2 WHERE id = $1")
            .bind(&charge.order_id)
            .bind(paid_until)
            .execute(&mut *tx)
            .await?;
        insert_statement(
            &mut tx,
            statement.0,
            &charge.order_id,
            "user",
            charge.amount,
            statement.1,
            charge.at,
        )
        .await?;
        tx.commit().await?;
        Ok(TermPayment::Paid)
    }

    /// The number of terms of an order paid so far.
    pub async fn terms_paid(&self, order_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM subscription_charges WHERE order_id = $1 AND kind = 'term'",
        )
        .bind(order_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    pub async fn statement(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT document FROM subscription_statements WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("document")?),
            None => None,
        })
    }

    /// Closes into one statement the charges of an order that `column` (`statement_id` for a
    /// subscriber's statement, `payout_id` for a provider's) does not name yet: marks them,
    /// builds the statement from their totals with `draft`, stores it and posts its ledger
    /// transaction, in one transaction. Concurrent closings each take disjoint charges, so
    /// every charge is in exactly one statement of each kind.
    pub async fn close_charges<E>(
        &self,
        order_id: &str,
        kind: &'static str,
        draft: impl FnOnce(&Totals) -> Result<StatementDraft, E>,
        id: &str,
        at: i64,
    ) -> Result<Result<(), E>, StoreError> {
        let column = if kind == "user" {
            "statement_id"
        } else {
            "payout_id"
        };
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE subscription_charges SET {column} = $2 \
             WHERE order_id = $1 AND status = 'charged' AND {column} IS NULL \
             RETURNING calls, input_tokens, output_tokens, duration_ms, amount_minor, \
               fee_minor, provider_minor"
        )))
        .bind(order_id)
        .bind(id)
        .fetch_all(&mut *tx)
        .await?;
        let totals = totals_of(&rows)?;
        let statement = match draft(&totals) {
            Ok(s) => s,
            Err(e) => {
                tx.rollback().await?;
                return Ok(Err(e));
            }
        };
        if let Some(t) = &statement.ledger
            && post(&mut tx, t).await? != PostOutcome::Posted
        {
            tx.rollback().await?;
            return Err(StoreError::Corrupt(format!(
                "payout {} of order {order_id} was refused by the ledger",
                t.reference
            )));
        }
        insert_statement(
            &mut tx,
            &statement.id,
            order_id,
            kind,
            totals.amount,
            &statement.document,
            at,
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}

async fn insert_statement(
    tx: &mut Tx,
    id: &str,
    order_id: &str,
    kind: &str,
    amount: Money,
    document: &str,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO subscription_statements (id, order_id, kind, amount_minor, document, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(order_id)
    .bind(kind)
    .bind(amount.minor())
    .bind(document)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
