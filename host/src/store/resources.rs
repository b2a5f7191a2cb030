use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::batch::Batch;
use super::matching::{delete_terms, replace_terms};
use super::{Constraint, Store, StoreError, Tx, decode_string_list, encode_string_list};
use crate::domain::PublicationStatus;
use crate::domain::matching::{Side, Terms};
use crate::domain::money::Money;
use crate::domain::supply::{PriceTerms, Resource};
use crate::domain::timefmt::now_millis;

const REGISTRATION_DATA_TAKEN: Constraint = Constraint {
    name: "resources_registration_data_key",
    sqlite_columns: "resources.registration_id, resources.data_id",
};
const OWNER_DATA_TAKEN: Constraint = Constraint {
    name: "resources_owner_data_key",
    sqlite_columns: "resources.owner_name, resources.data_id",
};

/// What a resource insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ResourceInsert {
    Created,
    /// The owner (or, for controlled data, the fixed registration id) already has this
    /// dataID; nothing was written.
    DataIdTaken,
}

const COLUMNS: &str = "id, registration_id, data_id, owner_account_id, owner_name, controlled, \
    key_words, description, data_type, data_format, data_size, data_category, collection_time, \
    country, provider_url, resource_url, ownership_confirm, public_key, subscribe_confirm, \
    protocol, is_open, source, status, free, price_minor, usage_restrictions, created_at, updated_at";

