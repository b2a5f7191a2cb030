//! Usage policies (A.3.7), their counters and the decision log.
//!
//! Exactness rests on one write transaction per decision: the counters it consumes are
//! decremented with a conditional `UPDATE … WHERE remaining >= uses` (PostgreSQL re-checks the
//! condition on the newest row version after waiting for the row lock, under READ COMMITTED;
//! SQLite has one writer at a time), and the decision row is inserted in the same transaction
//! under the unique key `(policy_id, request_id)`. Either both are committed or neither.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::matching::placeholders;
use super::{Constraint, Store, StoreError};
use crate::domain::policy::{Counter, DecisionRecord, Policy, RelUser, UseScene};

const POLICIES_LIVE_NAME: Constraint = Constraint {
    name: "policies_live_name_key",
    sqlite_columns: "policies.confirm_id, policies.name",
};

const POLICY_COLUMNS: &str = "p.id, p.name, p.resource_id, p.data_id, p.confirm_id, \
    p.licensee_account_id, p.licensee_name, p.data_space_account_id, p.rel_users, p.use_scenes, \
    p.starts_at, p.ends_at, p.request_sha256, p.created_at, p.revoked_at, p.revoked_by";

const DECISION_COLUMNS: &str = "id, policy_id, request_id, request_sha256, at, user_id, scene, \
    uses, plugin_id, plugin_version, decision, reasons, counters_before, counters_after";

/// What inserting a policy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum PolicyInsert {
    Created,
    /// The purchase already has a live policy of this name; nothing was written.
    NameTaken,
}

/// What recording a decision did.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub enum DecisionWrite {
    /// Committed, with the counters as the database left them.
    Recorded(Box<DecisionRecord>),
    /// A counter had fewer uses left than the decision consumes (a concurrent access took
    /// them); nothing was written.
    Exhausted { scene: String, left: i64 },
    /// The policy has a decision for this request id already; nothing was written.
    Duplicate,
}

fn json<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T, StoreError> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("encoding: {e}")))
}

fn policy_from_row(row: &AnyRow) -> Result<Policy, StoreError> {
    Ok(Policy {
        id: row.try_get::<String, _>("id")?.into(),
        name: row.try_get("name")?,
        resource_id: row.try_get("resource_id")?,
        data_id: row.try_get("data_id")?,
        confirm_id: row.try_get("confirm_id")?,
        licensee_account_id: row.try_get::<String, _>("licensee_account_id")?.into(),
        licensee_name: row.try_get("licensee_name")?,
        data_space_account_id: row.try_get::<String, _>("data_space_account_id")?.into(),
        rel_users: json::<Vec<RelUser>>(row, "rel_users")?,
        use_scenes: json::<Vec<UseScene>>(row, "use_scenes")?,
        starts_at: row.try_get("starts_at")?,
        ends_at: row.try_get("ends_at")?,
        request_sha256: row.try_get("request_sha256")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        revoked_by: row.try_get("revoked_by")?,
        counters: Vec::new(),
    })
}

fn decision_from_row(row: &AnyRow) -> Result<DecisionRecord, StoreError> {
    let plugin_id: Option<String> = row.try_get("plugin_id")?;
    let plugin_version: Option<String> = row.try_get("plugin_version")?;
    let decision: String = row.try_get("decision")?;
    Ok(DecisionRecord {
        id: row.try_get("id")?,
        policy_id: row.try_get::<String, _>("policy_id")?.into(),
        request_id: row.try_get("request_id")?,
        request_sha256: row.try_get("request_sha256")?,
        at: row.try_get("at")?,
        user_id: row.try_get("user_id")?,
        scene: row.try_get("scene")?,
        uses: row.try_get("uses")?,
        plugin: plugin_id.zip(plugin_version),
        allowed: match decision.as_str() {
            "ALLOW" => true,
            "DENY" => false,
            other => return Err(StoreError::Corrupt(format!("decision '{other}'"))),
        },
        reasons: json(row, "reasons")?,
        counters_before: json::<BTreeMap<String, i64>>(row, "counters_before")?,
        counters_after: json::<BTreeMap<String, i64>>(row, "counters_after")?,
    })
}

