//! The notification outbox: notices are written in the transaction of the decision they tell
//! of, and sent later by the worker (`services::notifications`), so a decision is never lost
//! for a mail server that is down, and never waits for one.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, Tx};
use crate::domain::new_id;
use crate::domain::notifications::{Channel, Notice, NoticeStatus};

/// A notice as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotice {
    pub id: String,
    pub notice: Notice,
    /// What it tells of: `certification` or `identifier`, and that item's id.
    pub topic: String,
    pub topic_id: String,
    pub status: NoticeStatus,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const COLUMNS: &str = "id, channel, recipient, subject, body, topic, topic_id, status, attempts, \
     next_attempt_at, last_error, created_at, sent_at";

fn notice_from_row(row: &AnyRow) -> Result<StoredNotice, StoreError> {
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    Ok(StoredNotice {
        id: row.try_get("id")?,
        notice: Notice {
            channel: Channel::parse(&channel)
                .ok_or_else(|| StoreError::Corrupt(format!("notice channel '{channel}'")))?,
            recipient: row.try_get("recipient")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
        },
        topic: row.try_get("topic")?,
        topic_id: row.try_get("topic_id")?,
        status: NoticeStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("notice status '{status}'")))?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        sent_at: row.try_get("sent_at")?,
    })
}

/// Writes notices inside the caller's transaction (the decision's).
pub(crate) async fn insert_notices(
    tx: &mut Tx,
    notices: &[Notice],
    topic: &str,
    topic_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    for notice in notices {
        sqlx::query(
            "INSERT INTO notifications (id, channel, recipient, subject, body, topic, topic_id, \
               status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
        )
        .bind(new_id("ntf_"))
        .bind(notice.channel.as_str())
        .bind(&notice.recipient)
        .bind(&notice.subject)
        .bind(&notice.body)
        .bind(topic)
        .bind(topic_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Takes up to `limit` due notices for one attempt each: their next attempt moves to
    /// `lease_until`, so another worker (another server of the deployment) does not take them
    /// meanwhile; a worker that dies mid-attempt leaves them due again at `lease_until`.
    pub async fn claim_due_notices(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications WHERE status = 'pending' AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        );
        let due = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let mut claimed = Vec::new();
        for row in &due {
            let notice = notice_from_row(row)?;
            let mut tx = self.begin_write().await?;
            // Conditional on the time read: whoever moved it first has it.
            let taken = sqlx::query(
                "UPDATE notifications SET next_attempt_at = $3 \
                 WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2",
            )
            .bind(&notice.id)
            .bind(notice.next_attempt_at)
            .bind(lease_until)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            if taken == 1 {
                claimed.push(notice);
            }
        }
        Ok(claimed)
    }

    pub async fn notice_sent(&self, id: &str, attempts: i64, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE notifications SET status = 'sent', attempts = $2, sent_at = $3, \
               last_error = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(attempts)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt: due again at `retry_at`, or `failed` when `retry_at` is `None`.
    pub async fn notice_failed(
        &self,
        id: &str,
        attempts: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE notifications SET attempts = $2, last_error = $3, \
               status = CASE WHEN $4 < 0 THEN 'failed' ELSE 'pending' END, \
               next_attempt_at = CASE WHEN $4 < 0 THEN next_attempt_at ELSE $4 END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(attempts)
        .bind(error)
        .bind(retry_at.unwrap_or(-1))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Notices newest first, optionally of one status.
    pub async fn notices_page(
        &self,
        status: Option<NoticeStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<StoredNotice>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications WHERE ($1 = '' OR status = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.map(NoticeStatus::as_str).unwrap_or_default())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(notice_from_row).collect()
    }
}
