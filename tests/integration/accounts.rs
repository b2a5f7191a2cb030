//! Registration, password policy, tokens and roles.

use serde_json::json;

use crate::on_both_backends;
use crate::support::TestApp;

async fn register_and_log_in(app: TestApp) {
    let resp = app
        .post(
            "/v1/account/register",
            None,
            &json!({"username": "alice", "password": "correct-horse-1", "phone": "+8613912345678"}),
        )
        .await;
    let user_id = resp.ok()["userId"].as_str().expect("userId").to_owned();
    assert!(!user_id.is_empty());
    let resp = app
        .post(
            "/v1/account/token",
            None,
            &json!({"username": "alice", "password": "correct-horse-1"}),
        )
        .await;
    let data = resp.ok();
    assert!(data["token"].as_str().is_some_and(|t| t.len() > 20));
    let expires = data["expiresAt"].as_str().expect("expiresAt");
    assert!(
        time::OffsetDateTime::parse(expires, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{expires}"
    );
    // The token works.
    let token = data["token"].as_str().expect("token");
    app.get(
        "/queryPublishedDemand",
        Some(token),
        &[("demandID", "none")],
    )
    .await
    .expect_error(404, "NOT_FOUND");
}

async fn duplicate_username_conflicts(app: TestApp) {
    app.user("alice").await;
    let resp = app
        .post(
            "/v1/account/register",
            None,
            &json!({"username": "alice", "password": "another-pass-2", "phone": "13800138000"}),
        )
        .await;
    resp.expect_error(409, "CONFLICT");
    assert!(resp.error_msg().contains("alice"));
}

async fn password_phone_and_username_rules(app: TestApp) {
    let attempt = |username: &str, password: &str, phone: &str| json!({"username": username, "password": password, "phone": phone});
    for (body, field) in [
        (attempt("bob", "short1", "13800138000"), "/password"),
        (
            attempt("bob", "lettersonlypassword", "13800138000"),
            "/password",
        ),
        (attempt("bob", "12345678901", "13800138000"), "/password"),
        (attempt("bob", "good-pass-1", "12345"), "/phone"),
        (attempt("bob", "good-pass-1", "10012345678"), "/phone"),
        (attempt("b", "good-pass-1", "13800138000"), "/username"),
        (
            attempt("bob smith", "good-pass-1", "13800138000"),
            "/username",
        ),
        (
            attempt("trusted-data-space", "good-pass-1", "13800138000"),
            "/username",
        ),
    ] {
        let resp = app.post("/v1/account/register", None, &body).await;
        resp.expect_error(400, "INVALID_ARGUMENT");
        assert!(
            resp.error_msg().contains(field),
            "{field} not named: {}",
            resp.body
        );
    }
    // Nothing was created by the refused attempts.
    let resp = app
        .post(
            "/v1/account/token",
            None,
            &json!({"username": "bob", "password": "good-pass-1"}),
        )
        .await;
    resp.expect_error(401, "UNAUTHENTICATED");
}

async fn wrong_credentials_are_refused_alike(app: TestApp) {
    app.user("alice").await;
    let wrong_password = app
        .post(
            "/v1/account/token",
            None,
            &json!({"username": "alice", "password": "not-her-pass-1"}),
        )
        .await;
    wrong_password.expect_error(401, "UNAUTHENTICATED");
    let unknown_user = app
        .post(
            "/v1/account/token",
            None,
            &json!({"username": "nobody", "password": "not-her-pass-1"}),
        )
        .await;
    unknown_user.expect_error(401, "UNAUTHENTICATED");
    assert_eq!(wrong_password.error_msg(), unknown_user.error_msg());
}

async fn bootstrap_operator_and_cli_roles(app: TestApp) {
    // The test app starts with LIUTONG_OPERATOR_PASSWORD set: the operator can log in.
    app.operator().await;
    // Roles other than enterprise come from the CLI.
    let space = app.account_with_role("space-one", "data_space").await;
    let resp = app
        .post(
            "/publishDatasets",
            Some(&space),
            &crate::support::fixtures::publish_datasets("ctl-1", &["records"], true, None),
        )
        .await;
    assert_eq!(resp.ok()["publish_status"], "YES");
    // A second bootstrap (restart with the variable still set) creates nothing new.
    let again = liutong::services::accounts::Accounts::new(
        app.store.clone(),
        std::time::Duration::from_secs(3600),
    );
    assert!(
        !again
            .bootstrap_operator("other-pass-9")
            .await
            .expect("bootstrap")
    );
    app.login("operator", crate::support::OPERATOR_PASSWORD)
        .await;
}

on_both_backends!(
    register_and_log_in,
    duplicate_username_conflicts,
    password_phone_and_username_rules,
    wrong_credentials_are_refused_alike,
    bootstrap_operator_and_cli_roles,
);
