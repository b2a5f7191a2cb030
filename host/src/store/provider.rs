//! Compute provider access: certifications, their documents, enterprises.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::notifications::insert_notices;
use super::{Constraint, Store, StoreError, Tx};
use crate::domain::AccountId;
use crate::domain::notifications::{Channels, Outcome};
use crate::domain::provider::{
    Certification, CertificationDocument, CertificationInfo, DocumentType, ReviewStatus,
};

const ONE_PENDING: Constraint = Constraint {
    name: "certifications_pending_key",
    sqlite_columns: "certifications.account_id",
};
const ONE_APPROVED: Constraint = Constraint {
    name: "certifications_approved_key",
    sqlite_columns: "certifications.account_id",
};

/// What a submission did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum CertificationInsert {
    Created,
    /// The account has a submission under review or is certified already (a concurrent
    /// submission got in first); nothing was written.
    NotAllowed(ReviewStatus),
}

/// What a review did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum ReviewOutcome {
    /// Decided now; for an approval, with the enterprise id assigned.
    Decided(Decided),
    NotFound,
    /// It was reviewed already (by a concurrent request, perhaps); nothing was written.
    AlreadyReviewed(ReviewStatus),
    /// Every 5-digit enterprise id is taken; nothing was written.
    IdsExhausted,
}

/// A certification as the transaction that decided it left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub certification_id: String,
    pub account_id: AccountId,
    pub contact_email: String,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub enterprise_id: Option<String>,
}

const CERT_COLUMNS: &str = "c.id, c.account_id, a.username, c.enterprise_name, c.credit_code, \
     c.legal_representative, c.contact_name, c.contact_phone, c.contact_email, c.status, \
     c.reason, c.submitted_at, c.reviewed_at";

fn status_of(text: &str) -> Result<ReviewStatus, StoreError> {
    ReviewStatus::parse(text).ok_or_else(|| StoreError::Corrupt(format!("review status '{text}'")))
}

fn certification_from_row(row: &AnyRow) -> Result<Certification, StoreError> {
    Ok(Certification {
        id: row.try_get("id")?,
        account_id: row.try_get::<String, _>("account_id")?.into(),
        username: row.try_get("username")?,
        info: CertificationInfo {
            enterprise_name: row.try_get("enterprise_name")?,
            credit_code: row.try_get("credit_code")?,
            legal_representative: row.try_get("legal_representative")?,
            contact_name: row.try_get("contact_name")?,
            contact_phone: row.try_get("contact_phone")?,
            contact_email: row.try_get("contact_email")?,
        },
        status: status_of(&row.try_get::<String, _>("status")?)?,
        reason: row.try_get("reason")?,
        submitted_at: row.try_get("submitted_at")?,
        reviewed_at: row.try_get("reviewed_at")?,
        documents: Vec::new(),
    })
}

fn document_from_row(row: &AnyRow) -> Result<CertificationDocument, StoreError> {
    let media: String = row.try_get("media_type")?;
    Ok(CertificationDocument {
        id: row.try_get("id")?,
        certification_id: row.try_get("certification_id")?,
        ordinal: row.try_get("ordinal")?,
        file_name: row.try_get("file_name")?,
        media_type: DocumentType::parse(&media)
            .ok_or_else(|| StoreError::Corrupt(format!("document media type '{media}'")))?,
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        object_key: row.try_get("object_key")?,
    })
}

/// The account's phone, read inside a transaction.
pub(crate) async fn account_phone(
    tx: &mut Tx,
    account_id: &AccountId,
) -> Result<Option<String>, StoreError> {
    let row = sqlx::query("SELECT phone FROM accounts WHERE id = $1")
        .bind(account_id.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.try_get("phone")).transpose()?.flatten())
}

impl Store {
    /// The status of the account's latest submission, if any.
    pub async fn latest_certification_status(
        &self,
        account_id: &AccountId,
    ) -> Result<Option<ReviewStatus>, StoreError> {
        let row = sqlx::query(
            "SELECT status FROM certifications WHERE account_id = $1 \
             ORDER BY submitted_at DESC, id DESC LIMIT 1",
        )
        .bind(account_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| status_of(&r.try_get::<String, _>("status")?))
            .transpose()
    }

