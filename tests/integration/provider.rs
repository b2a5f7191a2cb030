//! Compute provider access over HTTP: real-name certification (multipart, documents checked by
//! content, stored and downloaded), its review by operators, the 5-digit enterprise id.

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{Resp, TestApp};

/// A valid unified social credit code (GB 32100: check character 'W').
pub const CREDIT_CODE: &str = "91440300MA5ELPB95W";
pub const PDF: &[u8] = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n";
pub const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

pub fn certification_info(name: &str) -> Value {
    json!({
        "enterpriseName": name,
        "creditCode": CREDIT_CODE,
        "legalRepresentative": "张三",
        "contactName": "李四",
        "contactPhone": "13812345678",
        "contactEmail": "ops@provider.example"
    })
}

/// A multipart form: `info` first, then each document.
pub fn form(info: &Value, documents: &[(&str, Vec<u8>)]) -> Form {
    let mut form = Form::new().part(
        "info",
        Part::text(info.to_string())
            .mime_str("application/json")
            .expect("mime"),
    );
    for (name, bytes) in documents {
        form = form.part(
            "document",
            Part::bytes(bytes.clone()).file_name((*name).to_owned()),
        );
    }
    form
}

pub async fn submit(app: &TestApp, token: &str, form: Form) -> Resp {
    app.send(
        app.client
            .post(app.url("/v1/provider/certification"))
            .header("X-Auth-Token", token)
            .multipart(form),
    )
    .await
}

