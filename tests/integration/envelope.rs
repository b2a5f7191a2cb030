//! Every answer, including every failure, is the standard's envelope with the right code.

use serde_json::json;

use crate::on_both_backends;
use crate::support::TestApp;

async fn unknown_route_and_wrong_method(app: TestApp) {
    app.get("/no/such/endpoint", None, &[])
        .await
        .expect_error(404, "NOT_FOUND");
    let resp = app.send(app.client.delete(app.url("/registerData"))).await;
    resp.expect_error(405, "METHOD_NOT_ALLOWED");
    let resp = app.send(app.client.get(app.url("/publishData"))).await;
    resp.expect_error(405, "METHOD_NOT_ALLOWED");
}

async fn missing_unknown_and_expired_tokens(app: TestApp) {
    let body = json!({"registrationID": "reg_x"});
    let resp = app.post("/revokePublishedData", None, &body).await;
    resp.expect_error(401, "UNAUTHENTICATED");
    assert!(resp.error_msg().contains("X-Auth-Token"));
    app.post("/revokePublishedData", Some("lt_forged"), &body)
        .await
        .expect_error(401, "UNAUTHENTICATED");
    app.get(
        "/queryPublishedDemand",
        Some("not-even-a-token"),
        &[("demandID", "x")],
    )
    .await
    .expect_error(401, "UNAUTHENTICATED");

    let token = app.user("alice").await;
    // Expire it behind the server's back; it has never been used, so no cache holds it.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.db.url()).await.expect("db");
    sqlx::query("UPDATE auth_tokens SET expires_at = 0")
        .execute(&pool)
        .await
        .expect("expire tokens");
    pool.close().await;
    let resp = app
        .get("/queryPublishedDemand", Some(&token), &[("demandID", "x")])
        .await;
    resp.expect_error(401, "UNAUTHENTICATED");
    assert!(resp.error_msg().contains("expired"), "{}", resp.body);
}

async fn malformed_bodies(app: TestApp) {
    let token = app.user("alice").await;
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut r = app
            .client
            .post(app.url("/registerDemand"))
            .header("X-Auth-Token", token.clone())
            .body(body);
        if let Some(ct) = content_type {
            r = r.header("Content-Type", ct);
        }
        r
    };
    let resp = app.send(raw("{not json", Some("application/json"))).await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(resp.error_msg().contains("malformed JSON"));
    app.send(raw("", Some("application/json")))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    app.send(raw("[1,2]", Some("application/json")))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let resp = app.send(raw("{}", Some("text/plain"))).await;
    resp.expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    app.send(raw(
        "demander=alice",
        Some("application/x-www-form-urlencoded"),
    ))
    .await
    .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    // The standard's default Content-Type is JSON: a body without one is read as JSON.
    let resp = app
        .send(raw(
            r#"{"demander":"alice","data_category":["a"],"key_words":["b"],"data_type":"dataset"}"#,
            None,
        ))
        .await;
    assert!(resp.ok()["demandID"].is_string());
}

async fn oversized_body(app: TestApp) {
    let token = app.user("alice").await;
    let huge = "x".repeat(1024 * 1024 + 10);
    let resp = app
        .post(
            "/registerDemand",
            Some(&token),
            &json!({"demander": "alice", "description": huge}),
        )
        .await;
    resp.expect_error(413, "PAYLOAD_TOO_LARGE");
}

async fn schema_errors_name_every_field(app: TestApp) {
    let token = app.user("alice").await;
    let resp = app
        .post(
            "/publishData",
            Some(&token),
            &json!({"owner": 7, "free": "yes", "price": -1, "colour": "red"}),
        )
        .await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    let msg = resp.error_msg();
    for expected in ["/owner", "/free", "/price", "registrationID", "colour"] {
        assert!(msg.contains(expected), "{expected} missing from: {msg}");
    }
    let resp = app
        .get("/queryPublishedData", Some(&token), &[("dataID", "x")])
        .await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(resp.error_msg().contains("registrationID"), "{}", resp.body);
    let resp = app
        .get(
            "/queryPublishedData",
            Some(&token),
            &[("registrationID", "a"), ("registrationID", "b")],
        )
        .await;
    resp.expect_error(400, "INVALID_ARGUMENT");
}

async fn health_and_request_ids(app: TestApp) {
    let resp = app.get("/healthz", None, &[]).await;
    assert_eq!(resp.ok()["healthy"], true);
    let resp = app.get("/readyz", None, &[]).await;
    assert_eq!(resp.ok()["ready"], true);
    let first = resp.headers["x-request-id"].clone();
    let second = app.get("/readyz", None, &[]).await.headers["x-request-id"].clone();
    assert_ne!(first, second, "request ids must differ");
    // A caller's own request id is kept, so it can be traced across systems.
    let resp = app
        .send(
            app.client
                .get(app.url("/healthz"))
                .header("X-Request-Id", "trace-me-42"),
        )
        .await;
    assert_eq!(resp.headers["x-request-id"], "trace-me-42");
}

async fn readiness_fails_when_database_is_gone(app: TestApp) {
    app.store.close().await;
    let resp = app.get("/readyz", None, &[]).await;
    resp.expect_error(503, "SERVICE_UNAVAILABLE");
    // Liveness does not depend on the database.
    app.get("/healthz", None, &[]).await.ok();
    let token_attempt = app
        .post(
            "/v1/account/token",
            None,
            &json!({"username": "operator", "password": "whatever-1"}),
        )
        .await;
    token_attempt.expect_error(503, "SERVICE_UNAVAILABLE");
    assert!(
        !token_attempt.error_msg().contains("sqlx"),
        "internal detail leaked"
    );
}

on_both_backends!(
    unknown_route_and_wrong_method,
    missing_unknown_and_expired_tokens,
    malformed_bodies,
    oversized_body,
    schema_errors_name_every_field,
    health_and_request_ids,
    readiness_fails_when_database_is_gone,
);
