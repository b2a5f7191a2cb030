//! Delivery keys and uploaded files.

use sqlx::Row;

use super::batch::Batch;
use super::trading::confirmation_from_row;
use super::{Store, StoreError};
use crate::domain::AccountId;
use crate::domain::trading::Confirmation;

/// A provider's uploaded (encrypted) data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFile {
    pub resource_id: String,
    pub object_key: String,
    pub size: i64,
    pub sha256: String,
    /// Recorded since migration 0010; older uploads have none and are checked by SHA-256.
    pub blake3: Option<String>,
    pub uploaded_at: i64,
}

/// What delivering a confirmation's data needs, read in one statement.
#[derive(Debug, Clone)]
pub struct DeliveryContext {
    pub confirmation: Confirmation,
    pub resource_url: Option<String>,
    pub file: Option<ResourceFile>,
}

/// A provider's delivery identity as stored: sealed to the escrow recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    /// Base64 of the age file.
    pub sealed: String,
    /// The `age1…` recipient of the sealed identity.
    pub recipient: String,
}

impl Store {
    pub async fn set_account_delivery_key(
        &self,
        account_id: &AccountId,
        recipient: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut upsert = Batch::new(self.backend());
        upsert
            .push(
                "INSERT INTO account_delivery_keys (account_id, recipient, updated_at) \
                 VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id) DO UPDATE \
                   SET recipient = excluded.recipient, updated_at = excluded.updated_at",
            )
            .bind(account_id.as_str())
            .bind(recipient)
            .bind(now);
        self.write_one(upsert).await?;
        Ok(())
    }

    pub async fn account_delivery_key(
        &self,
        account_id: &AccountId,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT recipient FROM account_delivery_keys WHERE account_id = $1")
            .bind(account_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("recipient")).transpose()?)
    }

    pub async fn set_resource_delivery_key(
        &self,
        resource_id: &str,
        key: &SealedKey,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut upsert = Batch::new(self.backend());
        upsert
            .push(
                "INSERT INTO resource_delivery_keys (resource_id, sealed, recipient, updated_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (resource_id) DO UPDATE \
                   SET sealed = excluded.sealed, recipient = excluded.recipient, \
                       updated_at = excluded.updated_at",
            )
            .bind(resource_id)
            .bind(&key.sealed)
            .bind(&key.recipient)
            .bind(now);
        self.write_one(upsert).await?;
        Ok(())
    }

    pub async fn resource_delivery_key(
        &self,
        resource_id: &str,
    ) -> Result<Option<SealedKey>, StoreError> {
        let row = sqlx::query(
            "SELECT sealed, recipient FROM resource_delivery_keys WHERE resource_id = $1",
        )
        .bind(resource_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SealedKey {
            sealed: row.try_get("sealed")?,
            recipient: row.try_get("recipient")?,
        }))
    }

    /// A confirmation with its resource's URL and uploaded file, for a delivery.
    pub async fn delivery_context(
        &self,
        confirm_id: &str,
    ) -> Result<Option<DeliveryContext>, StoreError> {
        let row = sqlx::query(
            "SELECT c.id, c.demand_id, c.resource_id, c.registration_id, c.data_id, \
               c.controlled, c.seller_account_id, c.seller_name, c.buyer_account_id, \
               c.buyer_name, c.price_minor, c.usage_restrictions, c.status, c.created_at, \
               c.expires_at, c.settled_at, \
               r.resource_url, \
               f.object_key AS f_object_key, f.size AS f_size, f.sha256 AS f_sha256, \
               f.blake3 AS f_blake3, f.uploaded_at AS f_uploaded_at \
             FROM confirmations c \
             JOIN resources r ON r.id = c.resource_id \
             LEFT JOIN resource_files f ON f.resource_id = c.resource_id \
             WHERE c.id = $1",
        )
        .bind(confirm_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let confirmation = confirmation_from_row(&row)?;
        let object_key: Option<String> = row.try_get("f_object_key")?;
        let file = match object_key {
            None => None,
            Some(object_key) => Some(ResourceFile {
                resource_id: confirmation.resource_id.clone(),
                object_key,
                size: row.try_get("f_size")?,
                sha256: row.try_get("f_sha256")?,
                blake3: row.try_get("f_blake3")?,
                uploaded_at: row.try_get("f_uploaded_at")?,
            }),
        };
        Ok(Some(DeliveryContext {
            confirmation,
            resource_url: row.try_get("resource_url")?,
            file,
        }))
    }

    /// Records a new upload; returns the object key it replaced, if any, for deletion.
    pub async fn set_resource_file(&self, f: &ResourceFile) -> Result<Option<String>, StoreError> {
        let mut batch = Batch::new(self.backend());
        batch
            .push("SELECT object_key FROM resource_files WHERE resource_id = $1")
            .bind(&f.resource_id);
        batch
            .push(
                "INSERT INTO resource_files \
                   (resource_id, object_key, size, sha256, blake3, uploaded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (resource_id) DO UPDATE \
                   SET object_key = excluded.object_key, size = excluded.size, \
                       sha256 = excluded.sha256, blake3 = excluded.blake3, \
                       uploaded_at = excluded.uploaded_at",
            )
            .bind(&f.resource_id)
            .bind(&f.object_key)
            .bind(f.size)
            .bind(&f.sha256)
            .bind(&f.blake3)
            .bind(f.uploaded_at);
        let done = self.write_batch(batch).await?;
        Ok(done
            .first()
            .and_then(|o| o.rows.first())
            .map(|row| row.try_get("object_key"))
            .transpose()?)
    }
}