/// Registers `username`, has it certified by the operator, and returns its token and
/// enterprise id.
pub async fn certified(app: &TestApp, username: &str) -> (String, String) {
    let token = app.user(username).await;
    let operator = app.operator().await;
    let created = submit(
        app,
        &token,
        form(
            &certification_info(&format!("{username} 算力有限公司")),
            &[("licence.pdf", PDF.to_vec())],
        ),
    )
    .await;
    let id = created.ok()["certificationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let approved = app
        .post(
            &format!("/v1/admin/certifications/{id}/approve"),
            Some(&operator),
            &json!({}),
        )
        .await;
    let enterprise_id = approved.ok()["enterpriseId"]
        .as_str()
        .expect("enterpriseId")
        .to_owned();
    (token, enterprise_id)
}

async fn certification_is_reviewed_rejected_resubmitted_and_approved(app: TestApp) {
    let alice = app.user("alice").await;
    let operator = app.operator().await;
    let status = app
        .get("/v1/provider/certification", Some(&alice), &[])
        .await;
    assert!(status.ok()["status"].is_null());
    assert_eq!(status.ok()["history"], json!([]));

    // The credit code's check character is verified (by the schema, naming the field).
    let mut bad = certification_info("Alice 算力");
    bad["creditCode"] = json!("91440300MA5ELPB95X");
    let resp = submit(&app, &alice, form(&bad, &[("a.pdf", PDF.to_vec())])).await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        resp.error_msg().contains("/info/creditCode"),
        "{}",
        resp.body
    );
    // Documents are checked by content, whatever their names say.
    let resp = submit(
        &app,
        &alice,
        form(
            &certification_info("Alice 算力"),
            &[("licence.pdf", b"MZ\x90\0 not a pdf".to_vec())],
        ),
    )
    .await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(resp.error_msg().contains("licence.pdf"), "{}", resp.body);
    // At least one document.
    submit(&app, &alice, form(&certification_info("Alice 算力"), &[]))
        .await
        .expect_error(400, "INVALID_ARGUMENT");

    let first = submit(
        &app,
        &alice,
        form(
            &certification_info("Alice 算力"),
            &[("licence.pdf", PDF.to_vec()), ("id-card.png", PNG.to_vec())],
        ),
    )
    .await;
    assert_eq!(first.ok()["status"], "PENDING");
    let first_id = first.ok()["certificationId"]
        .as_str()
        .expect("id")
        .to_owned();
    // One under review at a time.
    submit(
        &app,
        &alice,
        form(
            &certification_info("Alice 算力"),
            &[("b.pdf", PDF.to_vec())],
        ),
    )
    .await
    .expect_error(409, "INVALID_STATE");

    // The operator sees it with its documents and downloads them byte for byte.
    let pending = app
        .get(
            "/v1/admin/certifications",
            Some(&operator),
            &[("status", "PENDING")],
        )
        .await;
    let listed = &pending.ok()["certifications"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["username"], "alice");
    assert_eq!(listed[0]["creditCode"], CREDIT_CODE);
    let docs = listed[0]["documents"]
        .as_array()
        .expect("documents")
        .clone();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["mediaType"], "application/pdf");
    assert_eq!(docs[1]["mediaType"], "image/png");
    for (doc, bytes, media) in [
        (&docs[0], PDF, "application/pdf"),
        (&docs[1], PNG, "image/png"),
    ] {
        let path = format!(
            "/v1/admin/certifications/{first_id}/documents/{}",
            doc["documentId"].as_str().expect("documentId")
        );
        let response = app
            .client
            .get(app.url(&path))
            .header("X-Auth-Token", &operator)
            .send()
            .await
            .expect("download");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("type"),
            media
        );
        assert_eq!(response.bytes().await.expect("bytes").as_ref(), bytes);
        // Nobody else downloads documents, not even their enterprise through the admin path.
        app.get(&path, Some(&alice), &[])
            .await
            .expect_error(403, "FORBIDDEN");
    }
    app.get(
        &format!("/v1/admin/certifications/{first_id}/documents/doc_none"),
        Some(&operator),
        &[],
    )
    .await
    .expect_error(404, "NOT_FOUND");

    // A rejection needs a reason; the enterprise sees it.
    let reject = format!("/v1/admin/certifications/{first_id}/reject");
    app.post(&reject, Some(&operator), &json!({}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    app.post(&reject, Some(&operator), &json!({"reason": "   "}))
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let rejected = app
        .post(
            &reject,
            Some(&operator),
            &json!({"reason": "营业执照不清晰"}),
        )
        .await;
    assert_eq!(rejected.ok()["status"], "REJECTED");
    app.post(
        &format!("/v1/admin/certifications/{first_id}/approve"),
        Some(&operator),
        &json!({}),
    )
    .await
    .expect_error(409, "INVALID_STATE");
    let status = app
        .get("/v1/provider/certification", Some(&alice), &[])
        .await;
    assert_eq!(status.ok()["status"], "REJECTED");
    assert_eq!(status.ok()["reason"], "营业执照不清晰");
    assert!(status.ok()["enterpriseId"].is_null());

    // Resubmitted and approved: a 5-digit enterprise id.
    let second = submit(
        &app,
        &alice,
        form(
            &certification_info("Alice 算力有限公司"),
            &[(
                "licence-clear.jpg",
                b"\xFF\xD8\xFF\xE0\0\x10JFIF\0".to_vec(),
            )],
        ),
    )
    .await;
    let second_id = second.ok()["certificationId"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_ne!(second_id, first_id);
    let approved = app
        .post(
            &format!("/v1/admin/certifications/{second_id}/approve"),
            Some(&operator),
            &json!({}),
        )
        .await;
    let enterprise_id = approved.ok()["enterpriseId"]
        .as_str()
        .expect("enterpriseId")
        .to_owned();
    assert_eq!(enterprise_id.len(), 5);
    assert!(enterprise_id.bytes().all(|b| b.is_ascii_digit()));
    let status = app
        .get("/v1/provider/certification", Some(&alice), &[])
        .await;
    let data = status.ok();
    assert_eq!(data["status"], "APPROVED");
    assert_eq!(data["enterpriseId"], enterprise_id.as_str());
    assert!(data["reason"].is_null());
    let history = data["history"].as_array().expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["certificationId"], second_id.as_str());
    assert_eq!(history[1]["status"], "REJECTED");
    assert_eq!(history[0]["documents"][0]["mediaType"], "image/jpeg");
    // Certified once and for all.
    submit(
        &app,
        &alice,
        form(&certification_info("Alice"), &[("c.pdf", PDF.to_vec())]),
    )
    .await
    .expect_error(409, "INVALID_STATE");

    // Every enterprise gets its own id.
    let (_, bob_id) = certified(&app, "bob").await;
    assert_eq!(bob_id.len(), 5);
    assert_ne!(bob_id, enterprise_id);
    let approved = app
        .get(
            "/v1/admin/certifications",
            Some(&operator),
            &[("status", "APPROVED")],
        )
        .await;
    assert_eq!(
        approved.ok()["certifications"].as_array().map(Vec::len),
        Some(2)
    );
    app.post(
        "/v1/admin/certifications/cert_none/approve",
        Some(&operator),
        &json!({}),
    )
    .await
    .expect_error(404, "NOT_FOUND");
}

async fn certification_requests_are_checked_before_anything_is_kept(app: TestApp) {
    let alice = app.user("alice").await;
    // A document over 10 MiB is refused while it streams, and nothing stays.
    let mut big = PDF.to_vec();
    big.resize(10 * 1024 * 1024 + 1, b' ');
    submit(
        &app,
        &alice,
        form(
            &certification_info("Alice"),
            &[("ok.pdf", PDF.to_vec()), ("big.pdf", big)],
        ),
    )
    .await
    .expect_error(413, "PAYLOAD_TOO_LARGE");
    let status = app
        .get("/v1/provider/certification", Some(&alice), &[])
        .await;
    assert_eq!(status.ok()["history"], json!([]));
    let objects = app.config.storage.dir.join("objects/certifications");
    let left = std::fs::read_dir(&objects)
        .map(|d| {
            d.filter_map(Result::ok)
                .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(left, 0, "documents of a refused submission stay behind");
    // Exactly 10 MiB is accepted.
    let mut max = PDF.to_vec();
    max.resize(10 * 1024 * 1024, b' ');
    submit(
        &app,
        &alice,
        form(&certification_info("Alice"), &[("max.pdf", max)]),
    )
    .await
    .ok();

    let bob = app.user("bob").await;
    // `info` must come first, and be valid JSON of its schema.
    let documents_first = Form::new()
        .part("document", Part::bytes(PDF.to_vec()).file_name("a.pdf"))
        .part("info", Part::text(certification_info("Bob").to_string()));
    submit(&app, &bob, documents_first)
        .await
        .expect_error(400, "INVALID_ARGUMENT");
    let mut info = certification_info("Bob");
    info["contactEmail"] = json!("not-an-address");
    info["extra"] = json!(1);
    let resp = submit(&app, &bob, form(&info, &[("a.pdf", PDF.to_vec())])).await;
    resp.expect_error(400, "INVALID_ARGUMENT");
    assert!(
        resp.error_msg().contains("/info/contactEmail"),
        "{}",
        resp.body
    );
    // Only multipart/form-data.
    app.post("/v1/provider/certification", Some(&bob), &info)
        .await
        .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    // Operators review; they do not certify themselves.
    let operator = app.operator().await;
    submit(
        &app,
        &operator,
        form(&certification_info("Op"), &[("a.pdf", PDF.to_vec())]),
    )
    .await
    .expect_error(403, "FORBIDDEN");
}

on_both_backends!(
    certification_is_reviewed_rejected_resubmitted_and_approved,
    certification_requests_are_checked_before_anything_is_kept,
);
