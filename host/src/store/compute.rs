//! Compute offerings and orders (`compute_offerings`, `compute_orders`). Every change of an
//! order's state is a conditional update on the state read, so two workers (or a worker and a
//! user's request) never both move one order; ledger postings of an order go in the same
//! transaction as the state they belong to.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::ledger::{PostOutcome, post};
use super::{Constraint, Store, StoreError};
use crate::domain::compute::{Offering, Order, OrderState, ResourceType};
use crate::domain::compute_billing::OfferingBilling;
use crate::domain::ledger::LedgerTransaction;
use crate::domain::money::Money;

pub const ORDER_IDEMPOTENCY_KEY_TAKEN: Constraint = Constraint {
    name: "compute_orders_idempotency_key",
    sqlite_columns: "compute_orders.account_id, compute_orders.idempotency_key",
};

pub(super) const OFFERING_COLUMNS: &str = "id, provider_account_id, resource_type, region, spec, \
     price_minor, plugin_id, config, code, billing_plugin, billing_config, created_at";

pub(super) const ORDER_COLUMNS: &str = "id, offering_id, account_id, idempotency_key, client_token, spec, \
     state, provider_resource_id, resource_state, endpoint, error, attempts, next_attempt_at, \
     held_minor, charged_minor, paid_periods, suspended_at, created_at, updated_at, active_at, \
     ended_at";

pub(super) fn json(text: &str, what: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn offering_from_row(row: &AnyRow) -> Result<Offering, StoreError> {
    let resource_type: String = row.try_get("resource_type")?;
    Ok(Offering {
        id: row.try_get("id")?,
        provider_account_id: row.try_get("provider_account_id")?,
        resource_type: ResourceType::parse(&resource_type)
            .ok_or_else(|| StoreError::Corrupt(format!("resource type {resource_type}")))?,
        region: row.try_get("region")?,
        spec: json(&row.try_get::<String, _>("spec")?, "offering spec")?,
        price: Money::from_minor(row.try_get("price_minor")?),
        plugin_id: row.try_get("plugin_id")?,
        config: json(&row.try_get::<String, _>("config")?, "offering config")?,
        code: row.try_get("code")?,
        billing: billing_from_row(row)?,
        created_at: row.try_get("created_at")?,
    })
}

/// The offering's billing rule, from `billing_plugin` and `billing_config` of a row.
pub(super) fn billing_from_row(row: &AnyRow) -> Result<Option<OfferingBilling>, StoreError> {
    let plugin: Option<String> = row.try_get("billing_plugin")?;
    plugin
        .map(|plugin| {
            Ok(OfferingBilling {
                plugin,
                config: json(
                    &row.try_get::<String, _>("billing_config")?,
                    "billing config",
                )?,
            })
        })
        .transpose()
}

pub(super) fn order_from_row(row: &AnyRow) -> Result<Order, StoreError> {
    let state: String = row.try_get("state")?;
    let endpoint: Option<String> = row.try_get("endpoint")?;
    Ok(Order {
        id: row.try_get("id")?,
        offering_id: row.try_get("offering_id")?,
        account_id: row.try_get("account_id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        client_token: row.try_get("client_token")?,
        spec: json(&row.try_get::<String, _>("spec")?, "order spec")?,
        state: OrderState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("order state {state}")))?,
        provider_resource_id: row.try_get("provider_resource_id")?,
        resource_state: row.try_get("resource_state")?,
        endpoint: endpoint.map(|e| json(&e, "endpoint")).transpose()?,
        error: row.try_get("error")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        held: Money::from_minor(row.try_get("held_minor")?),
        charged: Money::from_minor(row.try_get("charged_minor")?),
        paid_periods: row.try_get("paid_periods")?,
        suspended_at: row.try_get("suspended_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        active_at: row.try_get("active_at")?,
        ended_at: row.try_get("ended_at")?,
    })
}

/// What a new order found.
pub enum OrderStart {
    Created,
    /// The idempotency key was used before: the first order.
    Repeated(Box<Order>),
    /// The balance does not cover the first period's hold; nothing was written.
    InsufficientFunds,
}

/// What the worker writes after a provider call: the fields it may change, and the state the
/// order must still be in.
pub struct OrderUpdate<'a> {
    pub id: &'a str,
    pub from: OrderState,
    pub to: OrderState,
    pub provider_resource_id: Option<&'a str>,
    pub resource_state: Option<&'a str>,
    pub endpoint: Option<&'a serde_json::Value>,
    pub error: Option<&'a str>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub now: i64,
}

