//! Notices of review outcomes, end to end: the whole path register → certify (reject with a
//! reason, resubmit, approve) → apply → approve → code, with every notice received by a real
//! SMTP server (aiosmtpd, started here) and a real HTTP SMS gateway (started here); with the mail
//! server down at approval, the notice waits in the outbox and arrives once it comes up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use crate::provider::{PDF, certification_info, form, submit};
use crate::support::plugins::repo_root;
use crate::support::{Backend, TestApp, free_port};

const SMS_TOKEN: &str = "Bearer sms-secret-1";

/// aiosmtpd on `port`, writing what it receives to `out` (tests/integration/support/smtp_sink.py).
struct SmtpServer {
    child: tokio::process::Child,
}

impl SmtpServer {
    async fn start(port: u16, out: &Path) -> SmtpServer {
        let mut child = tokio::process::Command::new("python3")
            .arg(repo_root().join("tests/integration/support/smtp_sink.py"))
            .arg(port.to_string())
            .arg(out)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test.sh installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the SMTP server starts")
            .expect("its output");
        assert_eq!(ready.as_deref(), Some("ready"));
        SmtpServer { child }
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Every message received so far.
fn mails(out: &Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// An SMS gateway: records each request's body and Authorization header.
type Received = Arc<Mutex<Vec<(Value, Option<String>)>>>;

async fn sms_gateway() -> (SocketAddr, Received) {
    let received: Received = Arc::default();
    let sink = Arc::clone(&received);
    let app = Router::new().route(
        "/send",
        post(move |headers: HeaderMap, body: String| {
            let sink = Arc::clone(&sink);
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                sink.lock().expect("lock").push((body, auth));
                "{\"ok\":true}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, received)
}

async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(v) = check() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn notices_reach_mail_and_sms_and_survive_a_mail_outage(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let out: PathBuf = dir.path().join("mail.jsonl");
    let smtp_port = free_port();
    let (sms_addr, sms) = sms_gateway().await;
    let secret = dir.path().join("sms-token");
    std::fs::write(&secret, format!("{SMS_TOKEN}\n")).expect("secret");
    let app = TestApp::spawn_with(backend, |config| {
        let n = &mut config.notifications;
        n.smtp_url = Some(format!("smtp://127.0.0.1:{smtp_port}"));
        n.email_from = "liutong <noreply@liutong.test>".to_owned();
        n.sms_url = Some(format!("http://{sms_addr}/send"));
        n.sms_auth_header = Some("Authorization".to_owned());
        n.sms_auth_secret = Some(format!("file:{}", secret.display()));
        n.retry_initial_ms = 100;
        n.retry_max_ms = 500;
        n.poll_interval_ms = 100;
    })
    .await;
    let smtp = SmtpServer::start(smtp_port, &out).await;
    let operator = app.operator().await;

    // Register and certify: rejected with a reason, resubmitted, approved.
    let acme = app.user("acme").await;
    let mut info = certification_info("Acme 算力");
    info["contactEmail"] = json!("ops@acme.example");
    let first = submit(&app, &acme, form(&info, &[("l.pdf", PDF.to_vec())])).await;
    let first_id = first.ok()["certificationId"]
        .as_str()
        .expect("id")
        .to_owned();
    app.post(
        &format!("/v1/admin/certifications/{first_id}/reject"),
        Some(&operator),
        &json!({"reason": "营业执照不清晰"}),
    )
    .await
    .ok();
    let mail = eventually("the rejection mail", || {
        mails(&out).into_iter().find(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.contains("营业执照不清晰"))
        })
    })
    .await;
    assert_eq!(mail["to"], json!(["ops@acme.example"]));
    assert_eq!(mail["from"], "noreply@liutong.test");
    eventually("the rejection SMS", || {
        let got = sms.lock().expect("lock");
        got.iter()
            .find(|(b, _)| {
                b["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("营业执照不清晰"))
            })
            .cloned()
    })
    .await;

    let second = submit(&app, &acme, form(&info, &[("l2.pdf", PDF.to_vec())])).await;
    let second_id = second.ok()["certificationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let approved = app
        .post(
            &format!("/v1/admin/certifications/{second_id}/approve"),
            Some(&operator),
            &json!({}),
        )
        .await;
    let enterprise_id = approved.ok()["enterpriseId"]
        .as_str()
        .expect("id")
        .to_owned();
    eventually("the approval mail with the enterprise id", || {
        mails(&out).into_iter().find(|m| {
            m["body"]
                .as_str()
                .is_some_and(|b| b.contains(&enterprise_id))
        })
    })
    .await;

    // The mail server goes down; the code is approved anyway and its notice waits.
    smtp.stop().await;
    let applied = app
        .post(
            "/v1/provider/identifiers",
            Some(&acme),
            &json!({"province": "440000", "city": "440300", "zone": "1", "industry": "65"}),
        )
        .await;
    let application = applied.ok()["applicationId"]
        .as_str()
        .expect("id")
        .to_owned();
    let decided = app
        .post(
            &format!("/v1/admin/identifier-applications/{application}/approve"),
            Some(&operator),
            &json!({}),
        )
        .await;
    let code = decided.ok()["code"].as_str().expect("code").to_owned();
    // The SMS carries the code, with the gateway's credentials from the secret file.
    let (body, auth) = eventually("the code's SMS", || {
        let got = sms.lock().expect("lock");
        got.iter()
            .find(|(b, _)| b["message"].as_str().is_some_and(|m| m.contains(&code)))
            .cloned()
    })
    .await;
    assert_eq!(body["phone"], "13800138000");
    assert_eq!(auth.as_deref(), Some(SMS_TOKEN));
    // The mail is pending with the connection error, retried with backoff.
    let mut last_error = String::new();
    for _ in 0..100 {
        let list = app
            .get(
                "/v1/admin/notifications",
                Some(&operator),
                &[("status", "pending")],
            )
            .await;
        let notices = list.ok()["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(n) = notices
            .iter()
            .find(|n| n["channel"] == "email" && n["attempts"].as_i64() >= Some(1))
        {
            assert!(n["body"].as_str().is_some_and(|b| b.contains(&code)));
            last_error = n["lastError"].as_str().unwrap_or_default().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!last_error.is_empty(), "no failed attempt recorded");
    assert!(
        !mails(&out)
            .iter()
            .any(|m| m["body"].as_str().is_some_and(|b| b.contains(&code)))
    );

    // It comes back: the notice arrives, once.
    let smtp = SmtpServer::start(smtp_port, &out).await;
    eventually("the code's mail after the outage", || {
        mails(&out)
            .into_iter()
            .find(|m| m["body"].as_str().is_some_and(|b| b.contains(&code)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let copies = mails(&out)
        .iter()
        .filter(|m| m["body"].as_str().is_some_and(|b| b.contains(&code)))
        .count();
    assert_eq!(copies, 1);
    let sent = app
        .get(
            "/v1/admin/notifications",
            Some(&operator),
            &[("status", "sent")],
        )
        .await;
    let sent = sent.ok()["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Three outcomes (rejection, approval, code), each by mail and SMS.
    assert_eq!(sent.len(), 6, "{sent:?}");
    let failed = app
        .get(
            "/v1/admin/notifications",
            Some(&operator),
            &[("status", "failed")],
        )
        .await;
    assert_eq!(failed.ok()["notifications"], json!([]));
    smtp.stop().await;
}

/// A gateway that never accepts: after `max_attempts` the notice is `failed` with its error.
async fn undeliverable_notices_fail_with_their_error(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        let n = &mut config.notifications;
        n.sms_url = Some(format!("http://127.0.0.1:{}/send", free_port()));
        n.max_attempts = 3;
        n.retry_initial_ms = 50;
        n.retry_max_ms = 100;
        n.poll_interval_ms = 50;
    })
    .await;
    let operator = app.operator().await;
    let acme = app.user("acme").await;
    let created = submit(
        &app,
        &acme,
        form(&certification_info("Acme"), &[("l.pdf", PDF.to_vec())]),
    )
    .await;
    let id = created.ok()["certificationId"]
        .as_str()
        .expect("id")
        .to_owned();
    app.post(
        &format!("/v1/admin/certifications/{id}/approve"),
        Some(&operator),
        &json!({}),
    )
    .await
    .ok();
    for _ in 0..200 {
        let failed = app
            .get(
                "/v1/admin/notifications",
                Some(&operator),
                &[("status", "failed")],
            )
            .await;
        if let Some(n) = failed.ok()["notifications"]
            .as_array()
            .and_then(|a| a.first())
        {
            assert_eq!(n["channel"], "sms");
            assert_eq!(n["attempts"], 3);
            assert!(
                n["lastError"]
                    .as_str()
                    .is_some_and(|e| e.contains("SMS gateway"))
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the notice never failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_notices_reach_mail_and_sms_and_survive_a_mail_outage() {
    notices_reach_mail_and_sms_and_survive_a_mail_outage(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notices_reach_mail_and_sms_and_survive_a_mail_outage() {
    notices_reach_mail_and_sms_and_survive_a_mail_outage(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_undeliverable_notices_fail_with_their_error() {
    undeliverable_notices_fail_with_their_error(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_undeliverable_notices_fail_with_their_error() {
    undeliverable_notices_fail_with_their_error(Backend::Postgres).await;
}
