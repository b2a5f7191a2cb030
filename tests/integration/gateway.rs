//! The platform side of the identifier gateway: the published identifier fields agree with the
//! JSON Schema published beside them, and a code is parsed back into its parts, its check digit
//! verified.

use ed25519_dalek::SigningKey;
use liutong::crypto::batch;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::provider::certified;
use crate::support::{Resp, TestApp};

/// Applies for a code in `city` (of Guangdong) and zone, and has an operator approve it.
pub async fn issue_code(app: &TestApp, token: &str, city: &str, zone: &str) -> String {
    let operator = app.operator().await;
    let applied = app
        .post(
            "/v1/provider/identifiers",
            Some(token),
            &json!({"province": "440000", "city": city, "zone": zone, "industry": "65"}),
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
    approved.ok()["code"].as_str().expect("code").to_owned()
}

pub async fn put_json(app: &TestApp, path: &str, token: &str, body: &Value) -> Resp {
    app.send(
        app.client
            .put(app.url(path))
            .header("X-Auth-Token", token)
            .json(body),
    )
    .await
}

/// Registers a new gateway key for the enterprise behind `token`.
pub async fn register_key(app: &TestApp, token: &str) -> SigningKey {
    let key = batch::generate().expect("key");
    let resp = put_json(
        app,
        "/v1/provider/gateway-key",
        token,
        &json!({"publicKey": batch::encode_public_key(&key.verifying_key())}),
    )
    .await;
    assert_eq!(
        resp.ok()["keyId"].as_str(),
        Some(batch::key_id(&key.verifying_key()).as_str())
    );
    key
}

/// Sends `identifiers` as one batch signed with `key`.
pub async fn send_batch(app: &TestApp, key: &SigningKey, identifiers: &[Value]) -> Resp {
    let body = serde_json::to_vec(&json!({ "identifiers": identifiers })).expect("json");
    app.send(
        app.client
            .post(app.url("/v1/gateway/identifiers"))
            .header("content-type", "application/json")
            .header(batch::KEY_ID_HEADER, batch::key_id(&key.verifying_key()))
            .header(batch::SIGNATURE_HEADER, batch::sign(key, &body))
            .body(body),
    )
    .await
}

/// A valid identifier of `code` (whose region it repeats) observed at `observed_at`.
pub fn identifier(code: &str, observed_at: &str) -> Value {
    let parsed = liutong::domain::identifiers::parse(code).expect("code");
    json!({
        "code": code,
        "resourceClass": "ai",
        "resourceType": "cloud_host",
        "province": parsed.province,
        "city": parsed.city,
        "zone": parsed.zone,
        "cpuCores": 8,
        "cpuModel": "Kunpeng 920",
        "gpuModel": "Ascend 910B",
        "gpuCount": 2,
        "memoryGiB": 64,
        "storageGiB": 500,
        "bandwidthMbps": 1000,
        "status": "running",
        "unitPrice": 12.5,
        "observedAt": observed_at
    })
}

fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

fn rejected_of(data: &Value) -> Vec<(u64, String, String)> {
    data["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().expect("index"),
                r["path"].as_str().expect("path").to_owned(),
                r["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

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

async fn batches_are_signed_checked_per_item_and_idempotent(app: TestApp) {
    let (acme, acme_id) = certified(&app, "acme").await;
    let (beta, _) = certified(&app, "beta").await;
    let code1 = issue_code(&app, &acme, "440300", "1").await;
    let code2 = issue_code(&app, &acme, "440300", "1").await;
    let beta_code = issue_code(&app, &beta, "440300", "1").await;
    // Registering needs a certified enterprise and a well-formed key.
    let stranger = app.user("stranger").await;
    put_json(
        &app,
        "/v1/provider/gateway-key",
        &stranger,
        &json!({"publicKey": batch::encode_public_key(&batch::generate().expect("key").verifying_key())}),
    )
    .await
    .expect_error(409, "INVALID_STATE");
    put_json(
        &app,
        "/v1/provider/gateway-key",
        &acme,
        &json!({"publicKey": "not a key"}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    let key = register_key(&app, &acme).await;
    let t0 = "2026-11-30T08:00:00Z";
    let good = vec![identifier(&code1, t0), identifier(&code2, t0)];

    // Signatures: none, an unregistered key, a signature over other bytes.
    let body = serde_json::to_vec(&json!({ "identifiers": good })).expect("json");
    app.send(
        app.client
            .post(app.url("/v1/gateway/identifiers"))
            .body(body.clone()),
    )
    .await
    .expect_error(401, "UNAUTHENTICATED");
    send_batch(&app, &batch::generate().expect("key"), &good)
        .await
        .expect_error(401, "UNAUTHENTICATED");
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    app.send(
        app.client
            .post(app.url("/v1/gateway/identifiers"))
            .header(batch::KEY_ID_HEADER, batch::key_id(&key.verifying_key()))
            .header(batch::SIGNATURE_HEADER, batch::sign(&key, &body))
            .body(tampered),
    )
    .await
    .expect_error(401, "UNAUTHENTICATED");
    // A batch signed with beta's key cannot report acme's codes (nor anything stored).
    let beta_key = register_key(&app, &beta).await;
    let resp = send_batch(&app, &beta_key, &good).await;
    assert_eq!(resp.ok()["accepted"], 0);
    assert_eq!(
        rejected_of(resp.ok()),
        vec![
            (
                0,
                "/identifiers/0/code".to_owned(),
                "FOREIGN_CODE".to_owned()
            ),
            (
                1,
                "/identifiers/1/code".to_owned(),
                "FOREIGN_CODE".to_owned()
            ),
        ]
    );

    // One batch: two good items, and one of each way to be refused.
    let parsed = liutong::domain::identifiers::parse(&code1).expect("parse");
    let prefix = &code1[..12];
    let never_issued = liutong::domain::identifiers::compose(prefix, 999).expect("code");
    let mut wrong_check = code2.clone().into_bytes();
    wrong_check[15] = if wrong_check[15] == b'9' {
        b'0'
    } else {
        wrong_check[15] + 1
    };
    let wrong_check = String::from_utf8(wrong_check).expect("digits");
    let batch_items = vec![
        good[0].clone(),
        with(identifier(&code2, t0), "memoryGiB", json!("lots")),
        identifier(&beta_code, t0),
        identifier(&never_issued, t0),
        identifier(&wrong_check, t0),
        with(identifier(&code2, t0), "city", json!("440100")),
        {
            let mut v = identifier(&code2, t0);
            v.as_object_mut().expect("object").remove("status");
            v
        },
        good[1].clone(),
    ];
    assert_eq!(parsed.enterprise_id, acme_id);
    let resp = send_batch(&app, &key, &batch_items).await;
    let data = resp.ok();
    assert_eq!(data["accepted"], 2, "{data}");
    assert_eq!(data["duplicates"], 0, "{data}");
    assert_eq!(
        rejected_of(data),
        vec![
            (
                1,
                "/identifiers/1/memoryGiB".to_owned(),
                "SCHEMA".to_owned()
            ),
            (
                2,
                "/identifiers/2/code".to_owned(),
                "FOREIGN_CODE".to_owned()
            ),
            (
                3,
                "/identifiers/3/code".to_owned(),
                "UNKNOWN_CODE".to_owned()
            ),
            (
                4,
                "/identifiers/4/code".to_owned(),
                "CHECK_DIGIT".to_owned()
            ),
            (
                5,
                "/identifiers/5/city".to_owned(),
                "CODE_MISMATCH".to_owned()
            ),
            (6, "/identifiers/6/status".to_owned(), "SCHEMA".to_owned()),
        ]
    );
    // The same batch again doubles nothing; a batch with an item twice stores it once.
    let again = send_batch(&app, &key, &batch_items).await;
    assert_eq!(again.ok()["accepted"], 0);
    assert_eq!(again.ok()["duplicates"], 2);
    let t1 = "2026-11-30T09:00:00+08:00"; // 01:00Z: earlier than t0
    let twice = vec![
        with(identifier(&code1, t1), "status", json!("idle")),
        with(identifier(&code1, t1), "status", json!("idle")),
    ];
    let resp = send_batch(&app, &key, &twice).await;
    assert_eq!(resp.ok()["accepted"], 1);
    assert_eq!(resp.ok()["duplicates"], 1);
    let counts = app
        .store
        .gateway_observation_counts()
        .await
        .expect("counts");
    assert_eq!(counts.get(&code1), Some(&2));
    assert_eq!(counts.get(&code2), Some(&1));
    assert_eq!(counts.len(), 2);
    // The current state is the latest observation, whatever order they arrived in.
    let operator = app.operator().await;
    let listed = app
        .get("/v1/gateway/identifiers", Some(&operator), &[])
        .await;
    let items = listed.ok()["identifiers"].as_array().expect("list").clone();
    assert_eq!(items.len(), 2);
    let first = items
        .iter()
        .find(|i| i["code"] == code1.as_str())
        .expect("code1");
    assert_eq!(first["status"], "running");
    assert_eq!(first["observedAt"], t0);
    assert_eq!(first["memoryGiB"], 64.0);
    assert_eq!(first["unitPrice"], 12.5);
    assert_eq!(first["active"], true);

    // Rotation: the new key verifies, the old one no longer does.
    let rotated = register_key(&app, &acme).await;
    send_batch(&app, &key, &good)
        .await
        .expect_error(401, "UNAUTHENTICATED");
    assert_eq!(
        send_batch(&app, &rotated, &good).await.ok()["duplicates"],
        2
    );
    // A key is one enterprise's.
    put_json(
        &app,
        "/v1/provider/gateway-key",
        &beta,
        &json!({"publicKey": batch::encode_public_key(&rotated.verifying_key())}),
    )
    .await
    .expect_error(409, "CONFLICT");
    // The envelope of a batch: at most 500 items, at least one.
    let many: Vec<Value> = (0..501).map(|_| good[0].clone()).collect();
    send_batch(&app, &rotated, &many)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    send_batch(&app, &rotated, &[])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
}

/// What statistics should say, computed from the identifiers themselves.
fn expected_groups(items: &[Value], key: &str) -> Value {
    let mut groups: std::collections::BTreeMap<String, (i64, i64, i64, f64, f64)> =
        Default::default();
    for i in items {
        let g = groups
            .entry(i[key].as_str().expect("key").to_owned())
            .or_default();
        g.0 += 1;
        g.1 += i["cpuCores"].as_i64().unwrap_or_default();
        g.2 += i["gpuCount"].as_i64().unwrap_or_default();
        g.3 += i["memoryGiB"].as_f64().unwrap_or_default();
        g.4 += i["storageGiB"].as_f64().unwrap_or_default();
    }
    Value::Array(
        groups
            .into_iter()
            .map(|(k, g)| {
                json!({"key": k, "count": g.0, "cpuCores": g.1, "gpuCount": g.2,
                       "memoryGiB": g.3, "storageGiB": g.4})
            })
            .collect(),
    )
}

async fn identifiers_are_queried_counted_and_managed(app: TestApp) {
    let (acme, acme_id) = certified(&app, "acme").await;
    let (beta, beta_id) = certified(&app, "beta").await;
    let operator = app.operator().await;
    let sz1 = issue_code(&app, &acme, "440300", "1").await;
    let sz2 = issue_code(&app, &acme, "440300", "2").await;
    let gz = issue_code(&app, &acme, "440100", "1").await;
    let other = issue_code(&app, &beta, "440100", "1").await;
    let acme_key = register_key(&app, &acme).await;
    let beta_key = register_key(&app, &beta).await;
    let acme_items = vec![
        identifier(&sz1, "2026-11-30T01:00:00Z"),
        with(
            with(
                identifier(&sz2, "2026-11-30T02:00:00Z"),
                "resourceType",
                json!("bare_metal"),
            ),
            "status",
            json!("idle"),
        ),
        with(
            with(
                identifier(&gz, "2026-11-30T03:00:00Z"),
                "resourceClass",
                json!("general"),
            ),
            "memoryGiB",
            json!(128.5),
        ),
    ];
    let beta_items = vec![with(
        identifier(&other, "2026-11-30T04:00:00Z"),
        "gpuCount",
        json!(8),
    )];
    assert_eq!(
        send_batch(&app, &acme_key, &acme_items).await.ok()["accepted"],
        3
    );
    assert_eq!(
        send_batch(&app, &beta_key, &beta_items).await.ok()["accepted"],
        1
    );
    let all: Vec<Value> = acme_items.iter().chain(&beta_items).cloned().collect();

    let codes = |resp: &Resp| -> Vec<String> {
        resp.ok()["identifiers"]
            .as_array()
            .expect("identifiers")
            .iter()
            .map(|i| i["code"].as_str().expect("code").to_owned())
            .collect()
    };
    // Newest observation first; every filter narrows.
    let q = |params: &'static [(&'static str, &'static str)]| {
        let app = &app;
        let operator = operator.clone();
        async move {
            app.get("/v1/gateway/identifiers", Some(&operator), params)
                .await
        }
    };
    assert_eq!(
        codes(&q(&[]).await),
        vec![other.clone(), gz.clone(), sz2.clone(), sz1.clone()]
    );
    assert_eq!(
        codes(&q(&[("city", "440300")]).await),
        vec![sz2.clone(), sz1.clone()]
    );
    assert_eq!(codes(&q(&[("province", "440000")]).await).len(), 4);
    assert_eq!(
        codes(&q(&[("type", "bare_metal")]).await),
        vec![sz2.clone()]
    );
    assert_eq!(codes(&q(&[("class", "general")]).await), vec![gz.clone()]);
    assert_eq!(codes(&q(&[("status", "idle")]).await), vec![sz2.clone()]);
    assert_eq!(
        codes(
            &q(&[
                ("from", "2026-11-30T02:00:00Z"),
                ("to", "2026-11-30T04:00:00Z")
            ])
            .await
        ),
        vec![gz.clone(), sz2.clone()]
    );
    assert_eq!(
        codes(&q(&[("limit", "2"), ("offset", "1")]).await),
        vec![gz.clone(), sz2.clone()]
    );
    let by_enterprise = app
        .get(
            "/v1/gateway/identifiers",
            Some(&operator),
            &[("enterprise", beta_id.as_str())],
        )
        .await;
    assert_eq!(codes(&by_enterprise), vec![other.clone()]);
    q(&[("type", "mainframe")])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    q(&[("from", "yesterday")])
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    // An enterprise sees its own identifiers only.
    let mine = app.get("/v1/gateway/identifiers", Some(&acme), &[]).await;
    assert_eq!(codes(&mine), vec![gz.clone(), sz2.clone(), sz1.clone()]);
    app.get(
        "/v1/gateway/identifiers",
        Some(&acme),
        &[("enterprise", beta_id.as_str())],
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let own = app
        .get(
            "/v1/gateway/identifiers",
            Some(&acme),
            &[("enterprise", acme_id.as_str())],
        )
        .await;
    assert_eq!(codes(&own).len(), 3);

    // Statistics agree with what was reported, by every dimension.
    for (group_by, key) in [
        ("province", "province"),
        ("city", "city"),
        ("type", "resourceType"),
        ("class", "resourceClass"),
        ("status", "status"),
    ] {
        let stats = app
            .get(
                "/v1/gateway/statistics",
                Some(&operator),
                &[("groupBy", group_by)],
            )
            .await;
        assert_eq!(
            stats.ok()["groups"],
            expected_groups(&all, key),
            "{group_by}"
        );
        assert_eq!(stats.ok()["total"]["count"], 4);
    }
    let acme_stats = app
        .get(
            "/v1/gateway/statistics",
            Some(&acme),
            &[("groupBy", "city")],
        )
        .await;
    assert_eq!(
        acme_stats.ok()["groups"],
        expected_groups(&acme_items, "city")
    );
    assert_eq!(acme_stats.ok()["total"]["memoryGiB"], 256.5);
    app.get(
        "/v1/gateway/statistics",
        Some(&operator),
        &[("groupBy", "zone")],
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");

    // Deactivation: reports refused, shown in the listing, left out of statistics.
    let path = |code: &str, action: &str| format!("/v1/admin/gateway/identifiers/{code}/{action}");
    app.post(&path(&sz1, "deactivate"), Some(&acme), &json!({}))
        .await
        .expect_error(403, "FORBIDDEN");
    let off = app
        .post(&path(&sz1, "deactivate"), Some(&operator), &json!({}))
        .await;
    assert_eq!(off.ok()["active"], false);
    app.post(&path(&sz1, "deactivate"), Some(&operator), &json!({}))
        .await
        .expect_error(409, "INVALID_STATE");
    let never = liutong::domain::identifiers::compose(&sz1[..12], 998).expect("code");
    app.post(&path(&never, "deactivate"), Some(&operator), &json!({}))
        .await
        .expect_error(404, "NOT_FOUND");
    let later = identifier(&sz1, "2026-11-30T05:00:00Z");
    let refused = send_batch(&app, &acme_key, std::slice::from_ref(&later)).await;
    assert_eq!(
        rejected_of(refused.ok()),
        vec![(
            0,
            "/identifiers/0/code".to_owned(),
            "DEACTIVATED".to_owned()
        )]
    );
    let listed = q(&[("state", "deactivated")]).await;
    assert_eq!(codes(&listed), vec![sz1.clone()]);
    assert_eq!(listed.ok()["identifiers"][0]["active"], false);
    assert!(listed.ok()["identifiers"][0]["deactivatedAt"].is_string());
    let stats = app
        .get("/v1/gateway/statistics", Some(&operator), &[])
        .await;
    assert_eq!(stats.ok()["total"]["count"], 3);
    let stats = app
        .get(
            "/v1/gateway/statistics",
            Some(&operator),
            &[("state", "all")],
        )
        .await;
    assert_eq!(stats.ok()["total"]["count"], 4);
    let on = app
        .post(&path(&sz1, "reactivate"), Some(&operator), &json!({}))
        .await;
    assert_eq!(on.ok()["active"], true);
    app.post(&path(&sz1, "reactivate"), Some(&operator), &json!({}))
        .await
        .expect_error(409, "INVALID_STATE");
    let accepted = send_batch(&app, &acme_key, std::slice::from_ref(&later)).await;
    assert_eq!(accepted.ok()["accepted"], 1);
    assert_eq!(codes(&q(&[]).await)[0], sz1);
}

on_both_backends!(
    fields_are_published_with_their_schema,
    codes_are_parsed_and_their_check_digit_verified,
    batches_are_signed_checked_per_item_and_idempotent,
    identifiers_are_queried_counted_and_managed,
);
