//! Issuing and checking licenses (table A.37): the document is `domain::license::License`;
//! here it is watermarked and signed with the operator's key, and a presented one is checked
//! against the keys of `GET /v1/keys`.

use serde_json::Value;

use super::ServiceError;
use crate::crypto::{KeyRing, SignatureError};
use crate::domain::license::{
    License, LicenseError, LicenseTerms, PresentedLicense, SIGNATURE_FIELD, Watermark, parse,
};
use crate::domain::timefmt::to_rfc3339;
use crate::domain::trading::LicenseRecord;
use crate::domain::{Caller, DomainError};
use crate::store::Store;

/// Builds, watermarks and signs a license.
pub fn issue(keys: &KeyRing, t: &LicenseTerms) -> Result<Value, SignatureError> {
    let (_, watermark) = keys.sign_value(&Watermark::new(
        &t.licenses_id,
        &t.licensee,
        &t.registration_id,
        &t.data_id,
    ))?;
    keys.sign(&License::new(t, watermark), SIGNATURE_FIELD)
}

/// Checks a presented license's shape, signature and watermark. Whether it is current, not
/// superseded and the caller's is for the caller to decide.
pub fn verify(keys: &KeyRing, doc: &Value) -> Result<PresentedLicense, LicenseError> {
    let presented = parse(doc)?;
    let key_id = keys
        .verify_document(doc, SIGNATURE_FIELD)
        .map_err(|e| LicenseError::Signature(e.to_string()))?;
    keys.verify_value(
        &key_id,
        &Watermark::new(
            &presented.licenses_id,
            &presented.licensee,
            &presented.registration_id,
            &presented.data_id,
        ),
        &presented.watermark,
    )
    .map_err(|_| LicenseError::Watermark)?;
    Ok(presented)
}

/// Checks a license a client presents (A.3.5, A.3.7): its shape (`400`), signature and
/// watermark (`403`); when `licensee` is given, that it was issued to that account (`403`);
/// that it is exactly a license this server issued, not superseded, and in its term at `now`
/// (milliseconds; `403` otherwise). Whether its confirmation fits the purpose is the caller's
/// to check.
pub async fn present(
    store: &Store,
    keys: &KeyRing,
    doc: &Value,
    licensee: Option<&Caller>,
    now: i64,
) -> Result<(PresentedLicense, LicenseRecord), ServiceError> {
    let verified = verify(keys, doc).map_err(|e| match e {
        LicenseError::Malformed(_) | LicenseError::MalformedTerm(_) => {
            DomainError::invalid("/licenses", e.to_string())
        }
        LicenseError::Signature(_) | LicenseError::Watermark => {
            DomainError::Forbidden(e.to_string())
        }
    })?;
    if let Some(caller) = licensee
        && verified.licensee != caller.username
    {
        return Err(DomainError::Forbidden(format!(
            "this license was issued to '{}', not to '{}'",
            verified.licensee, caller.username
        ))
        .into());
    }
    let record = store
        .license(&verified.licenses_id)
        .await?
        .filter(|r| {
            r.document == *doc && licensee.is_none_or(|c| r.licensee_account_id == c.account_id)
        })
        .ok_or_else(|| {
            DomainError::Forbidden(format!(
                "license '{}' is not one this server issued",
                verified.licenses_id
            ))
        })?;
    if let Some(newer) = &record.superseded_by {
        return Err(DomainError::Forbidden(format!(
            "license '{}' was superseded by '{newer}'; get the current license from \
             GET /querySettlement",
            record.id
        ))
        .into());
    }
    let now_s = now.div_euclid(1000);
    if now_s < verified.start.unix_timestamp() {
        return Err(DomainError::Forbidden(format!(
            "license '{}' is not valid before {}",
            record.id,
            to_rfc3339(verified.start)
        ))
        .into());
    }
    if now_s >= verified.end.unix_timestamp() {
        return Err(DomainError::Forbidden(format!(
            "license '{}' expired at {}",
            record.id,
            to_rfc3339(verified.end)
        ))
        .into());
    }
    Ok((verified, record))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::domain::license::usage_restrictions;

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
            Err(LicenseError::Signature(m)) if m == SignatureError::Invalid.to_string()
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
}
