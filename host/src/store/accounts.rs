use sqlx::Row;

use super::{Constraint, Store, StoreError};
use crate::domain::accounts::{Account, TokenGrant};
use crate::domain::{AccountId, Caller, Role};

const USERNAME_TAKEN: Constraint = Constraint {
    name: "accounts_username_key",
    sqlite_columns: "accounts.username",
};

/// What an account insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum AccountInsert {
    Created,
    /// Another account has this username; nothing was written.
    UsernameTaken,
}

fn role_of(text: &str) -> Result<Role, StoreError> {
    Role::parse(text).ok_or_else(|| StoreError::Corrupt(format!("unknown role '{text}'")))
}

fn account_from_row(row: &sqlx::any::AnyRow) -> Result<Account, StoreError> {
    Ok(Account {
        id: row.try_get::<String, _>("id")?.into(),
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        phone: row.try_get("phone")?,
        role: role_of(&row.try_get::<String, _>("role")?)?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub async fn insert_account(&self, account: &Account) -> Result<AccountInsert, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (id, username, password_hash, phone, role, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(account.id.as_str())
        .bind(&account.username)
        .bind(&account.password_hash)
        .bind(&account.phone)
        .bind(account.role.as_str())
        .bind(account.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[USERNAME_TAKEN]));
        match inserted {
            Ok(_) => {
                tx.commit().await?;
                Ok(AccountInsert::Created)
            }
            Err(StoreError::Unique(_)) => Ok(AccountInsert::UsernameTaken),
            Err(e) => Err(e),
        }
    }

    pub async fn account_by_username(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, phone, role, created_at \
             FROM accounts WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    pub async fn any_account_with_role(&self, role: Role) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts WHERE role = $1")
            .bind(role.as_str())
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n > 0)
    }

    pub async fn insert_token(
        &self,
        token_hash: &str,
        account_id: &AccountId,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        // Expired tokens are swept here, on the write path that creates them, instead of by a
        // background job; the index on expires_at keeps this cheap.
        sqlx::query("DELETE FROM auth_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO auth_tokens (token_hash, account_id, expires_at, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(account_id.as_str())
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn token(&self, token_hash: &str) -> Result<Option<TokenGrant>, StoreError> {
        let row = sqlx::query(
            "SELECT t.account_id, a.username, a.role, t.expires_at \
             FROM auth_tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TokenGrant {
            caller: Caller {
                account_id: row.try_get::<String, _>("account_id")?.into(),
                username: row.try_get("username")?,
                role: role_of(&row.try_get::<String, _>("role")?)?,
            },
            expires_at: row.try_get("expires_at")?,
        }))
    }

    /// Stores a new API key unless the account has `max` already; `false` when it has.
    pub async fn insert_api_key(&self, key: &StoredApiKey, max: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM api_keys WHERE account_id = $1")
            .bind(&key.account_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count >= max {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, name, key_sha256, key_prefix, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.id)
        .bind(&key.account_id)
        .bind(&key.name)
        .bind(&key.key_sha256)
        .bind(&key.key_prefix)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An account's API keys, oldest first.
    pub async fn api_keys(&self, account_id: &str) -> Result<Vec<StoredApiKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, name, key_sha256, key_prefix, created_at FROM api_keys \
             WHERE account_id = $1 ORDER BY created_at, id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredApiKey {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    name: row.try_get("name")?,
                    key_sha256: row.try_get("key_sha256")?,
                    key_prefix: row.try_get("key_prefix")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Deletes one of an account's API keys; returns its hash, or `None` if it had no such key.
    pub async fn delete_api_key(
        &self,
        account_id: &str,
        key_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "DELETE FROM api_keys WHERE id = $1 AND account_id = $2 RETURNING key_sha256",
        )
        .bind(key_id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match row {
            Some(r) => Some(r.try_get("key_sha256")?),
            None => None,
        })
    }

    /// The account an API key (by hash) belongs to.
    pub async fn api_key_caller(&self, key_sha256: &str) -> Result<Option<Caller>, StoreError> {
        let row = sqlx::query(
            "SELECT k.account_id, a.username, a.role FROM api_keys k \
             JOIN accounts a ON a.id = k.account_id WHERE k.key_sha256 = $1",
        )
        .bind(key_sha256)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Caller {
            account_id: row.try_get::<String, _>("account_id")?.into(),
            username: row.try_get("username")?,
            role: role_of(&row.try_get::<String, _>("role")?)?,
        }))
    }
}

/// An API key as stored: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub key_sha256: String,
    pub key_prefix: String,
    pub created_at: i64,
}
