//! Compute provider access (compute-provider-access §1): enterprises submit real-name
//! certification with supporting documents; operators review it, and approval gives the
//! enterprise its 5-digit enterprise id.

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};

use super::notifications::Notifications;
use super::{ServiceError, page_number};
use crate::domain::provider::{
    Certification, CertificationCreated, CertificationDecision, CertificationDocument,
    CertificationInfo, CertificationStatus, CertificationView, CertificationsPage,
    CertificationsQuery, DocumentType, DocumentView, MAX_DOCUMENT_BYTES, MAX_DOCUMENTS,
    ReviewStatus, SNIFF_BYTES, check_credit_code, may_submit,
};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::{Caller, DomainError, Role, new_id};
use crate::files::{ByteStream, Files, FilesError};
use crate::store::Store;
use crate::store::provider::{CertificationInsert, ReviewOutcome};

/// A document as it arrives: its file name and its bytes, read once.
pub struct IncomingDocument<'a> {
    pub file_name: String,
    pub body: BoxStream<'a, Result<Bytes, std::io::Error>>,
}

/// Where the documents of one submission come from, one after the other (the parts of a
/// multipart request). Each is stored before the next is read, so memory stays a few chunks
/// whatever the documents' sizes.
pub trait DocumentSource: Send {
    /// The next document, or `None` after the last. Anything that is not a document is an
    /// error (`ServiceError::Refused` with the part's name).
    fn next_document(
        &mut self,
    ) -> impl Future<Output = Result<Option<IncomingDocument<'_>>, ServiceError>> + Send;
}

/// A document's bytes, passed through with a count: more than `MAX_DOCUMENT_BYTES` ends the
/// stream with `DocumentTooLarge`.
#[derive(Debug, thiserror::Error)]
#[error("document larger than {MAX_DOCUMENT_BYTES} bytes")]
struct DocumentTooLarge;

fn too_large(file_name: &str) -> ServiceError {
    DomainError::TooLarge(format!(
        "document '{file_name}' is larger than {} MiB",
        MAX_DOCUMENT_BYTES / (1024 * 1024)
    ))
    .into()
}

#[derive(Clone)]
pub struct Provider {
    store: Store,
    files: Files,
    notifications: Notifications,
}

fn view(cert: Certification) -> CertificationView {
    CertificationView {
        certification_id: cert.id,
        username: cert.username,
        info: cert.info,
        status: cert.status,
        reason: cert.reason,
        submitted_at: to_rfc3339(from_millis(cert.submitted_at)),
        reviewed_at: cert.reviewed_at.map(|t| to_rfc3339(from_millis(t))),
        documents: cert
            .documents
            .into_iter()
            .map(|d| DocumentView {
                document_id: d.id,
                file_name: d.file_name,
                media_type: d.media_type.media_type(),
                size: d.size,
                sha256: d.sha256,
            })
            .collect(),
    }
}

/// A stored document, ready to stream.
pub struct DocumentContent {
    pub media_type: &'static str,
    pub file_name: String,
    pub size: u64,
    pub stream: ByteStream,
}

impl Provider {
    pub fn new(store: Store, files: Files, notifications: Notifications) -> Self {
        Provider {
            store,
            files,
            notifications,
        }
    }

