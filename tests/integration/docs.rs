//! The documentation stays true: every endpoint and every error code is documented, and the
//! OpenAPI document lists every endpoint.

use liutong::api::catalog;
use liutong::api::error::ErrorCode;

fn read(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

#[test]
fn every_endpoint_is_in_docs_api() {
    let doc = read("docs/api.md");
    for route in catalog() {
        let heading = format!("`{} {}`", route.doc.method, route.doc.path);
        assert!(doc.contains(&heading), "docs/api.md lacks {heading}");
    }
}

#[test]
fn every_error_code_is_in_docs_errors() {
    let doc = read("docs/errors.md");
    for code in ErrorCode::ALL {
        let entry = format!("`{}`", code.as_str());
        assert!(doc.contains(&entry), "docs/errors.md lacks {entry}");
        assert!(
            doc.contains(&code.status().as_u16().to_string()),
            "docs/errors.md lacks the status of {entry}"
        );
    }
}

#[tokio::test]
async fn openapi_lists_every_endpoint() {
    let app = crate::support::TestApp::spawn(crate::support::Backend::Sqlite).await;
    let doc: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    for route in catalog() {
        let method = route.doc.method.as_str().to_lowercase();
        assert!(
            doc["paths"][route.doc.path][&method].is_object(),
            "openapi.json lacks {method} {}",
            route.doc.path
        );
    }
    // Every $ref points at something that exists.
    fn check_refs(v: &serde_json::Value, root: &serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(|r| r.as_str()) {
                    let pointer = r.trim_start_matches('#');
                    assert!(root.pointer(pointer).is_some(), "dangling $ref {r}");
                }
                m.values().for_each(|x| check_refs(x, root));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| check_refs(x, root)),
            _ => {}
        }
    }
    check_refs(&doc, &doc);
}
