use std::collections::HashMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::batch::Batch;
use super::matching::{delete_terms, replace_terms};
use super::resources::conditional_status;
use super::{Store, StoreError, decode_string_list, encode_string_list};
use crate::domain::PublicationStatus;
use crate::domain::demand::Demand;
use crate::domain::matching::{Side, Terms};
use crate::domain::timefmt::now_millis;

const COLUMNS: &str = "id, demander_account_id, demander_name, data_category, key_words, \
    description, data_type, subscribe_confirm, status, created_at, updated_at";

fn demand_from_row(row: &AnyRow) -> Result<Demand, StoreError> {
    let status: String = row.try_get("status")?;
    Ok(Demand {
        id: row.try_get("id")?,
        demander_account_id: row.try_get::<String, _>("demander_account_id")?.into(),
        demander_name: row.try_get("demander_name")?,
        data_category: decode_string_list(&row.try_get::<String, _>("data_category")?)?,
        key_words: decode_string_list(&row.try_get::<String, _>("key_words")?)?,
        description: row.try_get("description")?,
        data_type: row.try_get("data_type")?,
        subscribe_confirm: row.try_get("subscribe_confirm")?,
        status: PublicationStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("demand status '{status}'")))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn insert_demand(&self, d: &Demand) -> Result<(), StoreError> {
        let mut insert = Batch::new(self.backend());
        insert
            .push(
                "INSERT INTO demands (id, demander_account_id, demander_name, data_category, \
                   key_words, description, data_type, subscribe_confirm, status, created_at, \
                   updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&d.id)
            .bind(d.demander_account_id.as_str())
            .bind(&d.demander_name)
            .bind(encode_string_list(&d.data_category))
            .bind(encode_string_list(&d.key_words))
            .bind(&d.description)
            .bind(&d.data_type)
            .bind(&d.subscribe_confirm)
            .bind(d.status.as_str())
            .bind(d.created_at)
            .bind(d.updated_at);
        self.write_one(insert).await?;
        Ok(())
    }

    pub async fn demand(&self, id: &str) -> Result<Option<Demand>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM demands WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(demand_from_row).transpose()
    }

    pub async fn demands_by_ids(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Demand>, StoreError> {
        let rows = self.fetch_by_ids("demands", COLUMNS, ids).await?;
        rows.iter()
            .map(|row| demand_from_row(row).map(|d| (d.id.clone(), d)))
            .collect()
    }

    /// Publishes a demand and indexes its terms, atomically.
    pub async fn publish_demand(
        &self,
        id: &str,
        data_type: &str,
        terms: &Terms,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new(self.backend());
        batch
            .push("UPDATE demands SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(PublicationStatus::Published.as_str())
            .bind(now_millis());
        replace_terms(&mut batch, Side::Demand, id, data_type, terms);
        self.write_batch(batch).await?;
        Ok(())
    }

    /// Revokes a demand still in `expected` state; returns whether it changed.
    pub async fn revoke_demand(
        &self,
        id: &str,
        expected: PublicationStatus,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let changed =
            conditional_status(&mut tx, "demands", id, expected, PublicationStatus::Revoked)
                .await?;
        if changed {
            let mut batch = Batch::new(self.backend());
            delete_terms(&mut batch, Side::Demand, id);
            tx.run(batch).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}
