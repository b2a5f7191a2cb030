//! The "done when": a client with nothing but Python's `cryptography` package and the
//! `age` command-line tool (examples/trade.py) runs a trade end to end against the real binary,
//! verifies every signature against GET /v1/keys, decrypts the delivered file, and is refused
//! for forged, foreign, superseded and expired licenses. `scripts/test.sh` installs `age` and
//! `cryptography` when they are missing; this test never skips.

use std::time::Duration;

use crate::support::{Backend, OPERATOR_PASSWORD, TestApp};

async fn python_client_trades_end_to_end(backend: Backend) {
    // A short license term, so the client can watch its license expire.
    let mut app = TestApp::spawn_binary(backend, "license_term_secs = 10\n").await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/trade.py");
    let python = std::env::var("LIUTONG_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    for tool in ["age", "age-keygen"] {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`{tool}` is needed (apt-get install age); scripts/test.sh installs it"
        );
    }
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new(&python)
            .arg(&script)
            .args(["--base", &format!("http://{}", app.addr)])
            .env("LIUTONG_OPERATOR_PASSWORD", OPERATOR_PASSWORD)
            .output(),
    )
    .await
    .expect("the client finishes")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "examples/trade.py failed:\n{stdout}\n{stderr}"
    );
    for line in [
        "payment proof, license and watermark verified",
        "the delivered file decrypts to the original bytes",
        "refused (403 FORBIDDEN): forged license",
        "refused (403 FORBIDDEN): tampered license",
        "refused (403 FORBIDDEN): foreign license",
        "refused (403 FORBIDDEN): superseded license",
        "refused (403 FORBIDDEN): expired license",
        "trade complete: every check passed",
    ] {
        assert!(
            stdout.contains(line),
            "client output lacks '{line}':\n{stdout}"
        );
    }
    app.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_trades_end_to_end_sqlite() {
    python_client_trades_end_to_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_trades_end_to_end_postgres() {
    python_client_trades_end_to_end(Backend::Postgres).await;
}
