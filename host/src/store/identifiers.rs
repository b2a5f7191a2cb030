//! Identifier code applications and the codes their approval issues.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::notifications::insert_notices;
use super::provider::account_phone;
use super::{Store, StoreError};
use crate::domain::AccountId;
use crate::domain::identifiers::{IdentifierApplication, IdentifierRequest, SERIALS, compose};
use crate::domain::notifications::{Channels, Outcome};
use crate::domain::provider::ReviewStatus;

/// What a review of an application did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ApplicationReview {
    Decided(Box<IdentifierApplication>),
    NotFound,
    /// Reviewed already (perhaps by a concurrent request); nothing was written.
    AlreadyReviewed(ReviewStatus),
    /// All 1000 serials under the application's prefix are taken; nothing was written.
    SerialsExhausted,
}

const COLUMNS: &str = "i.id, i.account_id, a.username, i.enterprise_id, i.province, i.city, \
     i.zone, i.industry, i.status, i.reason, i.code, i.submitted_at, i.reviewed_at";

fn status_of(text: &str) -> Result<ReviewStatus, StoreError> {
    ReviewStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("review status '{text}'")))
}

fn application_from_row(row: &AnyRow) -> Result<IdentifierApplication, StoreError> {
    Ok(IdentifierApplication {
        id: row.try_get("id")?,
        account_id: row.try_get::<String, _>("account_id")?.into(),
        username: row.try_get("username")?,
        enterprise_id: row.try_get("enterprise_id")?,
        request: IdentifierRequest {
            province: row.try_get("province")?,
            city: row.try_get("city")?,
            zone: row.try_get("zone")?,
            industry: row.try_get("industry")?,
        },
        status: status_of(&row.try_get::<String, _>("status")?)?,
        reason: row.try_get("reason")?,
        code: row.try_get("code")?,
        submitted_at: row.try_get("submitted_at")?,
        reviewed_at: row.try_get("reviewed_at")?,
    })
}

impl Store {
    pub async fn insert_identifier_application(
        &self,
        app: &IdentifierApplication,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO identifier_applications (id, account_id, enterprise_id, province, city, \
               zone, industry, status, submitted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&app.id)
        .bind(app.account_id.as_str())
        .bind(&app.enterprise_id)
        .bind(&app.request.province)
        .bind(&app.request.city)
        .bind(&app.request.zone)
        .bind(&app.request.industry)
        .bind(app.status.as_str())
        .bind(app.submitted_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An account's applications, newest first.
    pub async fn identifier_applications_of(
        &self,
        account_id: &AccountId,
    ) -> Result<Vec<IdentifierApplication>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM identifier_applications i \
             JOIN accounts a ON a.id = i.account_id \
             WHERE i.account_id = $1 ORDER BY i.submitted_at DESC, i.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(application_from_row).collect()
    }

    /// Applications for review, oldest first, optionally of one status.
    pub async fn identifier_applications_page(
        &self,
        status: Option<ReviewStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<IdentifierApplication>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM identifier_applications i \
             JOIN accounts a ON a.id = i.account_id \
             WHERE ($1 = '' OR i.status = $1) ORDER BY i.submitted_at, i.id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.map(ReviewStatus::as_str).unwrap_or_default())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(application_from_row).collect()
    }

    async fn identifier_application(
        &self,
        id: &str,
    ) -> Result<Option<IdentifierApplication>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM identifier_applications i \
             JOIN accounts a ON a.id = i.account_id WHERE i.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(application_from_row).transpose()
    }

    /// Decides a pending application. An approval takes the next serial under the
    /// application's 12-digit prefix and issues the code, in the same transaction; the unique
    /// index on `code` backs up the counter.
    pub async fn review_identifier_application(
        &self,
        id: &str,
        decision: ReviewStatus,
        reason: Option<&str>,
        reviewer: &AccountId,
        now: i64,
        channels: Channels,
    ) -> Result<ApplicationReview, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE identifier_applications SET status = $2, reason = $3, reviewed_at = $4, \
               reviewed_by = $5 \
             WHERE id = $1 AND status = 'PENDING' \
             RETURNING account_id, enterprise_id, province, city, zone, industry",
        )
        .bind(id)
        .bind(decision.as_str())
        .bind(reason)
        .bind(now)
        .bind(reviewer.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(match self.identifier_application(id).await? {
                None => ApplicationReview::NotFound,
                Some(a) => ApplicationReview::AlreadyReviewed(a.status),
            });
        };
        let account_id: AccountId = row.try_get::<String, _>("account_id")?.into();
        let mut code = None;
        if decision == ReviewStatus::Approved {
            let request = IdentifierRequest {
                province: row.try_get("province")?,
                city: row.try_get("city")?,
                zone: row.try_get("zone")?,
                industry: row.try_get("industry")?,
            };
            let prefix = request.prefix(&row.try_get::<String, _>("enterprise_id")?);
            // PostgreSQL: a concurrent approval under the same prefix waits for this row's lock
            // and then increments the committed value; SQLite has one writer at a time.
            let serial: i64 = sqlx::query(
                "INSERT INTO identifier_serials (prefix, value) VALUES ($1, 0) \
                 ON CONFLICT (prefix) DO UPDATE SET value = identifier_serials.value + 1 \
                 RETURNING value",
            )
            .bind(&prefix)
            .fetch_one(&mut *tx)
            .await?
            .try_get("value")?;
            if serial >= SERIALS {
                tx.rollback().await?;
                return Ok(ApplicationReview::SerialsExhausted);
            }
            let issued =
                compose(&prefix, serial).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query("UPDATE identifier_applications SET code = $2 WHERE id = $1")
                .bind(id)
                .bind(&issued)
                .execute(&mut *tx)
                .await?;
            code = Some(issued);
        }
        // The notices commit with the decision: by mail to the contact address of the
        // enterprise's approved certification, by SMS to the account's phone.
        let email = sqlx::query(
            "SELECT c.contact_email FROM enterprises e \
             JOIN certifications c ON c.id = e.certification_id WHERE e.account_id = $1",
        )
        .bind(account_id.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.try_get::<String, _>("contact_email"))
        .transpose()?;
        let phone = account_phone(&mut tx, &account_id).await?;
        let outcome = Outcome::Identifier {
            status: decision,
            reason: reason.map(str::to_owned),
            code,
        };
        let notices = outcome.notices(channels, email.as_deref(), phone.as_deref());
        insert_notices(&mut tx, &notices, "identifier", id, now).await?;
        tx.commit().await?;
        match self.identifier_application(id).await? {
            Some(a) => Ok(ApplicationReview::Decided(Box::new(a))),
            None => Err(StoreError::Corrupt(format!(
                "application '{id}' vanished after its review"
            ))),
        }
    }
}