    /// Stores one document: reads its first bytes to tell its type, then streams it to storage
    /// with its size checked on the way.
    async fn store_document(
        &self,
        certification_id: &str,
        ordinal: i64,
        doc: IncomingDocument<'_>,
    ) -> Result<CertificationDocument, ServiceError> {
        let IncomingDocument {
            file_name,
            mut body,
        } = doc;
        let mut head: Vec<Bytes> = Vec::new();
        let mut seen = 0usize;
        while seen < SNIFF_BYTES {
            match body.next().await {
                Some(Ok(chunk)) => {
                    seen += chunk.len();
                    head.push(chunk);
                }
                Some(Err(e)) => {
                    return Err(ServiceError::invalid(
                        "/document",
                        format!("could not read document '{file_name}': {e}"),
                    ));
                }
                None => break,
            }
        }
        let first: Vec<u8> = head.iter().flat_map(|c| c.iter().copied()).collect();
        let media_type = DocumentType::sniff(&first).ok_or_else(|| {
            ServiceError::invalid(
                "/document",
                format!("document '{file_name}' is not a PDF, JPEG or PNG file (by its content)"),
            )
        })?;
        let mut total: u64 = 0;
        let counted = stream::iter(head.into_iter().map(Ok))
            .chain(body)
            .map(move |chunk| {
                let chunk = chunk?;
                total += chunk.len() as u64;
                if total > MAX_DOCUMENT_BYTES {
                    return Err(std::io::Error::other(DocumentTooLarge));
                }
                Ok(chunk)
            });
        let id = new_id("doc_");
        let key = format!("certifications/{certification_id}/{id}");
        let stored = self
            .files
            .put_stream(&key, Box::pin(counted))
            .await
            .map_err(|e| match e {
                FilesError::Upload(e)
                    if e.get_ref()
                        .is_some_and(|inner| inner.is::<DocumentTooLarge>()) =>
                {
                    too_large(&file_name)
                }
                FilesError::Upload(e) => ServiceError::invalid(
                    "/document",
                    format!("the upload of '{file_name}' was interrupted: {e}"),
                ),
                other => ServiceError::Internal(other.to_string()),
            })?;
        // Never beyond MAX_DOCUMENT_BYTES, which the counting stream enforced.
        let size = i64::try_from(stored.size).map_err(|_| too_large(&file_name))?;
        Ok(CertificationDocument {
            id,
            certification_id: certification_id.to_owned(),
            ordinal,
            file_name,
            media_type,
            size,
            sha256: stored.sha256,
            object_key: key,
        })
    }

    async fn delete_documents(&self, docs: &[CertificationDocument]) {
        for doc in docs {
            if let Err(e) = self.files.delete(&doc.object_key).await {
                // An orphan file costs space, not correctness: nothing refers to it.
                tracing::warn!(error = %e, key = %doc.object_key, "could not delete a document");
            }
        }
    }

