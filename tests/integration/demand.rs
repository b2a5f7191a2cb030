//! A.2: registering, publishing, querying and revoking demands.

use serde_json::json;

use crate::on_both_backends;
use crate::support::TestApp;
use crate::support::fixtures::register_demand;

async fn full_lifecycle(app: TestApp) {
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let id = app
        .register_demand_from(
            &carol,
            &register_demand("carol", &["CT", "lung"], "dataset"),
        )
        .await;
    let q = app
        .get("/queryPublishedDemand", Some(&dave), &[("demandID", &id)])
        .await;
    let data = q.ok();
    assert_eq!(data["publish_status"], "NO");
    assert_eq!(data["key_words"], json!(["CT", "lung"]));
    assert_eq!(data["data_category"], json!(["healthcare"]));
    assert_eq!(data["data_type"], "dataset");
    assert_eq!(data["description"], "Need labelled CT scans");

    let publish = json!({"demander": "carol", "demandID": id});
    assert_eq!(
        app.post("/publishDemand", Some(&carol), &publish)
            .await
            .ok()["publish_status"],
        "YES"
    );
    let q = app
        .get("/queryPublishedDemand", Some(&dave), &[("demandID", &id)])
        .await;
    assert_eq!(q.ok()["publish_status"], "YES");

    assert_eq!(
        app.post("/revokeDemand", Some(&carol), &publish).await.ok()["publish_status"],
        "NO"
    );
    app.post("/revokeDemand", Some(&carol), &publish)
        .await
        .expect_error(409, "INVALID_STATE");
    assert_eq!(
        app.post("/publishDemand", Some(&carol), &publish)
            .await
            .ok()["publish_status"],
        "YES"
    );
}

async fn only_the_demander_acts(app: TestApp) {
    let carol = app.user("carol").await;
    let mallory = app.user("mallory").await;
    app.post(
        "/registerDemand",
        Some(&mallory),
        &register_demand("carol", &["x"], "dataset"),
    )
    .await
    .expect_error(403, "FORBIDDEN");
    let id = app
        .register_demand_from(&carol, &register_demand("carol", &["x"], "dataset"))
        .await;
    for path in ["/publishDemand", "/revokeDemand"] {
        app.post(
            path,
            Some(&mallory),
            &json!({"demander": "carol", "demandID": id}),
        )
        .await
        .expect_error(403, "FORBIDDEN");
        app.post(
            path,
            Some(&mallory),
            &json!({"demander": "mallory", "demandID": id}),
        )
        .await
        .expect_error(403, "FORBIDDEN");
    }
    app.post(
        "/publishDemand",
        Some(&carol),
        &json!({"demander": "carol", "demandID": "dem_none"}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
    app.get(
        "/queryPublishedDemand",
        Some(&carol),
        &[("demandID", "dem_none")],
    )
    .await
    .expect_error(404, "NOT_FOUND");
    let resp = app
        .post(
            "/revokeDemand",
            Some(&carol),
            &json!({"demander": "carol", "demandID": id}),
        )
        .await;
    resp.expect_error(409, "INVALID_STATE");
}

async fn field_rules(app: TestApp) {
    let carol = app.user("carol").await;
    for (key, value, field) in [
        ("key_words", json!([]), "/key_words"),
        ("data_category", json!("healthcare"), "/data_category"),
        ("data_type", json!(""), "/data_type"),
        ("key_words", json!(vec!["k"; 33]), "/key_words"),
    ] {
        let mut body = register_demand("carol", &["x"], "dataset");
        body[key] = value;
        let resp = app.post("/registerDemand", Some(&carol), &body).await;
        resp.expect_error(400, "INVALID_ARGUMENT");
        assert!(resp.error_msg().contains(field), "{field}: {}", resp.body);
    }
}

on_both_backends!(full_lifecycle, only_the_demander_acts, field_rules);
