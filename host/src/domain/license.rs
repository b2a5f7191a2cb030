//! Licenses (table A.37): what they contain, how they are signed and watermarked, and how a
//! presented license is checked.
//!
//! A license is a JSON object with every field of table A.37 plus `confirmID` (the settlement it
//! came from) and `keyId` (the operator key that signed it):
//!
//! - `digital_signature`: base64 Ed25519 signature over the RFC 8785 canonical JSON of the
//!   license without `digital_signature` (so `keyId`, `confirmID` and the watermark are signed
//!   too), by the key `keyId` listed at `GET /v1/keys`.
//! - `digital_watermarking`: the license's fingerprint, bound to its licensee, resource and
//!   number: base64 Ed25519 signature by the same key over the canonical JSON of
//!   `{"purpose": "liutong/license-watermark/v1", "licensesID", "licensee", "registrationID",
//!   "dataID"}`. Ed25519 is deterministic, so the watermark is a stable per-license value that
//!   anyone can check with the public key and nobody but the operator can produce; it is
//!   repeated in every delivery proof for the license.
//! - `license_term`: `{"startData", "endDate"}` as `yyyy-mm-dd HH:MM:SS` in UTC (the annex's
//!   format and spelling); valid from `startData` inclusive to `endDate` exclusive.
//! - `usage_restrictions`: `{"prohibited": [...], "notes"?}` from the publication's terms
//!   (snapshotted at confirmation), by default
//!   `["unlicensed_commercial_use", "redistribution", "illegal_use"]`; `illegal_use` is always
//!   prohibited.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::timefmt::to_standard;
use crate::crypto::{KeyRing, SignatureError};

pub const SIGNATURE_FIELD: &str = "digital_signature";
pub const WATERMARK_FIELD: &str = "digital_watermarking";
pub const WATERMARK_PURPOSE: &str = "liutong/license-watermark/v1";
/// Prohibited uses when the provider published none.
pub const DEFAULT_PROHIBITED: &[&str] =
    &["unlicensed_commercial_use", "redistribution", "illegal_use"];
/// Never licensable, whatever the provider published.
pub const ALWAYS_PROHIBITED: &str = "illegal_use";

/// The restrictions a license carries, from what the provider published (`None`: default).
pub fn usage_restrictions(published: Option<&Value>) -> Value {
    let mut prohibited: Vec<String> = Vec::new();
    let mut notes = None;
    match published {
        Some(Value::Object(map)) => {
            if let Some(Value::Array(items)) = map.get("prohibited") {
                for item in items.iter().filter_map(Value::as_str) {
                    if !prohibited.iter().any(|p| p == item) {
                        prohibited.push(item.to_owned());
                    }
                }
            }
            notes = map.get("notes").and_then(Value::as_str).map(str::to_owned);
        }
        _ => prohibited.extend(DEFAULT_PROHIBITED.iter().map(|s| (*s).to_owned())),
    }
    if !prohibited.iter().any(|p| p == ALWAYS_PROHIBITED) {
        prohibited.push(ALWAYS_PROHIBITED.to_owned());
    }
    let mut out = json!({ "prohibited": prohibited });
    if let Some(n) = notes {
        out["notes"] = Value::String(n);
    }
    out
}

/// The fields a license is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseTerms {
    pub licenses_id: String,
    pub licensor: String,
    pub licensee: String,
    pub registration_id: String,
    pub data_id: String,
    pub resource_url: String,
    pub usage_restrictions: Value,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub confirm_id: String,
}

fn watermark_input(
    licenses_id: &str,
    licensee: &str,
    registration_id: &str,
    data_id: &str,
) -> Value {
    json!({
        "purpose": WATERMARK_PURPOSE,
        "licensesID": licenses_id,
        "licensee": licensee,
        "registrationID": registration_id,
        "dataID": data_id,
    })
}

/// Builds and signs a license.
pub fn issue(keys: &KeyRing, t: &LicenseTerms) -> Result<Value, SignatureError> {
    let (_, watermark) = keys.sign_value(&watermark_input(
        &t.licenses_id,
        &t.licensee,
        &t.registration_id,
        &t.data_id,
    ))?;
    let doc = json!({
        "licensesID": t.licenses_id,
        "licensor": t.licensor,
        "licensee": t.licensee,
        "registrationID": t.registration_id,
        "dataID": t.data_id,
        "resource_url": t.resource_url,
        "digital_watermarking": watermark,
        "usage_restrictions": t.usage_restrictions,
        "license_term": {"startData": to_standard(t.start), "endDate": to_standard(t.end)},
        "confirmID": t.confirm_id,
    });
    let Value::Object(map) = doc else {
        return Err(SignatureError::NotAnObject);
    };
    keys.sign_document(map, SIGNATURE_FIELD).map(Value::Object)
}

