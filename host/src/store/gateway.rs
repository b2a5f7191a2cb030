//! The identifier gateway's platform storage: enterprises' gateway keys, every accepted
//! observation, and the current state of each identifier.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::Row;
use sqlx::any::AnyRow;

use super::matching::{placeholders, value_rows};
use super::{Backend, Constraint, Store, StoreError};
use crate::domain::AccountId;
use crate::domain::gateway::{
    Capacity, Group, GroupBy, IdentifierFilter, IdentifierState, Observation, StateFilter,
};
use crate::domain::money::Money;

pub const ACTIVE_KEY: Constraint = Constraint {
    name: "gateway_keys_active_key",
    sqlite_columns: "gateway_keys.enterprise_id",
};

/// A registered key that verifies batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveKey {
    pub enterprise_id: String,
    pub public_key: String,
}

/// What registering a key did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum KeyRegistration {
    /// Registered (or already the active key); the key it retired, if any.
    Registered {
        created_at: i64,
        retired: Option<String>,
    },
    /// The key is registered to another enterprise.
    TakenByAnother,
}

/// How the codes of a batch stand, and which of its observations were new.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Codes no approved application issued.
    pub unknown: HashSet<String>,
    /// Codes an operator deactivated.
    pub deactivated: HashSet<String>,
    /// (code, observed_at) of the observations this batch stored.
    pub inserted: HashSet<(String, i64)>,
}

/// What a deactivation or reactivation did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Activation {
    Changed(Option<i64>),
    NotFound,
    /// It is in that state already; nothing changed.
    Unchanged,
}

const OBSERVATION_COLUMNS: &str = "code, observed_at, enterprise_id, resource_class, \
     resource_type, province, city, zone, cpu_cores, cpu_model, gpu_model, gpu_count, \
     memory_gib, storage_gib, bandwidth_mbps, status, unit_price, received_at";
/// Columns per observation row written (OBSERVATION_COLUMNS and key_id).
const ROW_WIDTH: usize = 19;
/// Rows per INSERT: keeps a statement's parameters under SQLite's limit (32766).
const ROWS_PER_STATEMENT: usize = 1000;

fn observation_from_row(row: &AnyRow) -> Result<IdentifierState, StoreError> {
    Ok(IdentifierState {
        observation: Observation {
            code: row.try_get("code")?,
            observed_at: row.try_get("observed_at")?,
            enterprise_id: row.try_get("enterprise_id")?,
            resource_class: row.try_get("resource_class")?,
            resource_type: row.try_get("resource_type")?,
            province: row.try_get("province")?,
            city: row.try_get("city")?,
            zone: row.try_get("zone")?,
            cpu_cores: row.try_get("cpu_cores")?,
            cpu_model: row.try_get("cpu_model")?,
            gpu_model: row.try_get("gpu_model")?,
            gpu_count: row.try_get("gpu_count")?,
            memory_gib: row.try_get("memory_gib")?,
            storage_gib: row.try_get("storage_gib")?,
            bandwidth_mbps: row.try_get("bandwidth_mbps")?,
            status: row.try_get("status")?,
            unit_price: row
                .try_get::<Option<i64>, _>("unit_price")?
                .map(Money::from_minor),
        },
        received_at: row.try_get("received_at")?,
        deactivated_at: row.try_get("deactivated_at")?,
    })
}

/// Binds the columns of OBSERVATION_COLUMNS of one observation.
fn bind_observation<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    o: &'q Observation,
    received_at: i64,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(&o.code)
        .bind(o.observed_at)
        .bind(&o.enterprise_id)
        .bind(&o.resource_class)
        .bind(&o.resource_type)
        .bind(&o.province)
        .bind(&o.city)
        .bind(&o.zone)
        .bind(o.cpu_cores)
        .bind(o.cpu_model.as_deref())
        .bind(o.gpu_model.as_deref())
        .bind(o.gpu_count)
        .bind(o.memory_gib)
        .bind(o.storage_gib)
        .bind(o.bandwidth_mbps)
        .bind(&o.status)
        .bind(o.unit_price.map(Money::minor))
        .bind(received_at)
}