pub(crate) fn resource_from_row(row: &AnyRow) -> Result<Resource, StoreError> {
    let status: String = row.try_get("status")?;
    let free: Option<i64> = row.try_get("free")?;
    let price_minor: Option<i64> = row.try_get("price_minor")?;
    let controlled: i64 = row.try_get("controlled")?;
    let restrictions: Option<String> = row.try_get("usage_restrictions")?;
    let usage_restrictions = restrictions
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("usage_restrictions: {e}")))?;
    Ok(Resource {
        id: row.try_get("id")?,
        registration_id: row.try_get("registration_id")?,
        data_id: row.try_get("data_id")?,
        owner_account_id: row.try_get::<String, _>("owner_account_id")?.into(),
        owner_name: row.try_get("owner_name")?,
        controlled: controlled != 0,
        key_words: decode_string_list(&row.try_get::<String, _>("key_words")?)?,
        description: row.try_get("description")?,
        data_type: row.try_get("data_type")?,
        data_format: row.try_get("data_format")?,
        data_size: row.try_get("data_size")?,
        data_category: decode_string_list(&row.try_get::<String, _>("data_category")?)?,
        collection_time: row.try_get("collection_time")?,
        country: row.try_get("country")?,
        provider_url: row.try_get("provider_url")?,
        resource_url: row.try_get("resource_url")?,
        ownership_confirm: row.try_get("ownership_confirm")?,
        public_key: row.try_get("public_key")?,
        subscribe_confirm: row.try_get("subscribe_confirm")?,
        protocol: row.try_get("protocol")?,
        is_open: row.try_get("is_open")?,
        source: row.try_get("source")?,
        status: PublicationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("resource status '{status}'")))?,
        terms: match (free, price_minor) {
            (Some(f), Some(p)) => Some(PriceTerms {
                free: f != 0,
                price: Money::from_minor(p),
            }),
            _ => None,
        },
        usage_restrictions,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Inserts a resource; `index` also enters it into the match index (for items that are
    /// published on creation, as controlled data is).
    pub async fn insert_resource(
        &self,
        r: &Resource,
        index: Option<&Terms>,
    ) -> Result<ResourceInsert, StoreError> {
        let candidates = [REGISTRATION_DATA_TAKEN, OWNER_DATA_TAKEN];
        let mut insert = Batch::new(self.backend());
        insert_statement(&mut insert, r);
        let classified = |e: sqlx::Error| match StoreError::classify(e, &candidates) {
            StoreError::Unique(_) => Ok(ResourceInsert::DataIdTaken),
            e => Err(e),
        };
        let Some(terms) = index else {
            // A registration that is not indexed yet is one statement: no transaction around it.
            return match self.write_one(insert).await {
                Ok(_) => Ok(ResourceInsert::Created),
                Err(e) => classified(e),
            };
        };
        replace_terms(&mut insert, Side::Resource, &r.id, &r.data_type, terms);
        match self.write_batch(insert).await {
            Ok(_) => Ok(ResourceInsert::Created),
            Err(stopped) => classified(stopped.error),
        }
    }

    /// Rewrites a controlled item's descriptive fields and terms, and (re-)publishes it.
    pub async fn update_controlled(&self, r: &Resource, terms: &Terms) -> Result<(), StoreError> {
        let mut batch = Batch::new(self.backend());
        batch
            .push(
                "UPDATE resources SET key_words = $2, description = $3, protocol = $4, \
                   is_open = $5, source = $6, status = $7, free = $8, price_minor = $9, \
                   updated_at = $10, usage_restrictions = $11 \
                 WHERE id = $1",
            )
            .bind(&r.id)
            .bind(encode_string_list(&r.key_words))
            .bind(&r.description)
            .bind(&r.protocol)
            .bind(r.is_open)
            .bind(&r.source)
            .bind(r.status.as_str())
            .bind(r.terms.map(|t| i64::from(t.free)))
            .bind(r.terms.map(|t| t.price.minor()))
            .bind(r.updated_at)
            .bind(r.usage_restrictions.as_ref().map(|v| v.to_string()));
        replace_terms(&mut batch, Side::Resource, &r.id, &r.data_type, terms);
        self.write_batch(batch).await?;
        Ok(())
    }

    /// Looks a resource up by registration id, and by data id when one is given.
    pub async fn resource_by_ref(
        &self,
        registration_id: &str,
        data_id: Option<&str>,
    ) -> Result<Option<Resource>, StoreError> {
        let row =
            match data_id {
                Some(d) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM resources WHERE registration_id = $1 AND data_id = $2"
                )))
                .bind(registration_id)
                .bind(d)
                .fetch_optional(&self.pool)
                .await?,
                None => {
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "SELECT {COLUMNS} FROM resources WHERE registration_id = $1"
                    )))
                    .bind(registration_id)
                    .fetch_optional(&self.pool)
                    .await?
                }
            };
        row.as_ref().map(resource_from_row).transpose()
    }

    /// A resource by its internal id.
    pub async fn resource_by_id(&self, id: &str) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM resources WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    /// A resource by its owner's name and data id (unique together).
    pub async fn resource_by_owner_data(
        &self,
        owner_name: &str,
        data_id: &str,
    ) -> Result<Option<Resource>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM resources WHERE owner_name = $1 AND data_id = $2"
        )))
        .bind(owner_name)
        .bind(data_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(resource_from_row).transpose()
    }

    /// Resources by internal id.
    pub async fn resources_by_ids(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Resource>, StoreError> {
        let rows = self.fetch_by_ids("resources", COLUMNS, ids).await?;
        rows.iter()
            .map(|row| resource_from_row(row).map(|r| (r.id.clone(), r)))
            .collect()
    }

    /// Publishes with `terms` (and usage restrictions) and indexes `index` for matching,
    /// atomically.
    pub async fn set_resource_publication(
        &self,
        id: &str,
        status: PublicationStatus,
        terms: Option<PriceTerms>,
        usage_restrictions: Option<&serde_json::Value>,
        index: Option<(&str, &Terms)>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new(self.backend());
        batch
            .push(
                "UPDATE resources SET status = $2, free = $3, price_minor = $4, updated_at = $5, \
                   usage_restrictions = $6 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(terms.map(|t| i64::from(t.free)))
            .bind(terms.map(|t| t.price.minor()))
            .bind(now_millis())
            .bind(usage_restrictions.map(|v| v.to_string()));
        match index {
            Some((data_type, t)) => replace_terms(&mut batch, Side::Resource, id, data_type, t),
            None => delete_terms(&mut batch, Side::Resource, id),
        }
        self.write_batch(batch).await?;
        Ok(())
    }

    /// Revokes a resource if it is still in `expected` state; returns whether it changed.
    pub async fn revoke_resource(
        &self,
        id: &str,
        expected: PublicationStatus,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = conditional_status(
            &mut tx,
            "resources",
            id,
            expected,
            PublicationStatus::Revoked,
        )
        .await?;
        if changed {
            let mut batch = Batch::new(self.backend());
            delete_terms(&mut batch, Side::Resource, id);
            tx.run(batch).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}

/// Adds the insert of `r` to `batch`.
fn insert_statement(batch: &mut Batch, r: &Resource) {
    batch
        .push(
            "INSERT INTO resources (id, registration_id, data_id, owner_account_id, owner_name, \
               controlled, key_words, description, data_type, data_format, data_size, \
               data_category, collection_time, country, provider_url, resource_url, \
               ownership_confirm, public_key, subscribe_confirm, protocol, is_open, source, \
               status, free, price_minor, created_at, updated_at, usage_restrictions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CAST($11 AS DOUBLE PRECISION), $12, \
               $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
        )
        .bind(&r.id)
        .bind(&r.registration_id)
        .bind(&r.data_id)
        .bind(r.owner_account_id.as_str())
        .bind(&r.owner_name)
        .bind(i64::from(r.controlled))
        .bind(encode_string_list(&r.key_words))
        .bind(&r.description)
        .bind(&r.data_type)
        .bind(&r.data_format)
        // As text: sqlx 0.9's Any driver sends a NULL f64 to PostgreSQL as float4, and the
        // statement it prepares that way then refuses every non-NULL f64 on that connection
        // (found by scripts/fuzz-openapi.sh: a controlled publication, then a registration).
        .bind(r.data_size.map(|size| size.to_string()))
        .bind(encode_string_list(&r.data_category))
        .bind(&r.collection_time)
        .bind(&r.country)
        .bind(&r.provider_url)
        .bind(&r.resource_url)
        .bind(&r.ownership_confirm)
        .bind(&r.public_key)
        .bind(&r.subscribe_confirm)
        .bind(&r.protocol)
        .bind(r.is_open)
        .bind(&r.source)
        .bind(r.status.as_str())
        .bind(r.terms.map(|t| i64::from(t.free)))
        .bind(r.terms.map(|t| t.price.minor()))
        .bind(r.created_at)
        .bind(r.updated_at)
        .bind(r.usage_restrictions.as_ref().map(|v| v.to_string()));
}

/// Moves a row from `expected` to `next`; false when it was not in `expected`.
pub(crate) async fn conditional_status(
    tx: &mut Tx,
    table: &'static str,
    id: &str,
    expected: PublicationStatus,
    next: PublicationStatus,
) -> Result<bool, StoreError> {
    let sql =
        format!("UPDATE {table} SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4");
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(next.as_str())
        .bind(now_millis())
        .bind(id)
        .bind(expected.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}