impl Store {
    /// Inserts a policy and its counters, unless its purchase has a live policy of that name.
    pub async fn insert_policy(&self, p: &Policy) -> Result<PolicyInsert, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO policies (id, name, resource_id, data_id, confirm_id, \
               licensee_account_id, licensee_name, data_space_account_id, rel_users, use_scenes, \
               starts_at, ends_at, request_sha256, created_at, revoked_at, revoked_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULL, NULL)",
        )
        .bind(p.id.as_str())
        .bind(&p.name)
        .bind(&p.resource_id)
        .bind(&p.data_id)
        .bind(&p.confirm_id)
        .bind(p.licensee_account_id.as_str())
        .bind(&p.licensee_name)
        .bind(p.data_space_account_id.as_str())
        .bind(to_json(&p.rel_users)?)
        .bind(to_json(&p.use_scenes)?)
        .bind(p.starts_at)
        .bind(p.ends_at)
        .bind(&p.request_sha256)
        .bind(p.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[POLICIES_LIVE_NAME]));
        match inserted {
            Ok(_) => {}
            Err(StoreError::Unique(_)) => return Ok(PolicyInsert::NameTaken),
            Err(e) => return Err(e),
        }
        for c in &p.counters {
            sqlx::query(
                "INSERT INTO policy_counters (policy_id, scene, counts, remaining) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(p.id.as_str())
            .bind(&c.scene)
            .bind(c.counts)
            .bind(c.remaining)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(PolicyInsert::Created)
    }

    /// Reads the counters of `policies` into them.
    async fn attach_counters(&self, policies: &mut [Policy]) -> Result<(), StoreError> {
        if policies.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT policy_id, scene, counts, remaining FROM policy_counters \
             WHERE policy_id IN ({}) ORDER BY policy_id, scene",
            placeholders(1, policies.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in policies.iter() {
            query = query.bind(p.id.as_str());
        }
        for row in query.fetch_all(&self.pool).await? {
            let policy_id: String = row.try_get("policy_id")?;
            if let Some(p) = policies.iter_mut().find(|p| p.id == *policy_id) {
                p.counters.push(Counter {
                    scene: row.try_get("scene")?,
                    counts: row.try_get("counts")?,
                    remaining: row.try_get("remaining")?,
                });
            }
        }
        Ok(())
    }

    /// A policy with its counters, in one read (the access path).
    pub async fn policy(&self, id: &str) -> Result<Option<Policy>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLUMNS}, c.scene AS counter_scene, c.counts AS counter_counts, \
               c.remaining AS counter_remaining \
             FROM policies p LEFT JOIN policy_counters c ON c.policy_id = p.id \
             WHERE p.id = $1 ORDER BY c.scene"
        )))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let mut policy = policy_from_row(first)?;
        for row in &rows {
            let scene: Option<String> = row.try_get("counter_scene")?;
            if let Some(scene) = scene {
                policy.counters.push(Counter {
                    scene,
                    counts: row.try_get("counter_counts")?,
                    remaining: row.try_get("counter_remaining")?,
                });
            }
        }
        Ok(Some(policy))
    }

    /// The live policy of a purchase with this name.
    pub async fn live_policy_by_name(
        &self,
        confirm_id: &str,
        name: &str,
    ) -> Result<Option<Policy>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLUMNS} FROM policies p \
             WHERE p.confirm_id = $1 AND p.name = $2 AND p.revoked_at IS NULL"
        )))
        .bind(confirm_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut policies = vec![policy_from_row(&row)?];
        self.attach_counters(&mut policies).await?;
        Ok(policies.pop())
    }

    /// The policies of a resource, oldest first, and how many there are: all of them, or
    /// (`party` given) those set up by that data space or granted to that licensee.
    pub async fn policies_of_resource(
        &self,
        resource_id: &str,
        party: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Policy>, i64), StoreError> {
        let condition = "p.resource_id = $1 AND ($2 IS NULL OR p.data_space_account_id = $2 \
                         OR p.licensee_account_id = $2)";
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {POLICY_COLUMNS} FROM policies p WHERE {condition} \
             ORDER BY p.created_at, p.id LIMIT $3 OFFSET $4"
        )))
        .bind(resource_id)
        .bind(party)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM policies p WHERE {condition}"
        )))
        .bind(resource_id)
        .bind(party)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let mut policies = rows
            .iter()
            .map(policy_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_counters(&mut policies).await?;
        Ok((policies, total))
    }

    /// Marks a policy revoked; false when it was revoked already (or does not exist).
    pub async fn revoke_policy(&self, id: &str, by: &str, now: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE policies SET revoked_at = $2, revoked_by = $3 \
             WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .bind(by)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(done)
    }

    /// Records a decision and applies its `decrements` `(scene, uses)` (in the order given,
    /// which is the lock order) in one transaction. Each decrement is conditional on enough
    /// uses being left; if one is not, nothing is written.
    pub async fn record_decision(
        &self,
        decision: DecisionRecord,
        decrements: &[(String, i64)],
    ) -> Result<DecisionWrite, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut exact = Vec::with_capacity(decrements.len());
        for (scene, uses) in decrements {
            let left = sqlx::query(
                "UPDATE policy_counters SET remaining = remaining - $3 \
                 WHERE policy_id = $1 AND scene = $2 AND remaining >= $3 \
                 RETURNING remaining",
            )
            .bind(decision.policy_id.as_str())
            .bind(scene)
            .bind(uses)
            .fetch_optional(&mut *tx)
            .await?;
            match left {
                Some(row) => {
                    exact.push((scene.clone(), row.try_get::<i64, _>("remaining")?, *uses))
                }
                None => {
                    let left: Option<i64> = sqlx::query(
                        "SELECT remaining FROM policy_counters WHERE policy_id = $1 AND scene = $2",
                    )
                    .bind(decision.policy_id.as_str())
                    .bind(scene)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get("remaining"))
                    .transpose()?;
                    tx.rollback().await?;
                    return Ok(DecisionWrite::Exhausted {
                        scene: scene.clone(),
                        left: left.unwrap_or(0),
                    });
                }
            }
        }
        let decision = decision.with_exact(&exact);
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO policy_decisions ({DECISION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (policy_id, request_id) DO NOTHING"
        )))
        .bind(&decision.id)
        .bind(decision.policy_id.as_str())
        .bind(&decision.request_id)
        .bind(&decision.request_sha256)
        .bind(decision.at)
        .bind(&decision.user_id)
        .bind(&decision.scene)
        .bind(decision.uses)
        .bind(decision.plugin.as_ref().map(|(id, _)| id.as_str()))
        .bind(decision.plugin.as_ref().map(|(_, v)| v.as_str()))
        .bind(decision.decision())
        .bind(to_json(&decision.reasons)?)
        .bind(to_json(&decision.counters_before)?)
        .bind(to_json(&decision.counters_after)?)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(DecisionWrite::Duplicate);
        }
        tx.commit().await?;
        Ok(DecisionWrite::Recorded(Box::new(decision)))
    }

    /// The decision a policy took on a request id.
    pub async fn decision(
        &self,
        policy_id: &str,
        request_id: &str,
    ) -> Result<Option<DecisionRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM policy_decisions \
             WHERE policy_id = $1 AND request_id = $2"
        )))
        .bind(policy_id)
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decision_from_row).transpose()
    }

    /// A policy's decisions, newest first, and how many there are.
    pub async fn decisions(
        &self,
        policy_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DecisionRecord>, i64), StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DECISION_COLUMNS} FROM policy_decisions WHERE policy_id = $1 \
             ORDER BY at DESC, id DESC LIMIT $2 OFFSET $3"
        )))
        .bind(policy_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM policy_decisions WHERE policy_id = $1")
                .bind(policy_id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        let decisions = rows
            .iter()
            .map(decision_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((decisions, total))
    }
}