    /// Stores a submission with its (already stored) documents.
    pub async fn insert_certification(
        &self,
        cert: &Certification,
    ) -> Result<CertificationInsert, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO certifications (id, account_id, enterprise_name, credit_code, \
               legal_representative, contact_name, contact_phone, contact_email, status, \
               submitted_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&cert.id)
        .bind(cert.account_id.as_str())
        .bind(&cert.info.enterprise_name)
        .bind(&cert.info.credit_code)
        .bind(&cert.info.legal_representative)
        .bind(&cert.info.contact_name)
        .bind(&cert.info.contact_phone)
        .bind(&cert.info.contact_email)
        .bind(cert.status.as_str())
        .bind(cert.submitted_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::classify(e, &[ONE_PENDING, ONE_APPROVED]));
        match inserted {
            Ok(_) => {}
            // SQLite names only the column, which both indexes share; which one it was is read
            // back after the rollback.
            Err(StoreError::Unique(_)) => {
                tx.rollback().await?;
                let latest = self
                    .latest_certification_status(&cert.account_id)
                    .await?
                    .unwrap_or(ReviewStatus::Pending);
                return Ok(CertificationInsert::NotAllowed(latest));
            }
            Err(e) => return Err(e),
        }
        for doc in &cert.documents {
            sqlx::query(
                "INSERT INTO certification_documents (id, certification_id, ordinal, file_name, \
                   media_type, size, sha256, object_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&doc.id)
            .bind(&cert.id)
            .bind(doc.ordinal)
            .bind(&doc.file_name)
            .bind(doc.media_type.media_type())
            .bind(doc.size)
            .bind(&doc.sha256)
            .bind(&doc.object_key)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(CertificationInsert::Created)
    }

    async fn attach_documents(&self, certs: &mut [Certification]) -> Result<(), StoreError> {
        let ids: Vec<String> = certs.iter().map(|c| c.id.clone()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT id, certification_id, ordinal, file_name, media_type, size, sha256, \
               object_key \
             FROM certification_documents WHERE certification_id IN ({}) ORDER BY ordinal",
            super::matching::placeholders(1, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in &ids {
            query = query.bind(id);
        }
        for row in query.fetch_all(&self.pool).await? {
            let doc = document_from_row(&row)?;
            if let Some(cert) = certs.iter_mut().find(|c| c.id == doc.certification_id) {
                cert.documents.push(doc);
            }
        }
        Ok(())
    }

    /// Every submission of an account, newest first, with their documents.
    pub async fn certifications_of(
        &self,
        account_id: &AccountId,
    ) -> Result<Vec<Certification>, StoreError> {
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certifications c JOIN accounts a ON a.id = c.account_id \
             WHERE c.account_id = $1 ORDER BY c.submitted_at DESC, c.id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        let mut certs = rows
            .iter()
            .map(certification_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_documents(&mut certs).await?;
        Ok(certs)
    }

    /// Submissions for review, oldest first, optionally of one status.
    pub async fn certifications_page(
        &self,
        status: Option<ReviewStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Certification>, StoreError> {
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certifications c JOIN accounts a ON a.id = c.account_id \
             WHERE ($1 = '' OR c.status = $1) ORDER BY c.submitted_at, c.id LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.map(ReviewStatus::as_str).unwrap_or_default())
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let mut certs = rows
            .iter()
            .map(certification_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_documents(&mut certs).await?;
        Ok(certs)
    }

    pub async fn certification_document(
        &self,
        certification_id: &str,
        document_id: &str,
    ) -> Result<Option<CertificationDocument>, StoreError> {
        let row = sqlx::query(
            "SELECT id, certification_id, ordinal, file_name, media_type, size, sha256, \
               object_key \
             FROM certification_documents WHERE certification_id = $1 AND id = $2",
        )
        .bind(certification_id)
        .bind(document_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(document_from_row).transpose()
    }

    /// The 5-digit enterprise id of a certified account.
    pub async fn enterprise_id_of(
        &self,
        account_id: &AccountId,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT enterprise_id FROM enterprises WHERE account_id = $1")
            .bind(account_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("enterprise_id")).transpose()?)
    }

    /// Decides a pending certification: approval assigns the next enterprise id. Concurrent reviews of one
    /// certification serialise on its row: exactly one decides it.
    pub async fn review_certification(
        &self,
        certification_id: &str,
        decision: ReviewStatus,
        reason: Option<&str>,
        reviewer: &AccountId,
        now: i64,
        channels: Channels,
    ) -> Result<ReviewOutcome, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE certifications SET status = $2, reason = $3, reviewed_at = $4, \
               reviewed_by = $5 \
             WHERE id = $1 AND status = 'PENDING' RETURNING account_id, contact_email",
        )
        .bind(certification_id)
        .bind(decision.as_str())
        .bind(reason)
        .bind(now)
        .bind(reviewer.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            let current = sqlx::query("SELECT status FROM certifications WHERE id = $1")
                .bind(certification_id)
                .fetch_optional(&self.pool)
                .await?;
            return match current {
                None => Ok(ReviewOutcome::NotFound),
                Some(r) => Ok(ReviewOutcome::AlreadyReviewed(status_of(
                    &r.try_get::<String, _>("status")?,
                )?)),
            };
        };
        let account_id: String = row.try_get("account_id")?;
        let contact_email: String = row.try_get("contact_email")?;
        let mut enterprise_id = None;
        if decision == ReviewStatus::Approved {
            // The counter only grows: an id once given is never given again, even if the
            // enterprise row were ever removed.
            let next = sqlx::query(
                "UPDATE provider_counters SET value = value + 1 WHERE name = 'enterprise' \
                 RETURNING value",
            )
            .fetch_one(&mut *tx)
            .await?;
            let Ok(id) = crate::domain::provider::enterprise_id(next.try_get("value")?) else {
                tx.rollback().await?;
                return Ok(ReviewOutcome::IdsExhausted);
            };
            sqlx::query(
                "INSERT INTO enterprises (account_id, enterprise_id, certification_id, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&account_id)
            .bind(&id)
            .bind(certification_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            enterprise_id = Some(id);
        }
        let decided = Decided {
            certification_id: certification_id.to_owned(),
            account_id: account_id.into(),
            contact_email,
            status: decision,
            reason: reason.map(str::to_owned),
            enterprise_id,
        };
        // The notices commit with the decision or not at all.
        let outcome = Outcome::Certification {
            status: decided.status,
            reason: decided.reason.clone(),
            enterprise_id: decided.enterprise_id.clone(),
        };
        let phone = account_phone(&mut tx, &decided.account_id).await?;
        let notices = outcome.notices(channels, Some(&decided.contact_email), phone.as_deref());
        insert_notices(&mut tx, &notices, "certification", certification_id, now).await?;
        tx.commit().await?;
        Ok(ReviewOutcome::Decided(decided))
    }
}