/// A license whose signature and watermark check out.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedLicense {
    pub licenses_id: String,
    pub licensee: String,
    pub registration_id: String,
    pub data_id: String,
    pub confirm_id: String,
    pub watermark: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// Why a presented license is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error("/licenses/{0}: is missing or not a string")]
    Malformed(&'static str),
    #[error("/licenses/license_term: {0}")]
    MalformedTerm(String),
    #[error("the license's digital_signature is not valid: {0}")]
    Signature(SignatureError),
    #[error("the license's digital_watermarking does not match its licensee, resource and number")]
    Watermark,
}

fn text<'a>(map: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, LicenseError> {
    map.get(field)
        .and_then(Value::as_str)
        .ok_or(LicenseError::Malformed(field))
}

fn parse_term(text: &str, field: &str) -> Result<OffsetDateTime, LicenseError> {
    super::timefmt::parse_datetime(field, text)
        .map_err(|_| LicenseError::MalformedTerm(format!("{field} is not 'yyyy-mm-dd HH:MM:SS'")))
}

/// Checks a presented license's shape, signature and watermark. Whether it is current, not
/// superseded and the caller's is for the caller to decide.
pub fn verify(keys: &KeyRing, doc: &Value) -> Result<VerifiedLicense, LicenseError> {
    let Value::Object(map) = doc else {
        return Err(LicenseError::Malformed("(root)"));
    };
    let licenses_id = text(map, "licensesID")?;
    let licensee = text(map, "licensee")?;
    let registration_id = text(map, "registrationID")?;
    let data_id = text(map, "dataID")?;
    let confirm_id = text(map, "confirmID")?;
    let watermark = text(map, WATERMARK_FIELD)?;
    let term = map
        .get("license_term")
        .and_then(Value::as_object)
        .ok_or(LicenseError::Malformed("license_term"))?;
    let start = parse_term(text(term, "startData")?, "startData")?;
    let end = parse_term(text(term, "endDate")?, "endDate")?;
    let key_id = keys
        .verify_document(doc, SIGNATURE_FIELD)
        .map_err(LicenseError::Signature)?;
    keys.verify_value(
        &key_id,
        &watermark_input(licenses_id, licensee, registration_id, data_id),
        watermark,
    )
    .map_err(|_| LicenseError::Watermark)?;
    Ok(VerifiedLicense {
        licenses_id: licenses_id.to_owned(),
        licensee: licensee.to_owned(),
        registration_id: registration_id.to_owned(),
        data_id: data_id.to_owned(),
        confirm_id: confirm_id.to_owned(),
        watermark: watermark.to_owned(),
        start,
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> LicenseTerms {
        let start = OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        LicenseTerms {
            licenses_id: "lic_1".into(),
            licensor: "alice".into(),
            licensee: "carol".into(),
            registration_id: "reg_1".into(),
            data_id: "ct".into(),
            resource_url: "https://x/y".into(),
            usage_restrictions: usage_restrictions(None),
            start,
            end: start + time::Duration::days(365),
            confirm_id: "cfm_1".into(),
        }
    }

    #[test]
    fn issued_licenses_verify_and_forgeries_do_not() {
        let keys = KeyRing::ephemeral().expect("ring");
        let doc = issue(&keys, &terms()).expect("issue");
        for field in [
            "licensesID",
            "licensor",
            "licensee",
            "registrationID",
            "dataID",
            "resource_url",
            "digital_watermarking",
            "digital_signature",
            "usage_restrictions",
            "license_term",
        ] {
            assert!(doc.get(field).is_some(), "license lacks {field}");
        }
        let v = verify(&keys, &doc).expect("verifies");
        assert_eq!(v.licensee, "carol");
        assert_eq!(v.end - v.start, time::Duration::days(365));

        let mut forged = doc.clone();
        forged["licensee"] = json!("mallory");
        assert!(matches!(
            verify(&keys, &forged),
            Err(LicenseError::Signature(SignatureError::Invalid))
        ));
        let mut longer = doc.clone();
        longer["license_term"]["endDate"] = json!("2099-01-01 00:00:00");
        assert!(verify(&keys, &longer).is_err());
        let mut no_term = doc.clone();
        no_term["license_term"] = json!("forever");
        assert_eq!(
            verify(&keys, &no_term),
            Err(LicenseError::Malformed("license_term"))
        );
        // A license re-signed by someone else's key is refused.
        let other = KeyRing::ephemeral().expect("ring");
        assert!(verify(&keys, &issue(&other, &terms()).expect("issue")).is_err());
    }

    #[test]
    fn restrictions_default_and_always_forbid_illegal_use() {
        assert_eq!(
            usage_restrictions(None),
            json!({"prohibited": ["unlicensed_commercial_use", "redistribution", "illegal_use"]})
        );
        assert_eq!(
            usage_restrictions(Some(
                &json!({"prohibited": ["redistribution"], "notes": "n"})
            )),
            json!({"prohibited": ["redistribution", "illegal_use"], "notes": "n"})
        );
    }
}
