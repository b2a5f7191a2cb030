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

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::timefmt::{parse_datetime, to_standard};

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

/// What a license's watermark signs: its number bound to its licensee and resource.
#[derive(Debug, Clone, Serialize)]
pub struct Watermark<'a> {
    pub purpose: &'static str,
    #[serde(rename = "licensesID")]
    pub licenses_id: &'a str,
    pub licensee: &'a str,
    #[serde(rename = "registrationID")]
    pub registration_id: &'a str,
    #[serde(rename = "dataID")]
    pub data_id: &'a str,
}

impl<'a> Watermark<'a> {
    pub fn new(
        licenses_id: &'a str,
        licensee: &'a str,
        registration_id: &'a str,
        data_id: &'a str,
    ) -> Self {
        Watermark {
            purpose: WATERMARK_PURPOSE,
            licenses_id,
            licensee,
            registration_id,
            data_id,
        }
    }
}

/// `license_term` of table A.37, in the annex's spelling (`startData`).
#[derive(Debug, Clone, Serialize)]
pub struct LicenseTerm {
    #[serde(rename = "startData")]
    pub start: String,
    #[serde(rename = "endDate")]
    pub end: String,
}

/// A license (table A.37, plus `confirmID`) before it is signed; the signature adds `keyId` and
/// `digital_signature`.
#[derive(Debug, Clone, Serialize)]
pub struct License<'a> {
    #[serde(rename = "licensesID")]
    pub licenses_id: &'a str,
    pub licensor: &'a str,
    pub licensee: &'a str,
    #[serde(rename = "registrationID")]
    pub registration_id: &'a str,
    #[serde(rename = "dataID")]
    pub data_id: &'a str,
    pub resource_url: &'a str,
    pub digital_watermarking: String,
    pub usage_restrictions: &'a Value,
    pub license_term: LicenseTerm,
    #[serde(rename = "confirmID")]
    pub confirm_id: &'a str,
}

impl<'a> License<'a> {
    /// The license of `terms`, carrying its `watermark` (a signature of [`Watermark`]).
    pub fn new(t: &'a LicenseTerms, watermark: String) -> Self {
        License {
            licenses_id: &t.licenses_id,
            licensor: &t.licensor,
            licensee: &t.licensee,
            registration_id: &t.registration_id,
            data_id: &t.data_id,
            resource_url: &t.resource_url,
            digital_watermarking: watermark,
            usage_restrictions: &t.usage_restrictions,
            license_term: LicenseTerm {
                start: to_standard(t.start),
                end: to_standard(t.end),
            },
            confirm_id: &t.confirm_id,
        }
    }
}

/// The fields of a presented license. `parse` only reads them; `services::licensing::verify`
/// also checks the signature and the watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct PresentedLicense {
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
    Signature(String),
    #[error("the license's digital_watermarking does not match its licensee, resource and number")]
    Watermark,
}

fn text<'a>(map: &'a Map<String, Value>, field: &'static str) -> Result<&'a str, LicenseError> {
    map.get(field)
        .and_then(Value::as_str)
        .ok_or(LicenseError::Malformed(field))
}

fn parse_term(text: &str, field: &str) -> Result<OffsetDateTime, LicenseError> {
    parse_datetime(field, text)
        .map_err(|_| LicenseError::MalformedTerm(format!("{field} is not 'yyyy-mm-dd HH:MM:SS'")))
}

/// Reads a presented license's fields, checking its shape (not its signature).
pub fn parse(doc: &Value) -> Result<PresentedLicense, LicenseError> {
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
    Ok(PresentedLicense {
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