/// `count` parameters from the first. SQLite gets anonymous `?`s: it looks a `$N` up by name in
/// a list, one by one, which makes binding a statement of thousands of them quadratic (most of
/// a batch's time, measured); PostgreSQL numbers them.
fn marks(backend: Backend, count: usize) -> String {
    match backend {
        Backend::Sqlite => vec!["?"; count].join(", "),
        Backend::Postgres => placeholders(1, count),
    }
}

/// The WHERE clause of a filter (starting at parameter `$first`) and its values.
fn where_clause(filter: &IdentifierFilter) -> (String, Vec<String>, Vec<i64>) {
    let mut conditions = Vec::new();
    let mut texts = Vec::new();
    for (column, value) in [
        ("enterprise_id", &filter.enterprise),
        ("province", &filter.province),
        ("city", &filter.city),
        ("resource_type", &filter.resource_type),
        ("resource_class", &filter.resource_class),
        ("status", &filter.status),
    ] {
        if let Some(v) = value {
            texts.push(v.clone());
            conditions.push(format!("{column} = ${}", texts.len()));
        }
    }
    let mut numbers = Vec::new();
    for (op, value) in [(">=", filter.from), ("<", filter.to)] {
        if let Some(v) = value {
            numbers.push(v);
            conditions.push(format!("observed_at {op} ${}", texts.len() + numbers.len()));
        }
    }
    match filter.state {
        StateFilter::All => {}
        StateFilter::Active => conditions.push("deactivated_at IS NULL".to_owned()),
        StateFilter::Deactivated => conditions.push("deactivated_at IS NOT NULL".to_owned()),
    }
    let clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    (clause, texts, numbers)
}

