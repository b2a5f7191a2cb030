//! Issuing and checking licenses (table A.37): the document is `domain::license::License`;
//! here it is watermarked and signed with the operator's key, and a presented one is checked
//! against the keys of `GET /v1/keys`.

use serde_json::Value;

use crate::crypto::{KeyRing, SignatureError};
use crate::domain::license::{
    License, LicenseError, LicenseTerms, PresentedLicense, SIGNATURE_FIELD, Watermark, parse,
};

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
