//! Who may call before what they sent: every route with a fixed role refuses every other role
//! with 403 before reading the body, so a wrong caller learns nothing of the request's schema.

use axum::http::Method;
use liutong::api::openapi::role_of;
use liutong::domain::Role;

use crate::on_both_backends;
use crate::support::{Resp, TestApp};

/// A request that is wrong in every way a body or query can be.
async fn malformed(app: &TestApp, method: &Method, path: &str, token: &str) -> Resp {
    let url = format!("{}?limit=not-a-number&unknown=1", app.url(path));
    let request = app
        .client
        .request(method.clone(), url)
        .header("X-Auth-Token", token)
        .header("Content-Type", "application/json")
        .body("{\"not valid json");
    app.send(request).await
}

async fn every_role_route_refuses_other_roles_before_the_body(app: TestApp) {
    let tokens = [
        (Role::Enterprise, app.user("alice").await),
        (Role::Operator, app.operator().await),
        (
            Role::DataSpace,
            app.account_with_role("space", "data_space").await,
        ),
    ];
    let mut checked = Vec::new();
    for route in liutong::api::catalog() {
        let doc = route.doc;
        let Some(role) = role_of(doc.path) else {
            continue;
        };
        for (caller, token) in &tokens {
            let resp = malformed(&app, &doc.method, doc.path, token).await;
            if *caller == role {
                // The right role gets past the door and meets the malformed request.
                assert_ne!(
                    resp.status, 403,
                    "{} {}: {}",
                    doc.method, doc.path, resp.body
                );
            } else {
                resp.expect_error(403, "FORBIDDEN");
            }
        }
        checked.push(format!("{} {}", doc.method, doc.path));
    }
    // Every admin route (plugins, billing rules, credits, the ledger audit) and /publishDatasets.
    assert!(checked.len() >= 12, "{checked:?}");
    assert!(checked.iter().any(|r| r == "POST /publishDatasets"));
}

on_both_backends!(every_role_route_refuses_other_roles_before_the_body);
