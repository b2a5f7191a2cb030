use sqlx::Row;

use super::{Constraint, Store, StoreError};

pub const USERNAME_TAKEN: Constraint = Constraint {
    name: "accounts_username_key",
    sqlite_columns: "accounts.username",
};

#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub phone: Option<String>,
    pub role: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub account_id: String,
    pub username: String,
    pub role: String,
    pub expires_at: i64,
}

fn account_from_row(row: &sqlx::any::AnyRow) -> Result<AccountRow, sqlx::Error> {
    Ok(AccountRow {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        phone: row.try_get("phone")?,
        role: row.try_get("role")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    pub async fn insert_account(&self, account: &AccountRow) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO accounts (id, username, password_hash, phone, role, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&account.id)
        .bind(&account.username)
        .bind(&account.password_hash)
        .bind(&account.phone)
        .bind(&account.role)
        .bind(account.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[USERNAME_TAKEN]))?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn account_by_username(
        &self,
        username: &str,
    ) -> Result<Option<AccountRow>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, phone, role, created_at \
             FROM accounts WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(account_from_row).transpose()?)
    }

    pub async fn any_account_with_role(&self, role: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM accounts WHERE role = $1")
            .bind(role)
            .fetch_one(&self.pool)
            .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n > 0)
    }

    pub async fn insert_token(
        &self,
        token_hash: &str,
        account_id: &str,
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
        .bind(account_id)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn token(&self, token_hash: &str) -> Result<Option<TokenRow>, StoreError> {
        let row = sqlx::query(
            "SELECT t.account_id, a.username, a.role, t.expires_at \
             FROM auth_tokens t JOIN accounts a ON a.id = t.account_id \
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TokenRow {
            account_id: row.try_get("account_id")?,
            username: row.try_get("username")?,
            role: row.try_get("role")?,
            expires_at: row.try_get("expires_at")?,
        }))
    }
}