    /// `POST /v1/provider/certification`: an enterprise submits its basic information and
    /// supporting documents for review.
    pub async fn submit_certification<D: DocumentSource>(
        &self,
        caller: &Caller,
        info: CertificationInfo,
        documents: &mut D,
    ) -> Result<CertificationCreated, ServiceError> {
        caller.require_role(Role::Enterprise)?;
        check_credit_code("/info/creditCode", &info.credit_code)?;
        // Checked here to spare the upload; the insert checks again, atomically.
        may_submit(
            self.store
                .latest_certification_status(&caller.account_id)
                .await?,
        )?;
        let id = new_id("cert_");
        let mut stored: Vec<CertificationDocument> = Vec::new();
        let result: Result<(), ServiceError> = async {
            while let Some(doc) = documents.next_document().await? {
                if stored.len() == MAX_DOCUMENTS {
                    return Err(ServiceError::invalid(
                        "/document",
                        format!("at most {MAX_DOCUMENTS} documents per submission"),
                    ));
                }
                let ordinal = i64::try_from(stored.len()).unwrap_or(i64::MAX);
                stored.push(self.store_document(&id, ordinal, doc).await?);
            }
            if stored.is_empty() {
                return Err(ServiceError::invalid(
                    "/document",
                    "at least one supporting document (a part named 'document') is required",
                ));
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            self.delete_documents(&stored).await;
            return Err(e);
        }
        let cert = Certification {
            id: id.clone(),
            account_id: caller.account_id.clone(),
            username: caller.username.clone(),
            info,
            status: ReviewStatus::Pending,
            reason: None,
            submitted_at: now_millis(),
            reviewed_at: None,
            documents: stored,
        };
        match self.store.insert_certification(&cert).await {
            Ok(CertificationInsert::Created) => Ok(CertificationCreated {
                certification_id: id,
                status: ReviewStatus::Pending,
            }),
            Ok(CertificationInsert::NotAllowed(latest)) => {
                self.delete_documents(&cert.documents).await;
                Err(may_submit(Some(latest))
                    .err()
                    .unwrap_or_else(|| {
                        DomainError::InvalidState("a certification is under review".to_owned())
                    })
                    .into())
            }
            Err(e) => {
                self.delete_documents(&cert.documents).await;
                Err(e.into())
            }
        }
    }

    /// `GET /v1/provider/certification`: the caller's latest outcome and its history.
    pub async fn certification_status(
        &self,
        caller: &Caller,
    ) -> Result<CertificationStatus, ServiceError> {
        caller.require_role(Role::Enterprise)?;
        let history = self.store.certifications_of(&caller.account_id).await?;
        let enterprise_id = self.store.enterprise_id_of(&caller.account_id).await?;
        let latest = history.first();
        Ok(CertificationStatus {
            status: latest.map(|c| c.status),
            reason: latest.and_then(|c| c.reason.clone()),
            certification_id: latest.map(|c| c.id.clone()),
            enterprise_id,
            history: history.into_iter().map(view).collect(),
        })
    }

    /// `GET /v1/admin/certifications`: submissions for review, oldest first.
    pub async fn list_certifications(
        &self,
        caller: &Caller,
        q: &CertificationsQuery,
    ) -> Result<CertificationsPage, ServiceError> {
        caller.require_role(Role::Operator)?;
        let status = match q.status.as_deref() {
            None => None,
            Some(s) => Some(ReviewStatus::parse(s).ok_or_else(|| {
                ServiceError::invalid("/status", "must be PENDING, APPROVED or REJECTED")
            })?),
        };
        let limit = page_number("limit", q.limit.as_deref(), 100, (1, 1000))?;
        let offset = page_number("offset", q.offset.as_deref(), 0, (0, i64::MAX))?;
        let certs = self
            .store
            .certifications_page(status, limit, offset)
            .await?;
        Ok(CertificationsPage {
            certifications: certs.into_iter().map(view).collect(),
        })
    }

    /// A supporting document, for operators only.
    pub async fn document(
        &self,
        caller: &Caller,
        certification_id: &str,
        document_id: &str,
    ) -> Result<DocumentContent, ServiceError> {
        caller.require_role(Role::Operator)?;
        let doc = self
            .store
            .certification_document(certification_id, document_id)
            .await?
            .ok_or_else(|| {
                ServiceError::not_found(format!(
                    "certification '{certification_id}' has no document '{document_id}'"
                ))
            })?;
        let size = u64::try_from(doc.size).unwrap_or_default();
        let stream = self
            .files
            .open_verified(
                &doc.object_key,
                size,
                crate::files::Expected::Sha256(doc.sha256),
            )
            .await
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(DocumentContent {
            media_type: doc.media_type.media_type(),
            file_name: doc.file_name,
            size,
            stream,
        })
    }

    /// Approves or rejects a pending certification (operators).
    pub async fn review(
        &self,
        caller: &Caller,
        certification_id: &str,
        decision: ReviewStatus,
        reason: Option<&str>,
    ) -> Result<CertificationDecision, ServiceError> {
        caller.require_role(Role::Operator)?;
        let what = format!("certification '{certification_id}'");
        match self
            .store
            .review_certification(
                certification_id,
                decision,
                reason,
                &caller.account_id,
                now_millis(),
                self.notifications.channels(),
            )
            .await?
        {
            ReviewOutcome::Decided(d) => {
                self.notifications.wake();
                Ok(CertificationDecision {
                    certification_id: d.certification_id,
                    status: d.status,
                    reason: d.reason,
                    enterprise_id: d.enterprise_id,
                })
            }
            ReviewOutcome::NotFound => Err(ServiceError::not_found(format!(
                "no certification '{certification_id}'"
            ))),
            ReviewOutcome::AlreadyReviewed(status) => {
                Err(status.decide(&what, decision).err().map_or_else(
                    || ServiceError::Internal("review outcome inconsistent".to_owned()),
                    Into::into,
                ))
            }
            ReviewOutcome::IdsExhausted => Err(DomainError::InvalidState(
                "all 5-digit enterprise ids are taken".to_owned(),
            )
            .into()),
        }
    }
}