impl Store {
    /// The active key with this id, if any.
    pub async fn active_gateway_key(&self, key_id: &str) -> Result<Option<ActiveKey>, StoreError> {
        let row = sqlx::query(
            "SELECT enterprise_id, public_key FROM gateway_keys \
             WHERE key_id = $1 AND retired_at IS NULL",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ActiveKey {
                enterprise_id: r.try_get("enterprise_id")?,
                public_key: r.try_get("public_key")?,
            })
        })
        .transpose()
    }

    /// Makes `key_id` the enterprise's active gateway key, retiring the one before.
    pub async fn register_gateway_key(
        &self,
        account_id: &AccountId,
        enterprise_id: &str,
        key_id: &str,
        public_key: &str,
        now: i64,
    ) -> Result<KeyRegistration, StoreError> {
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(
            "SELECT enterprise_id, retired_at, created_at FROM gateway_keys WHERE key_id = $1",
        )
        .bind(key_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = &existing {
            let owner: String = row.try_get("enterprise_id")?;
            if owner != enterprise_id {
                tx.rollback().await?;
                return Ok(KeyRegistration::TakenByAnother);
            }
            if row.try_get::<Option<i64>, _>("retired_at")?.is_none() {
                tx.rollback().await?;
                return Ok(KeyRegistration::Registered {
                    created_at: row.try_get("created_at")?,
                    retired: None,
                });
            }
        }
        let retired = sqlx::query(
            "UPDATE gateway_keys SET retired_at = $2 \
             WHERE enterprise_id = $1 AND retired_at IS NULL RETURNING key_id",
        )
        .bind(enterprise_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get::<String, _>("key_id"))
        .transpose()?;
        // A key retired earlier and registered again becomes active again.
        sqlx::query(
            "INSERT INTO gateway_keys (key_id, account_id, enterprise_id, public_key, created_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (key_id) DO UPDATE SET retired_at = NULL, created_at = $5",
        )
        .bind(key_id)
        .bind(account_id.as_str())
        .bind(enterprise_id)
        .bind(public_key)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[ACTIVE_KEY]))?;
        tx.commit().await?;
        Ok(KeyRegistration::Registered {
            created_at: now,
            retired,
        })
    }

    /// Stores a batch's observations: those of issued, active codes that are new by
    /// (code, observed_at) go into the history, and each code's current state moves to its
    /// latest observation. One transaction, a few multi-row statements.
    pub async fn ingest_observations(
        &self,
        observations: &[Observation],
        key_id: &str,
        now: i64,
    ) -> Result<Ingested, StoreError> {
        let mut result = Ingested::default();
        if observations.is_empty() {
            return Ok(result);
        }
        let codes: Vec<&str> = observations
            .iter()
            .map(|o| o.code.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut tx = self.begin_write().await?;
        // Issued codes, and the deactivated among them. The state is looked up per code (a
        // subquery on the primary key), not joined: PostgreSQL planned the join of a batch's
        // 500 codes as a parallel sequential scan and hash of every current identifier, a
        // third of its time per batch at 200,000 identifiers (BENCHMARKS.md, "Gateway").
        let mut known = HashSet::new();
        for chunk in codes.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT a.code, \
                   (SELECT g.deactivated_at FROM gateway_identifiers g WHERE g.code = a.code) \
                     AS deactivated_at \
                 FROM identifier_applications a WHERE a.code IN ({})",
                marks(self.backend, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for code in chunk {
                query = query.bind(*code);
            }
            for row in query.fetch_all(&mut *tx).await? {
                let code: String = row.try_get("code")?;
                if row.try_get::<Option<i64>, _>("deactivated_at")?.is_some() {
                    result.deactivated.insert(code.clone());
                }
                known.insert(code);
            }
        }
        for code in codes {
            if !known.contains(code) {
                result.unknown.insert(code.to_owned());
            }
        }
        // Admitted observations, once each by (code, observed_at).
        let mut seen = HashSet::new();
        let admitted: Vec<&Observation> = observations
            .iter()
            .filter(|o| known.contains(&o.code) && !result.deactivated.contains(&o.code))
            .filter(|o| seen.insert((o.code.as_str(), o.observed_at)))
            .collect();
        for chunk in admitted.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO gateway_observations ({OBSERVATION_COLUMNS}, key_id) VALUES {} \
                 ON CONFLICT (code, observed_at) DO NOTHING RETURNING code, observed_at",
                value_rows(self.backend, chunk.len(), ROW_WIDTH)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for o in chunk {
                query = bind_observation(query, o, now).bind(key_id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                result
                    .inserted
                    .insert((row.try_get("code")?, row.try_get("observed_at")?));
            }
        }
        // The latest new observation of each code, in code order so that concurrent batches
        // lock the same rows in the same order (no deadlock on PostgreSQL).
        let mut latest: BTreeMap<&str, &Observation> = BTreeMap::new();
        for &o in &admitted {
            if !result.inserted.contains(&(o.code.clone(), o.observed_at)) {
                continue;
            }
            let slot = latest.entry(o.code.as_str()).or_insert(o);
            if o.observed_at > slot.observed_at {
                *slot = o;
            }
        }
        let latest: Vec<&Observation> = latest.into_values().collect();
        for chunk in latest.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO gateway_identifiers ({OBSERVATION_COLUMNS}) VALUES {} \
                 ON CONFLICT (code) DO UPDATE SET observed_at = excluded.observed_at, \
                   enterprise_id = excluded.enterprise_id, \
                   resource_class = excluded.resource_class, \
                   resource_type = excluded.resource_type, province = excluded.province, \
                   city = excluded.city, zone = excluded.zone, cpu_cores = excluded.cpu_cores, \
                   cpu_model = excluded.cpu_model, gpu_model = excluded.gpu_model, \
                   gpu_count = excluded.gpu_count, memory_gib = excluded.memory_gib, \
                   storage_gib = excluded.storage_gib, \
                   bandwidth_mbps = excluded.bandwidth_mbps, status = excluded.status, \
                   unit_price = excluded.unit_price, received_at = excluded.received_at \
                 WHERE excluded.observed_at > gateway_identifiers.observed_at",
                value_rows(self.backend, chunk.len(), ROW_WIDTH - 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for o in chunk {
                query = bind_observation(query, o, now);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(result)
    }

    /// Current identifiers matching `filter`, newest observation first.
    pub async fn gateway_identifiers_page(
        &self,
        filter: &IdentifierFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<IdentifierState>, StoreError> {
        let (clause, texts, numbers) = where_clause(filter);
        let n = texts.len() + numbers.len();
        let sql = format!(
            "SELECT {OBSERVATION_COLUMNS}, deactivated_at FROM gateway_identifiers {clause} \
             ORDER BY observed_at DESC, code DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in &texts {
            query = query.bind(t);
        }
        for v in &numbers {
            query = query.bind(*v);
        }
        let rows = query.bind(limit).bind(offset).fetch_all(&self.pool).await?;
        rows.iter().map(observation_from_row).collect()
    }

    /// Counts and capacity sums of the identifiers matching `filter`, by `group_by`.
    pub async fn gateway_statistics(
        &self,
        filter: &IdentifierFilter,
        group_by: GroupBy,
    ) -> Result<Vec<Group>, StoreError> {
        let (clause, texts, numbers) = where_clause(filter);
        let column = group_by.column();
        // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back so both backends give integers.
        let sql = format!(
            "SELECT {column} AS key, COUNT(*) AS n, \
               CAST(COALESCE(SUM(cpu_cores), 0) AS BIGINT) AS cpu_cores, \
               CAST(COALESCE(SUM(gpu_count), 0) AS BIGINT) AS gpu_count, \
               CAST(COALESCE(SUM(memory_gib), 0) AS DOUBLE PRECISION) AS memory_gib, \
               CAST(COALESCE(SUM(storage_gib), 0) AS DOUBLE PRECISION) AS storage_gib \
             FROM gateway_identifiers {clause} GROUP BY {column} ORDER BY {column}"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for t in &texts {
            query = query.bind(t);
        }
        for v in &numbers {
            query = query.bind(*v);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(Group {
                    key: r.try_get("key")?,
                    capacity: Capacity {
                        count: r.try_get("n")?,
                        cpu_cores: r.try_get("cpu_cores")?,
                        gpu_count: r.try_get("gpu_count")?,
                        memory_gib: r.try_get("memory_gib")?,
                        storage_gib: r.try_get("storage_gib")?,
                    },
                })
            })
            .collect()
    }

    /// Deactivates (`deactivate`) or reactivates an identifier.
    pub async fn set_identifier_active(
        &self,
        code: &str,
        deactivate: bool,
        by: &AccountId,
        now: i64,
    ) -> Result<Activation, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = if deactivate {
            sqlx::query(
                "UPDATE gateway_identifiers SET deactivated_at = $2, deactivated_by = $3 \
                 WHERE code = $1 AND deactivated_at IS NULL RETURNING deactivated_at",
            )
            .bind(code)
            .bind(now)
            .bind(by.as_str())
            .fetch_optional(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "UPDATE gateway_identifiers SET deactivated_at = NULL, deactivated_by = NULL \
                 WHERE code = $1 AND deactivated_at IS NOT NULL RETURNING deactivated_at",
            )
            .bind(code)
            .fetch_optional(&mut *tx)
            .await?
        };
        let outcome = match row {
            Some(r) => Activation::Changed(r.try_get("deactivated_at")?),
            None => {
                let exists = sqlx::query("SELECT code FROM gateway_identifiers WHERE code = $1")
                    .bind(code)
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if exists {
                    Activation::Unchanged
                } else {
                    Activation::NotFound
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// How many observations the history holds per code (tests and benchmarks).
    pub async fn gateway_observation_counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows =
            sqlx::query("SELECT code, COUNT(*) AS n FROM gateway_observations GROUP BY code")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("code")?, r.try_get("n")?)))
            .collect()
    }
}
