//! The `liutong` binary: help, migrations, accounts, configuration and serving.

use std::time::Duration;

use crate::support::{Backend, TestDb, cli};

#[tokio::test]
async fn help_explains_every_command() {
    let out = cli(&["--help"]).run().await;
    assert!(out.success, "{}", out.stderr);
    for word in ["serve", "migrate", "account", "--config"] {
        assert!(
            out.stdout.contains(word),
            "--help lacks {word}: {}",
            out.stdout
        );
    }
    let out = cli(&["serve", "--help"]).run().await;
    for word in [
        "--listen",
        "--database",
        "LIUTONG_LISTEN",
        "DATABASE_URL",
        "LIUTONG_OPERATOR_PASSWORD",
    ] {
        assert!(
            out.stdout.contains(word),
            "serve --help lacks {word}: {}",
            out.stdout
        );
    }
    let out = cli(&["bogus"]).run().await;
    assert!(!out.success);
}

async fn migrate_and_create_accounts(backend: Backend) {
    let db = TestDb::create(backend).await;
    let out = cli(&["migrate", "--database", &db.url()]).run().await;
    assert!(out.success, "{}", out.stderr);
    // Migrating twice is harmless.
    let out = cli(&["migrate"]).env("DATABASE_URL", db.url()).run().await;
    assert!(out.success, "{}", out.stderr);

    let create = |name: &str, role: &str, password: &str| {
        cli(&[
            "account",
            "create",
            "--username",
            name,
            "--role",
            role,
            "--database",
            &db.url(),
        ])
        .stdin_text(password)
    };
    let out = create("ops", "operator", "operator-pass-2").run().await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("ops"));
    let out = create("ops", "operator", "operator-pass-2").run().await;
    assert!(!out.success, "duplicate accepted");
    assert!(out.stderr.contains("already registered"), "{}", out.stderr);
    let out = create("weak", "enterprise", "short").run().await;
    assert!(!out.success);
    assert!(out.stderr.contains("password"), "{}", out.stderr);
    let out = create("odd", "king", "fine-pass-1").run().await;
    assert!(!out.success);
}

#[tokio::test]
async fn migrate_and_create_accounts_sqlite() {
    migrate_and_create_accounts(Backend::Sqlite).await;
}

#[tokio::test]
async fn migrate_and_create_accounts_postgres() {
    migrate_and_create_accounts(Backend::Postgres).await;
}

