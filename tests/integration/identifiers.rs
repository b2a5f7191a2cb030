//! Identifier codes over HTTP: applications of certified enterprises, the catalogs, review, and
//! 16-digit codes (enterprise prefix, ISO 7064 MOD 11-10 check digit) that stay distinct under
//! concurrent approvals.

use std::collections::BTreeSet;

use serde_json::json;

use crate::on_both_backends;
use crate::provider::certified;
use crate::support::TestApp;

/// The ISO 7064 MOD 11-10 check digit, computed independently of the server.
fn mod11_10(digits: &str) -> u32 {
    let mut p = 10;
    for d in digits.chars().filter_map(|c| c.to_digit(10)) {
        let s = match (p + d) % 10 {
            0 => 10,
            s => s,
        };
        p = (2 * s) % 11;
    }
    (11 - p) % 10
}

fn check_code(code: &str, enterprise_id: &str) {
    assert_eq!(code.len(), 16, "{code}");
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");
    assert!(code.starts_with(enterprise_id), "{code} vs {enterprise_id}");
    assert_eq!(
        code[15..].parse::<u32>().ok(),
        Some(mod11_10(&code[..15])),
        "{code}"
    );
}

fn shenzhen() -> serde_json::Value {
    json!({"province": "440000", "city": "440300", "zone": "1", "industry": "65"})
}

async fn codes_are_applied_for_reviewed_and_issued(app: TestApp) {
    let operator = app.operator().await;
    // Only certified enterprises apply.
    let stranger = app.user("stranger").await;
    app.post("/v1/provider/identifiers", Some(&stranger), &shenzhen())
        .await
        .expect_error(409, "INVALID_STATE");
    let (acme, enterprise_id) = certified(&app, "acme").await;

    let catalog = app
        .get("/v1/provider/identifiers/catalog", Some(&acme), &[])
        .await;
    let data = catalog.ok();
    let guangdong = data["provinces"]
        .as_array()
        .expect("provinces")
        .iter()
        .find(|p| p["code"] == "440000")
        .expect("Guangdong");
    assert!(
        guangdong["cities"]
            .as_array()
            .expect("cities")
            .iter()
            .any(|c| c["code"] == "440300")
    );
    let divisions: usize = data["industries"]
        .as_array()
        .expect("industries")
        .iter()
        .map(|s| s["divisions"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(divisions, 97);

    // Fields come from the catalog; a city must be of its province.
    for (field, value) in [
        ("province", "990000"),
        ("city", "110100"),
        ("zone", "12"),
        ("industry", "98"),
    ] {
        let mut body = shenzhen();
        body[field] = json!(value);
        let resp = app
            .post("/v1/provider/identifiers", Some(&acme), &body)
            .await;
        resp.expect_error(400, "INVALID_ARGUMENT");
        let pointer = if field == "province" {
            "/province"
        } else {
            "/"
        };
        assert!(resp.error_msg().contains(pointer), "{field}: {}", resp.body);
    }

    let first = app
        .post("/v1/provider/identifiers", Some(&acme), &shenzhen())
        .await;
    assert_eq!(first.ok()["status"], "PENDING");
    let first_id = first.ok()["applicationId"].as_str().expect("id").to_owned();
    let second = app
        .post(
            "/v1/provider/identifiers",
            Some(&acme),
            &json!({"province": "110000", "city": "110100", "zone": "0", "industry": "64"}),
        )
        .await;
    let second_id = second.ok()["applicationId"]
        .as_str()
        .expect("id")
        .to_owned();

    let pending = app
        .get(
            "/v1/admin/identifier-applications",
            Some(&operator),
            &[("status", "PENDING")],
        )
        .await;
    assert_eq!(
        pending.ok()["applications"].as_array().map(Vec::len),
        Some(2)
    );
    // Rejection needs a reason.
    let reject = format!("/v1/admin/identifier-applications/{second_id}/reject");
    app.post(&reject, Some(&operator), &json!({}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let rejected = app
        .post(
            &reject,
            Some(&operator),
            &json!({"reason": "可用区信息有误"}),
        )
        .await;
    assert_eq!(rejected.ok()["status"], "REJECTED");
    assert!(rejected.ok()["code"].is_null());

    let approved = app
        .post(
            &format!("/v1/admin/identifier-applications/{first_id}/approve"),
            Some(&operator),
            &json!({}),
        )
        .await;
    let code = approved.ok()["code"].as_str().expect("code").to_owned();
    check_code(&code, &enterprise_id);
    // The layout: enterprise, province 44, city 03, zone 1, industry 65, serial 000.
    assert_eq!(&code[5..15], "4403165000");
    app.post(
        &format!("/v1/admin/identifier-applications/{first_id}/approve"),
        Some(&operator),
        &json!({}),
    )
    .await
    .expect_error(409, "INVALID_STATE");
    app.post(
        "/v1/admin/identifier-applications/ida_none/approve",
        Some(&operator),
        &json!({}),
    )
    .await
    .expect_error(404, "NOT_FOUND");

    let mine = app.get("/v1/provider/identifiers", Some(&acme), &[]).await;
    let data = mine.ok();
    assert_eq!(data["codes"], json!([code]));
    let applications = data["applications"].as_array().expect("applications");
    assert_eq!(applications.len(), 2);
    assert_eq!(applications[0]["status"], "REJECTED");
    assert_eq!(applications[0]["reason"], "可用区信息有误");
    assert_eq!(applications[1]["code"], code.as_str());
    // Another enterprise does not see them.
    let (other, _) = certified(&app, "other").await;
    let theirs = app.get("/v1/provider/identifiers", Some(&other), &[]).await;
    assert_eq!(theirs.ok()["applications"], json!([]));
}

async fn concurrent_approvals_issue_distinct_codes(app: TestApp) {
    const N: usize = 500;
    let operator = app.operator().await;
    let (acme, enterprise_id) = certified(&app, "acme").await;
    let mut ids = Vec::with_capacity(N);
    for _ in 0..N {
        let created = app
            .post("/v1/provider/identifiers", Some(&acme), &shenzhen())
            .await;
        ids.push(
            created.ok()["applicationId"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    // All approvals at once, over HTTP: every one under the same 12-digit prefix.
    let mut tasks = Vec::with_capacity(N);
    for id in ids {
        let client = app.client.clone();
        let url = app.url(&format!("/v1/admin/identifier-applications/{id}/approve"));
        let token = operator.clone();
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .header("X-Auth-Token", token)
                .json(&json!({}))
                .send()
                .await
                .expect("approve");
            let status = response.status();
            let body: serde_json::Value = response.json().await.expect("json");
            assert_eq!(status, 200, "{body}");
            body["data"]["code"].as_str().expect("code").to_owned()
        }));
    }
    let mut codes = BTreeSet::new();
    for task in tasks {
        let code = task.await.expect("task");
        check_code(&code, &enterprise_id);
        codes.insert(code);
    }
    assert_eq!(codes.len(), N, "codes were issued twice");
    // Serials 000-499, each once.
    let serials: BTreeSet<String> = codes.iter().map(|c| c[12..15].to_owned()).collect();
    assert_eq!(serials.len(), N);
    assert_eq!(serials.iter().next().map(String::as_str), Some("000"));
    assert_eq!(serials.iter().last().map(String::as_str), Some("499"));
}

on_both_backends!(
    codes_are_applied_for_reviewed_and_issued,
    concurrent_approvals_issue_distinct_codes,
);
