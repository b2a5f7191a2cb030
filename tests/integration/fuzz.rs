//! The OpenAPI document against the server it describes: Schemathesis, a schema-driven fuzzer
//! (scripts/fuzz-openapi.sh, tests/fuzz/), over every operation of `GET /openapi.json`, with an
//! operator, an enterprise account and a trusted data space. It fails on a schema-valid request
//! refused, a schema-invalid one accepted, an undocumented status or content type, and any 5xx.

use serde_json::json;

use crate::on_both_backends;
use crate::support::fixtures::{publish_datasets, register_data};
use crate::support::plugins::repo_root;
use crate::support::{Backend, TestApp};

async fn schema_driven_fuzzing_finds_no_mismatch(app: TestApp) {
    // The names tests/fuzz/schemathesis.toml puts into bodies that name the caller.
    let user = app.user("fuzz-user").await;
    let operator = app.operator().await;
    let space = app.account_with_role("fuzz-space", "data_space").await;
    let reports = tempfile::tempdir().expect("report dir");
    let output = tokio::process::Command::new("bash")
        .arg(repo_root().join("scripts/fuzz-openapi.sh"))
        .arg(app.url(""))
        .env("LIUTONG_FUZZ_OPERATOR_TOKEN", operator)
        .env("LIUTONG_FUZZ_USER_TOKEN", user)
        .env("LIUTONG_FUZZ_DATA_SPACE_TOKEN", space)
        .env("LIUTONG_FUZZ_REPORT_DIR", reports.path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("scripts/fuzz-openapi.sh runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the fuzzer found mismatches between /openapi.json and the server:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("passed"), "{stdout}");
}

/// A registration (data_size bound as a number) after a controlled publication (no data_size)
/// on the same database connection: the fuzzer's first PostgreSQL finding, a 500.
async fn a_missing_data_size_leaves_the_connection_usable(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| config.max_db_connections = 1).await;
    let space = app.account_with_role("space", "data_space").await;
    let token = app.user("alice").await;
    for n in 0..3 {
        let body = publish_datasets(&format!("ds-{n}"), &["ct"], true, None);
        app.post("/publishDatasets", Some(&space), &body).await.ok();
        let body = register_data("alice", &format!("d-{n}"), &["ct"]);
        app.post("/registerData", Some(&token), &body).await.ok();
    }
    let mut body = register_data("alice", "d-nul", &["ct"]);
    body["description"] = json!("NUL \u{0} is refused by the schema, not by the database");
    app.post("/registerData", Some(&token), &body)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
}

on_both_backends!(schema_driven_fuzzing_finds_no_mismatch);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_data_size_leaves_the_sqlite_connection_usable() {
    a_missing_data_size_leaves_the_connection_usable(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_data_size_leaves_the_postgres_connection_usable() {
    a_missing_data_size_leaves_the_connection_usable(Backend::Postgres).await;
}
