//! The platform side of the identifier gateway: the published identifier fields agree with the
//! JSON Schema published beside them, and a code is parsed back into its parts, its check digit
//! verified.

use serde_json::json;

use crate::on_both_backends;
use crate::provider::certified;
use crate::support::TestApp;

async fn fields_are_published_with_their_schema(app: TestApp) {
    let token = app.user("acme").await;
    let resp = app.get("/v1/gateway/fields", Some(&token), &[]).await;
    let data = resp.ok();
    let fields = data["fields"].as_array().expect("fields");
    let schema = &data["schema"];
    let properties = schema["properties"].as_object().expect("properties");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(fields.len(), properties.len());
    for f in fields {
        let name = f["name"].as_str().expect("name");
        let p = properties
            .get(name)
            .unwrap_or_else(|| panic!("{name} not in the schema"));
        assert_eq!(
            f["required"].as_bool(),
            Some(required.contains(&name)),
            "{name}"
        );
        if f["type"] == "enum" {
            assert_eq!(f["enum"], p["enum"], "{name}");
        }
    }
    for name in [
        "code",
        "resourceClass",
        "resourceType",
        "province",
        "city",
        "zone",
        "cpuCores",
        "cpuModel",
        "gpuModel",
        "gpuCount",
        "memoryGiB",
        "storageGiB",
        "bandwidthMbps",
        "status",
        "unitPrice",
        "observedAt",
    ] {
        assert!(properties.contains_key(name), "{name}");
    }
    assert_eq!(
        properties["resourceClass"]["enum"],
        json!(["general", "ai", "supercomputing"])
    );
    app.get("/v1/gateway/fields", None, &[])
        .await
        .expect_error(401, "UNAUTHENTICATED");
}

async fn codes_are_parsed_and_their_check_digit_verified(app: TestApp) {
    let operator = app.operator().await;
    let (acme, enterprise_id) = certified(&app, "acme").await;
    let applied = app
        .post(
            "/v1/provider/identifiers",
            Some(&acme),
            &json!({"province": "510000", "city": "510100", "zone": "3", "industry": "65"}),
        )
        .await;
    let id = applied.ok()["applicationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let approved = app
        .post(
            &format!("/v1/admin/identifier-applications/{id}/approve"),
            Some(&operator),
            &json!({}),
        )
        .await;
    let code = approved.ok()["code"].as_str().expect("code").to_owned();
    let parsed = app
        .get(&format!("/v1/gateway/codes/{code}"), Some(&acme), &[])
        .await;
    assert_eq!(
        parsed.ok(),
        &json!({
            "code": code,
            "enterpriseId": enterprise_id,
            "province": "510000",
            "city": "510100",
            "zone": "3",
            "industry": "65",
            "serial": "000",
            "checkDigitValid": true
        })
    );
    // Any one digit changed fails the check.
    for i in 0..16 {
        let mut digits = code.clone().into_bytes();
        digits[i] = if digits[i] == b'9' {
            b'0'
        } else {
            digits[i] + 1
        };
        let changed = String::from_utf8(digits).expect("digits");
        let resp = app
            .get(&format!("/v1/gateway/codes/{changed}"), Some(&acme), &[])
            .await;
        assert_eq!(resp.ok()["checkDigitValid"], false, "{changed}");
    }
    app.get("/v1/gateway/codes/123456789012345", Some(&acme), &[])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    app.get("/v1/gateway/codes/12345678901234X6", Some(&acme), &[])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
}

on_both_backends!(
    fields_are_published_with_their_schema,
    codes_are_parsed_and_their_check_digit_verified,
);