impl Store {
    pub async fn insert_offering(&self, o: &Offering) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO compute_offerings (id, provider_account_id, resource_type, region, spec, \
             price_minor, plugin_id, config, code, billing_plugin, billing_config, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&o.id)
        .bind(&o.provider_account_id)
        .bind(o.resource_type.as_str())
        .bind(&o.region)
        .bind(o.spec.to_string())
        .bind(o.price.minor())
        .bind(&o.plugin_id)
        .bind(o.config.to_string())
        .bind(&o.code)
        .bind(o.billing.as_ref().map(|b| b.plugin.as_str()))
        .bind(
            o.billing
                .as_ref()
                .map_or_else(|| "{}".to_owned(), |b| b.config.to_string()),
        )
        .bind(o.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn offering(&self, id: &str) -> Result<Option<Offering>, StoreError> {
        let sql = format!("SELECT {OFFERING_COLUMNS} FROM compute_offerings WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(offering_from_row).transpose()
    }

    /// Offerings, newest first; with `provider`, only that provider's.
    pub async fn offerings(
        &self,
        provider: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<(Offering, String)>, StoreError> {
        let sql = format!(
            "SELECT o.{}, a.username AS provider_username FROM compute_offerings o \
             JOIN accounts a ON a.id = o.provider_account_id \
             WHERE ($1 = '' OR o.provider_account_id = $1) \
             ORDER BY o.created_at DESC, o.id DESC LIMIT $2 OFFSET $3",
            OFFERING_COLUMNS.replace(", ", ", o.")
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider.unwrap_or_default())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((offering_from_row(r)?, r.try_get("provider_username")?)))
            .collect()
    }

    /// Writes a new order and posts the hold of its first period, in one transaction. A
    /// repeated idempotency key finds the first order instead.
    pub async fn start_order(
        &self,
        order: &Order,
        hold: &LedgerTransaction,
    ) -> Result<OrderStart, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO compute_orders (id, offering_id, account_id, idempotency_key, \
             client_token, spec, state, attempts, next_attempt_at, held_minor, charged_minor, \
             paid_periods, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, 0, $10, $11, $11)",
        )
        .bind(&order.id)
        .bind(&order.offering_id)
        .bind(&order.account_id)
        .bind(&order.idempotency_key)
        .bind(&order.client_token)
        .bind(order.spec.to_string())
        .bind(order.state.as_str())
        .bind(order.next_attempt_at)
        .bind(order.held.minor())
        .bind(order.paid_periods)
        .bind(order.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[ORDER_IDEMPOTENCY_KEY_TAKEN]));
        match inserted {
            Ok(_) => {}
            Err(e) if e.is_unique(ORDER_IDEMPOTENCY_KEY_TAKEN) => {
                tx.rollback().await?;
                let first = self
                    .order_by_key(&order.account_id, &order.idempotency_key)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt("idempotent order vanished".into()))?;
                return Ok(OrderStart::Repeated(Box::new(first)));
            }
            Err(e) => return Err(e),
        }
        if !hold.postings.is_empty() {
            match post(&mut tx, hold).await? {
                PostOutcome::Posted => {}
                PostOutcome::LimitReached { .. } | PostOutcome::ReferenceTaken => {
                    tx.rollback().await?;
                    return Ok(OrderStart::InsufficientFunds);
                }
            }
        }
        tx.commit().await?;
        Ok(OrderStart::Created)
    }

    async fn order_by_key(&self, account_id: &str, key: &str) -> Result<Option<Order>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM compute_orders WHERE account_id = $1 AND idempotency_key = $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    pub async fn compute_order(&self, id: &str) -> Result<Option<Order>, StoreError> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM compute_orders WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// Orders of an account (all accounts with `None`), newest first.
    pub async fn compute_orders(
        &self,
        account_id: Option<&str>,
        state: Option<OrderState>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM compute_orders \
             WHERE ($1 = '' OR account_id = $1) AND ($2 = '' OR state = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id.unwrap_or_default())
            .bind(state.map(OrderState::as_str).unwrap_or_default())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Takes up to `limit` orders the worker has to move (pending states, due), each under a
    /// lease until `lease_until`, in one statement; a `REQUESTED` order moves to `claimed`
    /// (`PROVISIONING`: written before its provider is called). The update re-checks that
    /// each row is still due (PostgreSQL re-evaluates the condition on a row another worker
    /// updated first), so whoever moved an order first has it. A worker that dies leaves the
    /// lease to run out; the next one resumes.
    pub async fn claim_due_orders(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
        claimed: OrderState,
    ) -> Result<Vec<Order>, StoreError> {
        let sql = format!(
            "UPDATE compute_orders SET next_attempt_at = $2, updated_at = $1, \
             state = CASE WHEN state = 'REQUESTED' THEN $4 ELSE state END \
             WHERE id IN (SELECT id FROM compute_orders \
                          WHERE state IN ('REQUESTED', 'PROVISIONING', 'RECLAIMING') \
                          AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $3) \
             AND state IN ('REQUESTED', 'PROVISIONING', 'RECLAIMING') AND next_attempt_at <= $1 \
             RETURNING {ORDER_COLUMNS}"
        );
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(lease_until)
            .bind(limit)
            .bind(claimed.as_str())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Active orders whose next period starts by `now`, or that are suspended: what the
    /// prepaid check looks at.
    pub async fn orders_to_prepay(
        &self,
        now: i64,
        period_ms_hour: i64,
        limit: i64,
    ) -> Result<Vec<Order>, StoreError> {
        // Hourly offerings are the short periods; storage orders (monthly) are filtered by
        // the service with their own period, so the query errs on the side of too many.
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM compute_orders \
             WHERE state = 'ACTIVE' AND (suspended_at IS NOT NULL \
             OR active_at + paid_periods * $2 <= $1) \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(period_ms_hour)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(order_from_row).collect()
    }

    /// Moves an order from `u.from` to `u.to` with what the provider answered, and posts
    /// `ledger` (the release of the hold of an order that ends) in the same transaction,
    /// taking `release` off the order's hold. `false`: the order was not in `u.from` any more
    /// (someone else moved it), or a bill charged its hold meanwhile; nothing was written.
    pub async fn update_order(
        &self,
        u: &OrderUpdate<'_>,
        ledger: &[LedgerTransaction],
        release: Option<Money>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let active_at =
            (u.to == OrderState::Active && u.from != OrderState::Active).then_some(u.now);
        let ended_at = u.to.is_final().then_some(u.now);
        let done = sqlx::query(
            "UPDATE compute_orders SET state = $3, \
             provider_resource_id = COALESCE($4, provider_resource_id), \
             resource_state = COALESCE($5, resource_state), \
             endpoint = COALESCE($6, endpoint), error = $7, attempts = $8, \
             next_attempt_at = $9, updated_at = $10, \
             active_at = COALESCE(active_at, $11), ended_at = COALESCE(ended_at, $12), \
             held_minor = held_minor - $13 \
             WHERE id = $1 AND state = $2 AND held_minor >= $13",
        )
        .bind(u.id)
        .bind(u.from.as_str())
        .bind(u.to.as_str())
        .bind(u.provider_resource_id)
        .bind(u.resource_state)
        .bind(u.endpoint.map(|e| e.to_string()))
        .bind(u.error)
        .bind(u.attempts)
        .bind(u.next_attempt_at)
        .bind(u.now)
        .bind(active_at)
        .bind(ended_at)
        .bind(release.unwrap_or(Money::ZERO).minor())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        for t in ledger {
            if t.postings.is_empty() {
                continue;
            }
            match post(&mut tx, t).await? {
                PostOutcome::Posted => {}
                // Settled already by an earlier attempt that committed: nothing to add.
                PostOutcome::ReferenceTaken => {}
                PostOutcome::LimitReached { account } => {
                    tx.rollback().await?;
                    return Err(StoreError::Corrupt(format!(
                        "settling order {} would take {account} below its floor",
                        u.id
                    )));
                }
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records the provider's answer to an operation on an active order.
    pub async fn set_resource_state(
        &self,
        id: &str,
        resource_state: &str,
        endpoint: &serde_json::Value,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE compute_orders SET resource_state = $2, endpoint = $3, updated_at = $4 \
             WHERE id = $1 AND state = 'ACTIVE'",
        )
        .bind(id)
        .bind(resource_state)
        .bind(endpoint.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Holds the next period of an active order (prepaid): the hold and the new count in one
    /// transaction. `false`: the balance does not cover it (nothing written), or another
    /// worker held it first.
    pub async fn prepay_period(
        &self,
        id: &str,
        paid_periods: i64,
        hold: &LedgerTransaction,
        amount: Money,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE compute_orders SET paid_periods = paid_periods + 1, \
             held_minor = held_minor + $3, suspended_at = NULL, updated_at = $4 \
             WHERE id = $1 AND state = 'ACTIVE' AND paid_periods = $2",
        )
        .bind(id)
        .bind(paid_periods)
        .bind(amount.minor())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        match post(&mut tx, hold).await? {
            PostOutcome::Posted => {
                tx.commit().await?;
                Ok(true)
            }
            PostOutcome::LimitReached { .. } | PostOutcome::ReferenceTaken => {
                tx.rollback().await?;
                Ok(false)
            }
        }
    }

    /// Marks an active order as stopped for want of funds (first time only).
    pub async fn suspend_order(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE compute_orders SET suspended_at = $2, updated_at = $2 \
             WHERE id = $1 AND state = 'ACTIVE' AND suspended_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
