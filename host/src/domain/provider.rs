//! Compute provider access (compute-provider-access §1): an enterprise's real-name
//! certification, its supporting documents and the 5-digit enterprise id approval assigns.
//!
//! The rules here are pure: the check character of a unified social credit code (GB 32100-2015),
//! what a supporting document is (by its content, not its name), the review's state machine.

use serde::{Deserialize, Serialize};

use super::DomainError;

/// The largest supporting document accepted: 10 MiB.
pub const MAX_DOCUMENT_BYTES: u64 = 10 * 1024 * 1024;
/// At most this many documents per submission.
pub const MAX_DOCUMENTS: usize = 10;
/// Enterprise ids are 5 digits: 10001 … 99999 (the counter starts at 10000 and only grows, so an
/// id is never given twice and never starts with 0).
pub const MAX_ENTERPRISE_NUMBER: i64 = 99_999;

/// The JSON Schema format of a credit code (`schemas/provider.certification.json`).
pub const CREDIT_CODE_FORMAT: &str = "credit-code";

/// The 31 characters of a unified social credit code (GB 32100-2015, table 1): digits and the
/// capital letters without I, O, Z, S and V.
const CREDIT_CODE_CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// The weights of positions 1-17: 3^(i) mod 31.
const CREDIT_CODE_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn credit_code_value(c: u8) -> Option<u32> {
    CREDIT_CODE_CHARSET
        .iter()
        .position(|&x| x == c)
        .and_then(|p| u32::try_from(p).ok())
}

/// The check character (position 18) of the first 17 characters of a credit code, or `None`
/// when one of them is outside the code's character set.
pub fn credit_code_check_char(first17: &str) -> Option<char> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (c, w) in bytes.iter().zip(CREDIT_CODE_WEIGHTS) {
        sum += credit_code_value(*c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    CREDIT_CODE_CHARSET
        .get(usize::try_from(check).ok()?)
        .map(|&b| char::from(b))
}

/// Whether `code` is a well-formed unified social credit code: 18 characters of the code's set,
/// the registration authority (position 1) and organisation type (position 2), the six digits of
/// the administrative division (positions 3-8), and a check character (position 18) that holds.
pub fn is_credit_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    bytes.len() == 18
        && bytes.iter().all(|&c| credit_code_value(c).is_some())
        && bytes[2..8].iter().all(u8::is_ascii_digit)
        && credit_code_check_char(&code[..17]) == Some(char::from(bytes[17]))
}

pub fn check_credit_code(field: &str, code: &str) -> Result<(), DomainError> {
    if is_credit_code(code) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            "is not a unified social credit code: 18 characters of 0-9 and A-Y without I, O, Z, \
             S, V, digits in positions 3-8, and a check character that holds (GB 32100)",
        ))
    }
}

/// What a supporting document is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentType {
    Pdf,
    Jpeg,
    Png,
}

/// How many leading bytes `DocumentType::sniff` needs.
pub const SNIFF_BYTES: usize = 8;

impl DocumentType {
    /// The type of a document from its first bytes (at least `SNIFF_BYTES` of them, or the whole
    /// document if shorter); `None` for anything that is not a PDF, JPEG or PNG, whatever its
    /// name or declared type says.
    pub fn sniff(head: &[u8]) -> Option<DocumentType> {
        if head.starts_with(b"%PDF-") {
            Some(DocumentType::Pdf)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(DocumentType::Jpeg)
        } else if head.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
            Some(DocumentType::Png)
        } else {
            None
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            DocumentType::Pdf => "application/pdf",
            DocumentType::Jpeg => "image/jpeg",
            DocumentType::Png => "image/png",
        }
    }

    pub fn parse(media_type: &str) -> Option<DocumentType> {
        match media_type {
            "application/pdf" => Some(DocumentType::Pdf),
            "image/jpeg" => Some(DocumentType::Jpeg),
            "image/png" => Some(DocumentType::Png),
            _ => None,
        }
    }
}

/// Where a certification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReviewStatus {
    Pending,
    Approved,
    Rejected,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "PENDING",
            ReviewStatus::Approved => "APPROVED",
            ReviewStatus::Rejected => "REJECTED",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewStatus> {
        match s {
            "PENDING" => Some(ReviewStatus::Pending),
            "APPROVED" => Some(ReviewStatus::Approved),
            "REJECTED" => Some(ReviewStatus::Rejected),
            _ => None,
        }
    }

    /// An operator decides only what is pending.
    pub fn decide(self, what: &str, to: ReviewStatus) -> Result<ReviewStatus, DomainError> {
        match self {
            ReviewStatus::Pending => Ok(to),
            done => Err(DomainError::InvalidState(format!(
                "{what} was already reviewed ({})",
                done.as_str()
            ))),
        }
    }
}

/// Whether an account whose latest submission is `latest` may submit (again): the first time, or
/// after a rejection; not while one is under review, nor once certified.
pub fn may_submit(latest: Option<ReviewStatus>) -> Result<(), DomainError> {
    match latest {
        None | Some(ReviewStatus::Rejected) => Ok(()),
        Some(ReviewStatus::Pending) => Err(DomainError::InvalidState(
            "a certification is under review; wait for its outcome".to_owned(),
        )),
        Some(ReviewStatus::Approved) => Err(DomainError::InvalidState(
            "the enterprise is certified already".to_owned(),
        )),
    }
}