/// Waits until the server answers /healthz.
async fn wait_healthy(base: &str) -> bool {
    let client = crate::support::http_client();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn serve_defaults_to_sqlite_in_data_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(crate::support::binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("LIUTONG_CONFIG")
        .env("LIUTONG_OPERATOR_PASSWORD", "operator-pass-3")
        .env("LIUTONG_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    assert!(wait_healthy(&base).await, "server did not come up");
    assert!(
        dir.path().join("data/liutong.db").exists(),
        "default database not created"
    );
    let resp = crate::support::http_client()
        .post(format!("{base}/v1/account/token"))
        .json(&serde_json::json!({"username": "operator", "password": "operator-pass-3"}))
        .send()
        .await
        .expect("token request");
    assert!(
        resp.status().is_success(),
        "bootstrap operator cannot log in"
    );

    let pid = child.id().expect("pid").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("server stops after SIGTERM")
        .expect("exit status");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn config_file_then_env_then_flags() {
    let dir = tempfile::tempdir().expect("dir");
    let file_port = free_port();
    let db_path = dir.path().join("from-file.db");
    let config = dir.path().join("liutong.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{file_port}\"\ndatabase_url = \"{}\"\n\
             verify_every_delivery = true\n",
            liutong::config::sqlite_url(&db_path)
        ),
    )
    .expect("write config");
    // The file alone decides.
    let mut child = tokio::process::Command::new(crate::support::binary())
        .args(["--config", config.to_str().expect("path"), "serve"])
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env_remove("LIUTONG_LISTEN")
        .env("LIUTONG_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    assert!(wait_healthy(&format!("http://127.0.0.1:{file_port}")).await);
    assert!(db_path.exists());
    child.kill().await.ok();

    // The environment overrides the file, and a flag overrides the environment.
    let env_port = free_port();
    let flag_port = free_port();
    let mut child = tokio::process::Command::new(crate::support::binary())
        .args(["--config", config.to_str().expect("path"), "serve"])
        .args(["--listen", &format!("127.0.0.1:{flag_port}")])
        .current_dir(dir.path())
        .env("LIUTONG_LISTEN", format!("127.0.0.1:{env_port}"))
        .env_remove("DATABASE_URL")
        .env("LIUTONG_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("serve starts");
    assert!(wait_healthy(&format!("http://127.0.0.1:{flag_port}")).await);
    child.kill().await.ok();

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:1\"\nunknown_key = 1\n").expect("write");
    let out = cli(&["--config", bad.to_str().expect("path"), "migrate"])
        .run()
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("unknown_key") || out.stderr.contains("unknown field"),
        "{}",
        out.stderr
    );

    // A value out of its range is refused by name, before the server starts.
    std::fs::write(&bad, "[compute]\nbill_lookback_days = 0\n").expect("write");
    let out = cli(&["--config", bad.to_str().expect("path"), "serve"])
        .run()
        .await;
    assert!(!out.success);
    assert!(out.stderr.contains("bill_lookback_days"), "{}", out.stderr);
    // So is every other command's.
    let db = liutong::config::sqlite_url(&dir.path().join("migrate.db"));
    let out = cli(&[
        "--config",
        bad.to_str().expect("path"),
        "migrate",
        "--database",
        &db,
    ])
    .run()
    .await;
    assert!(!out.success);
    assert!(out.stderr.contains("bill_lookback_days"), "{}", out.stderr);
    assert!(
        !dir.path().join("migrate.db").exists(),
        "refused before connecting"
    );
}

#[tokio::test]
async fn keys_init_show_and_refuse_to_overwrite() {
    let dir = tempfile::tempdir().expect("dir");
    let keys = dir.path().join("keys");
    let keys = keys.to_str().expect("path");
    let out = cli(&["keys", "show", "--keys-dir", keys]).run().await;
    assert!(!out.success, "show without keys must fail");
    assert!(out.stderr.contains("keys init"), "{}", out.stderr);
    let out = cli(&["keys", "init", "--keys-dir", keys]).run().await;
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("signing key ed25519-"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("(current)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("escrow recipient age1"),
        "{}",
        out.stdout
    );
    let out = cli(&["keys", "init"])
        .env("LIUTONG_KEYS_DIR", keys)
        .run()
        .await;
    assert!(!out.success);
    assert!(out.stderr.contains("already exist"), "{}", out.stderr);
    let out = cli(&["keys", "--help"]).run().await;
    for word in ["init", "rotate", "show"] {
        assert!(out.stdout.contains(word), "keys --help lacks {word}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let pem = std::fs::read_dir(dir.path().join("keys/signing"))
            .expect("signing dir")
            .next()
            .expect("a key")
            .expect("entry");
        let mode = pem.metadata().expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A key file others can read stops the server from starting.
        std::fs::set_permissions(pem.path(), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let out = cli(&["keys", "show", "--keys-dir", keys]).run().await;
        assert!(!out.success);
        assert!(out.stderr.contains("chmod 600"), "{}", out.stderr);
    }
}

#[tokio::test]
async fn invalid_trading_settings_stop_the_start() {
    let dir = tempfile::tempdir().expect("dir");
    for bad in [
        "platform_fee_bps = 10001\n",
        "license_term_secs = 0\n",
        "confirmation_ttl_secs = 0\n",
        "max_json_delivery = 0\n",
        "currency = \"yuan\"\n",
        "[s3]\nbucket = \"\"\n",
        "[s3]\nbucket = \"b\"\nunknown = 1\n",
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, bad).expect("write");
        let out = cli(&[
            "--config",
            config.to_str().expect("path"),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env(
            "DATABASE_URL",
            liutong::config::sqlite_url(&dir.path().join("x.db")),
        )
        .env("LIUTONG_KEYS_DIR", dir.path().join("keys"))
        .run()
        .await;
        assert!(!out.success, "{bad:?} was accepted");
        assert!(!out.stderr.is_empty(), "{bad:?}: no explanation");
    }
}

/// `--database sqlite://PATH` without `?mode=rwc` creates the file, as the default database
/// does; a URL that chooses its own mode keeps it.
#[tokio::test]
async fn a_plain_sqlite_url_creates_the_database() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("new/plain.db");
    let url = format!("sqlite://{}", path.display());
    let out = cli(&["migrate", "--database", &url]).run().await;
    assert!(out.success, "{}", out.stderr);
    assert!(path.is_file(), "{} was not created", path.display());
    let out = cli(&[
        "account",
        "create",
        "--username",
        "ops",
        "--role",
        "operator",
    ])
    .env("DATABASE_URL", &url)
    .stdin_text("operator-pass-2")
    .run()
    .await;
    assert!(out.success, "{}", out.stderr);

    let missing = dir.path().join("missing.db");
    let read_only = format!("sqlite://{}?mode=ro", missing.display());
    let out = cli(&["migrate", "--database", &read_only]).run().await;
    assert!(!out.success, "mode=ro created {}", missing.display());
    assert!(!missing.exists());
}
