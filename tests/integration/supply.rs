//! A.1: registering, publishing, querying and revoking data resources and controlled data.

use serde_json::json;

use crate::on_both_backends;
use crate::support::TestApp;
use crate::support::fixtures::{publish_datasets, register_data};

async fn full_lifecycle(app: TestApp) {
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let id = app
        .register_resource(&alice, &register_data("alice", "ct-2024", &["CT", "lung"]))
        .await;

    // Registered, not yet published: known, but "NO" and no terms.
    let q = app
        .get(
            "/queryPublishedData",
            Some(&bob),
            &[("registrationID", &id)],
        )
        .await;
    let data = q.ok();
    assert_eq!(data["publish_status"], "NO");
    assert_eq!(data["owner"], "alice");
    assert!(data["free"].is_null() && data["price"].is_null());

    let resp = app
        .post(
            "/publishData",
            Some(&alice),
            &json!({"owner": "alice", "registrationID": id, "free": false, "price": 19.99}),
        )
        .await;
    assert_eq!(resp.ok()["publish_status"], "YES");

    let q = app
        .get(
            "/queryPublishedData",
            Some(&bob),
            &[("registrationID", &id)],
        )
        .await;
    let data = q.ok();
    assert_eq!(data["publish_status"], "YES");
    assert_eq!(data["free"], "false");
    assert_eq!(data["price"], 19.99);
    assert_eq!(data["owner"], "alice");
    // dataID, when given for ordinary data, must agree with the registration.
    let q = app
        .get(
            "/queryPublishedData",
            Some(&bob),
            &[("registrationID", &id), ("dataID", "ct-2024")],
        )
        .await;
    assert_eq!(q.ok()["publish_status"], "YES");
    app.get(
        "/queryPublishedData",
        Some(&bob),
        &[("registrationID", &id), ("dataID", "other")],
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // Re-publishing changes the terms.
    let resp = app
        .post(
            "/publishData",
            Some(&alice),
            &json!({"owner": "alice", "registrationID": id, "free": true}),
        )
        .await;
    assert_eq!(resp.ok()["publish_status"], "YES");
    let q = app
        .get(
            "/queryPublishedData",
            Some(&alice),
            &[("registrationID", &id)],
        )
        .await;
    assert_eq!(q.ok()["free"], "true");
    assert_eq!(q.ok()["price"], 0.0);

    let resp = app
        .post(
            "/revokePublishedData",
            Some(&alice),
            &json!({"registrationID": id}),
        )
        .await;
    assert_eq!(resp.ok()["publish_status"], "NO");
    let q = app
        .get(
            "/queryPublishedData",
            Some(&bob),
            &[("registrationID", &id)],
        )
        .await;
    assert_eq!(q.ok()["publish_status"], "NO");
    app.post(
        "/revokePublishedData",
        Some(&alice),
        &json!({"registrationID": id}),
    )
    .await
    .expect_error(409, "INVALID_STATE");

    // Revoked → published again.
    let resp = app
        .post(
            "/publishData",
            Some(&alice),
            &json!({"owner": "alice", "registrationID": id, "free": false, "price": 5}),
        )
        .await;
    assert_eq!(resp.ok()["publish_status"], "YES");
}

async fn only_the_owner_acts(app: TestApp) {
    let alice = app.user("alice").await;
    let mallory = app.user("mallory").await;
    let id = app
        .register_resource(&alice, &register_data("alice", "d1", &["x"]))
        .await;
    // Claiming to be someone else.
    app.post(
        "/registerData",
        Some(&mallory),
        &register_data("alice", "d2", &["x"]),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    app.post(
        "/publishData",
        Some(&mallory),
        &json!({"owner": "alice", "registrationID": id, "free": true}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // Honest about the name, but not the owner.
    app.post(
        "/publishData",
        Some(&mallory),
        &json!({"owner": "mallory", "registrationID": id, "free": true}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    app.post(
        "/publishData",
        Some(&alice),
        &json!({"owner": "alice", "registrationID": id, "free": true}),
    )
    .await
    .ok();
    app.post(
        "/revokePublishedData",
        Some(&mallory),
        &json!({"registrationID": id}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let q = app
        .get(
            "/queryPublishedData",
            Some(&mallory),
            &[("registrationID", &id)],
        )
        .await;
    assert_eq!(
        q.ok()["publish_status"],
        "YES",
        "refused calls changed nothing"
    );
}

async fn unknown_ids_and_state_rules(app: TestApp) {
    let alice = app.user("alice").await;
    app.post(
        "/publishData",
        Some(&alice),
        &json!({"owner": "alice", "registrationID": "reg_missing", "free": true}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    app.get(
        "/queryPublishedData",
        Some(&alice),
        &[("registrationID", "reg_missing")],
    )
    .await
    .expect_error(404, "NOT_FOUND");
    app.post(
        "/revokePublishedData",
        Some(&alice),
        &json!({"registrationID": "reg_missing"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    let id = app
        .register_resource(&alice, &register_data("alice", "d1", &["x"]))
        .await;
    // Never published: nothing to revoke.
    app.post(
        "/revokePublishedData",
        Some(&alice),
        &json!({"registrationID": id}),
    )
    .await
    .expect_error(409, "INVALID_STATE");
}

async fn price_rules(app: TestApp) {
    let alice = app.user("alice").await;
    let id = app
        .register_resource(&alice, &register_data("alice", "d1", &["x"]))
        .await;
    let publish = |free: bool, price: Option<f64>| {
        let mut body = json!({"owner": "alice", "registrationID": id, "free": free});
        if let Some(p) = price {
            body["price"] = json!(p);
        }
        body
    };
    for (body, reason) in [
        (publish(false, None), "price required when not free"),
        (publish(false, Some(0.0)), "price must be > 0 when not free"),
        (publish(true, Some(3.0)), "a free resource has no price"),
        (publish(false, Some(1.234)), "at most two decimal places"),
    ] {
        let resp = app.post("/publishData", Some(&alice), &body).await;
        resp.expect_error(400, "INVALID_ARGUMENT");
        assert!(
            resp.error_msg().contains("/price"),
            "{reason}: {}",
            resp.body
        );
    }
    let q = app
        .get(
            "/queryPublishedData",
            Some(&alice),
            &[("registrationID", &id)],
        )
        .await;
    assert_eq!(
        q.ok()["publish_status"],
        "NO",
        "refused publications left no trace"
    );
    app.post("/publishData", Some(&alice), &publish(true, Some(0.0)))
        .await
        .ok();
    app.post("/publishData", Some(&alice), &publish(false, Some(0.07)))
        .await
        .ok();
    let q = app
        .get(
            "/queryPublishedData",
            Some(&alice),
            &[("registrationID", &id)],
        )
        .await;
    assert_eq!(q.ok()["price"], 0.07);
}

async fn data_id_is_unique_per_owner(app: TestApp) {
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.register_resource(&alice, &register_data("alice", "same", &["x"]))
        .await;
    let resp = app
        .post(
            "/registerData",
            Some(&alice),
            &register_data("alice", "same", &["y"]),
        )
        .await;
    resp.expect_error(409, "CONFLICT");
    assert!(resp.error_msg().contains("same"));
    // Another owner may use the same dataID.
    app.register_resource(&bob, &register_data("bob", "same", &["x"]))
        .await;
}

async fn registration_field_rules(app: TestApp) {
    let alice = app.user("alice").await;
    let mut rfc3339 = register_data("alice", "d-rfc", &["x"]);
    rfc3339["collection_time"] = json!("2024-05-01T08:30:00+08:00");
    app.register_resource(&alice, &rfc3339).await;

    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("/collection_time", json!("01/05/2024")),
        ("/public_key", json!("ssh-ed25519 AAAA")),
        ("/key_words", json!([])),
        ("/key_words/0", json!(["   "])),
        ("/data_size", json!(-1)),
        ("/ownership_confirm", json!("not a url")),
        ("/dataID", json!("has space")),
        ("/description", json!("x".repeat(4001))),
    ];
    for (field, value) in cases {
        let mut body = register_data("alice", "d-bad", &["x"]);
        let key = field
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default();
        body[key] = value;
        let resp = app.post("/registerData", Some(&alice), &body).await;
        resp.expect_error(400, "INVALID_ARGUMENT");
        assert!(resp.error_msg().contains(field), "{field}: {}", resp.body);
    }
    let mut missing = register_data("alice", "d-bad", &["x"]);
    missing.as_object_mut().map(|o| o.remove("country"));
    let resp = app.post("/registerData", Some(&alice), &missing).await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(resp.error_msg().contains("country"), "{}", resp.body);
}

async fn controlled_data(app: TestApp) {
    let space = app.account_with_role("space-one", "data_space").await;
    let other_space = app.account_with_role("space-two", "data_space").await;
    let alice = app.user("alice").await;

    // Only data spaces publish controlled data.
    app.post(
        "/publishDatasets",
        Some(&alice),
        &publish_datasets("ctl-1", &["records"], true, None),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    // The fixed values are required.
    let mut wrong_owner = publish_datasets("ctl-1", &["records"], true, None);
    wrong_owner["owner"] = json!("space-one");
    let resp = app
        .post("/publishDatasets", Some(&space), &wrong_owner)
        .await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(resp.error_msg().contains("/owner"));
    let mut wrong_reg = publish_datasets("ctl-1", &["records"], true, None);
    wrong_reg["registrationID"] = json!("reg_123");
    app.post("/publishDatasets", Some(&space), &wrong_reg)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    // Ordinary publication refuses the fixed registration id.
    app.post(
        "/publishData",
        Some(&alice),
        &json!({"owner": "alice", "registrationID": "TDS-CONTROLLED", "free": true}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");

    let resp = app
        .post(
            "/publishDatasets",
            Some(&space),
            &publish_datasets("ctl-1", &["records"], false, Some(8.5)),
        )
        .await;
    assert_eq!(resp.ok()["publish_status"], "YES");
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-2", &["images"], true, None),
    )
    .await
    .ok();

    // Queries need the dataID to tell controlled items apart.
    let resp = app
        .get(
            "/queryPublishedData",
            Some(&alice),
            &[("registrationID", "TDS-CONTROLLED")],
        )
        .await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(resp.error_msg().contains("/dataID"));
    let q = app
        .get(
            "/queryPublishedData",
            Some(&alice),
            &[("registrationID", "TDS-CONTROLLED"), ("dataID", "ctl-1")],
        )
        .await;
    let data = q.ok();
    assert_eq!(data["owner"], "trusted-data-space");
    assert_eq!(data["publish_status"], "YES");
    assert_eq!(data["price"], 8.5);
    app.get(
        "/queryPublishedData",
        Some(&alice),
        &[("registrationID", "TDS-CONTROLLED"), ("dataID", "ctl-9")],
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // Another data space may neither overwrite nor revoke it.
    app.post(
        "/publishDatasets",
        Some(&other_space),
        &publish_datasets("ctl-1", &["x"], true, None),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    app.post(
        "/revokePublishedData",
        Some(&other_space),
        &json!({"registrationID": "TDS-CONTROLLED", "dataID": "ctl-1"}),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    app.post(
        "/revokePublishedData",
        Some(&space),
        &json!({"registrationID": "TDS-CONTROLLED"}),
    )
    .await
    .expect_error(400, "INVALID_ARGUMENT");
    let resp = app
        .post(
            "/revokePublishedData",
            Some(&space),
            &json!({"registrationID": "TDS-CONTROLLED", "dataID": "ctl-1"}),
        )
        .await;
    assert_eq!(resp.ok()["publish_status"], "NO");
    // The other controlled item is untouched.
    let q = app
        .get(
            "/queryPublishedData",
            Some(&alice),
            &[("registrationID", "TDS-CONTROLLED"), ("dataID", "ctl-2")],
        )
        .await;
    assert_eq!(q.ok()["publish_status"], "YES");
    // Publishing again re-publishes with the new terms.
    app.post(
        "/publishDatasets",
        Some(&space),
        &publish_datasets("ctl-1", &["records"], true, None),
    )
    .await
    .ok();
    let q = app
        .get(
            "/queryPublishedData",
            Some(&alice),
            &[("registrationID", "TDS-CONTROLLED"), ("dataID", "ctl-1")],
        )
        .await;
    assert_eq!(q.ok()["publish_status"], "YES");
    assert_eq!(q.ok()["free"], "true");
}

on_both_backends!(
    full_lifecycle,
    only_the_owner_acts,
    unknown_ids_and_state_rules,
    price_rules,
    data_id_is_unique_per_owner,
    registration_field_rules,
    controlled_data,
);