/// The 5-digit enterprise id of the `n`th value of the enterprise counter.
pub fn enterprise_id(n: i64) -> Result<String, DomainError> {
    if (10_001..=MAX_ENTERPRISE_NUMBER).contains(&n) {
        Ok(format!("{n:05}"))
    } else {
        Err(DomainError::InvalidState(
            "all 5-digit enterprise ids are taken".to_owned(),
        ))
    }
}

/// The `info` part of `POST /v1/provider/certification` (schemas/provider.certification.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificationInfo {
    pub enterprise_name: String,
    pub credit_code: String,
    pub legal_representative: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub contact_email: String,
}

/// A stored submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certification {
    pub id: String,
    pub account_id: super::AccountId,
    pub username: String,
    pub info: CertificationInfo,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub submitted_at: i64,
    pub reviewed_at: Option<i64>,
    pub documents: Vec<CertificationDocument>,
}

/// A stored supporting document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificationDocument {
    pub id: String,
    pub certification_id: String,
    pub ordinal: i64,
    pub file_name: String,
    pub media_type: DocumentType,
    pub size: i64,
    pub sha256: String,
    pub object_key: String,
}

/// The answer to a submission.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificationCreated {
    pub certification_id: String,
    pub status: ReviewStatus,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentView {
    pub document_id: String,
    pub file_name: String,
    pub media_type: &'static str,
    pub size: i64,
    pub sha256: String,
}

/// One submission as its enterprise and the operators see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificationView {
    pub certification_id: String,
    pub username: String,
    #[serde(flatten)]
    pub info: CertificationInfo,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub submitted_at: String,
    pub reviewed_at: Option<String>,
    pub documents: Vec<DocumentView>,
}

/// `GET /v1/provider/certification`: where the enterprise stands, and every submission, newest
/// first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificationStatus {
    /// The latest submission's status; `null` before the first.
    pub status: Option<ReviewStatus>,
    /// The latest submission's rejection reason.
    pub reason: Option<String>,
    /// Once approved.
    pub enterprise_id: Option<String>,
    pub certification_id: Option<String>,
    pub history: Vec<CertificationView>,
}

/// `GET /v1/admin/certifications` query.
#[derive(Debug, Clone, Deserialize)]
pub struct CertificationsQuery {
    pub status: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificationsPage {
    pub certifications: Vec<CertificationView>,
}

/// `POST /v1/admin/certifications/{id}/reject` body.
#[derive(Debug, Clone, Deserialize)]
pub struct RejectRequest {
    pub reason: String,
}

/// The outcome of a review.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificationDecision {
    pub certification_id: String,
    pub status: ReviewStatus,
    pub reason: Option<String>,
    pub enterprise_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_codes() {
        // Published examples of real codes.
        for code in [
            "91350100M000100Y43",
            "91440300MA5ELPB95W",
            "91110000802100433B",
        ] {
            assert!(
                is_credit_code(code),
                "{code}: check {:?}",
                credit_code_check_char(&code[..17])
            );
        }
        // One character changed anywhere breaks the check.
        let good = "91350100M000100Y43";
        for i in 0..18 {
            let mut b = good.as_bytes().to_vec();
            b[i] = if b[i] == b'1' { b'2' } else { b'1' };
            let changed = String::from_utf8(b).expect("ascii");
            assert!(!is_credit_code(&changed), "{changed}");
        }
        for bad in [
            "",
            "91350100M000100Y4",
            "91350100M000100Y43X",
            "9135010OM000100Y43",
        ] {
            assert!(!is_credit_code(bad), "{bad}");
        }
    }

    #[test]
    fn documents_by_content() {
        assert_eq!(DocumentType::sniff(b"%PDF-1.7\n"), Some(DocumentType::Pdf));
        assert_eq!(
            DocumentType::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Some(DocumentType::Jpeg)
        );
        assert_eq!(
            DocumentType::sniff(b"\x89PNG\r\n\x1a\n\0\0"),
            Some(DocumentType::Png)
        );
        assert_eq!(DocumentType::sniff(b"GIF89a"), None);
        assert_eq!(DocumentType::sniff(b"MZ\x90\0"), None);
        assert_eq!(DocumentType::sniff(b""), None);
    }

    #[test]
    fn review_lifecycle() {
        assert!(may_submit(None).is_ok());
        assert!(may_submit(Some(ReviewStatus::Rejected)).is_ok());
        assert!(may_submit(Some(ReviewStatus::Pending)).is_err());
        assert!(may_submit(Some(ReviewStatus::Approved)).is_err());
        assert!(
            ReviewStatus::Pending
                .decide("c", ReviewStatus::Approved)
                .is_ok()
        );
        assert!(
            ReviewStatus::Rejected
                .decide("c", ReviewStatus::Approved)
                .is_err()
        );
        assert_eq!(enterprise_id(10_001).expect("id"), "10001");
        assert!(enterprise_id(100_000).is_err());
    }
}
