//! `liutong plugin …`: publisher keys, signing and verifying packages, and the plugin author's
//! whole path — a new billing plugin written outside the repository, built, signed, installed
//! on a running server without a restart, and charging the next settlement by its rule.

use std::path::{Path, PathBuf};
use std::time::Duration;

use liutong_plugin_runtime::{Package, PublisherKey};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::plugins::{component_path, manifest_path, repo_root, shared_cache_dir};
use crate::support::{Backend, OPERATOR_PASSWORD, TestApp, binary};

struct Out {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Out {
    #[track_caller]
    fn ok(&self) -> &str {
        assert!(
            self.success,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts failure and that stderr says `why`.
    #[track_caller]
    fn refused(&self, why: &str) {
        assert!(
            !self.success,
            "command succeeded; expected a refusal ({why}):\n{}",
            self.stdout
        );
        assert!(
            self.stderr.contains(why),
            "expected {why:?} in the error, got: {}",
            self.stderr
        );
    }
}

/// Runs `liutong <args>` in `cwd` with `envs`, `stdin` on standard input, for at most
/// `timeout` (a build compiles).
async fn liutong_in(
    cwd: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: Option<&str>,
    timeout: Duration,
) -> Out {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(binary());
    command
        .args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("LIUTONG_CONFIG")
        .env_remove("LIUTONG_TOKEN")
        .env_remove("LIUTONG_SERVER")
        // Builds of guests must not pick up the host's flags or target directory.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("LIUTONG_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("liutong starts");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(text) = stdin {
            let _ = pipe.write_all(format!("{text}\n").as_bytes()).await;
        }
        drop(pipe);
    }
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("liutong {args:?} did not finish in {timeout:?}"))
        .expect("liutong output");
    Out {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn liutong(cwd: &Path, args: &[&str]) -> Out {
    liutong_in(cwd, args, &[], None, Duration::from_secs(120)).await
}

fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn toml_string(path: &Path) -> String {
    toml::Value::String(s(path).to_owned()).to_string()
}

/// A publisher key made with `keygen`, and a trust directory holding its public half.
async fn key_and_trust(dir: &Path, publisher: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{publisher}.key"));
    liutong(
        dir,
        &[
            "plugin",
            "keygen",
            "--publisher",
            publisher,
            "--out",
            s(&key),
        ],
    )
    .await
    .ok();
    let trust = dir.join(format!("trust-{publisher}"));
    std::fs::create_dir_all(&trust).expect("trust dir");
    std::fs::copy(
        PublisherKey::public_path(&key),
        trust.join(format!("{publisher}.pub")),
    )
    .expect("copy .pub");
    (key, trust)
}

#[tokio::test]
async fn keygen_writes_a_private_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("keys/acme.key");
    let out = liutong(
        dir.path(),
        &["plugin", "keygen", "--publisher", "acme", "--out", s(&key)],
    )
    .await;
    let stdout = out.ok();
    let loaded = PublisherKey::load(&key).expect("the key loads");
    assert_eq!(loaded.publisher, "acme");
    assert!(stdout.contains(&loaded.key_id()), "{stdout}");
    assert!(stdout.contains("trust_dir"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the secret key must be private");
    }
    let public = std::fs::read_to_string(PublisherKey::public_path(&key)).expect(".pub");
    let public: serde_json::Value = serde_json::from_str(&public).expect(".pub is JSON");
    assert_eq!(public["publisher"], "acme");
    assert_eq!(public["keyId"], loaded.key_id());

    let before = std::fs::read(&key).expect("key");
    let again = liutong(
        dir.path(),
        &["plugin", "keygen", "--publisher", "acme", "--out", s(&key)],
    )
    .await;
    again.refused("exists already");
    assert_eq!(
        std::fs::read(&key).expect("key"),
        before,
        "the key was overwritten"
    );
    liutong(
        dir.path(),
        &["plugin", "keygen", "--publisher", " ", "--out", "other.key"],
    )
    .await
    .refused("--publisher must not be empty");
}

#[tokio::test]
async fn sign_and_verify_round_trip() {
    let component = component_path("billing-flat-fee");
    let manifest = manifest_path("billing-flat-fee");
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, trust) = key_and_trust(dir.path(), "acme").await;
    let out = liutong(
        dir.path(),
        &[
            "plugin",
            "sign",
            "--key",
            s(&key),
            "--manifest",
            s(&manifest),
            "--component",
            s(&component),
        ],
    )
    .await;
    assert!(out.ok().contains("flat-fee-0.1.0.ltpkg"), "{}", out.stdout);
    let package = dir.path().join("flat-fee-0.1.0.ltpkg");
    assert!(
        package.is_file(),
        "default output: <id>-<version>.ltpkg here"
    );

    let out = liutong(
        dir.path(),
        &["plugin", "verify", s(&package), "--trust-dir", s(&trust)],
    )
    .await;
    let stdout = out.ok();
    let sha = hex::encode(Sha256::digest(std::fs::read(&component).expect("wasm")));
    let key_id = PublisherKey::load(&key).expect("key").key_id();
    for (field, value) in [
        ("id:", "flat-fee"),
        ("version:", "0.1.0"),
        ("kind:", "billing"),
        ("wit:", "0.1.0"),
        ("publisher:", "acme"),
        ("key id:", key_id.as_str()),
        ("component sha256:", sha.as_str()),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(field) && l.trim_end().ends_with(value)),
            "verify lacks {field} {value}: {stdout}"
        );
    }

    // --dir finds the component where the guests' workspace builds it; --out may be a folder.
    let out_dir = dir.path().join("packages");
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let guest = repo_root().join("plugins/guests/billing-per-token");
    component_path("billing-per-token");
    liutong(
        dir.path(),
        &[
            "plugin",
            "sign",
            "--key",
            s(&key),
            "--dir",
            s(&guest),
            "--out",
            s(&out_dir),
        ],
    )
    .await
    .ok();
    let signed = out_dir.join("per-token-0.1.0.ltpkg");
    liutong(
        dir.path(),
        &["plugin", "verify", s(&signed), "--trust-dir", s(&trust)],
    )
    .await
    .ok();

    // Signing checks what it signs.
    let core_module = dir.path().join("core.wasm");
    std::fs::write(&core_module, b"\0asm\x01\0\0\0").expect("module");
    liutong(
        dir.path(),
        &[
            "plugin",
            "sign",
            "--key",
            s(&key),
            "--manifest",
            s(&manifest),
            "--component",
            s(&core_module),
        ],
    )
    .await
    .refused("not a WebAssembly component");
    let bad_manifest = dir.path().join("plugin.toml");
    std::fs::write(
        &bad_manifest,
        std::fs::read_to_string(&manifest)
            .expect("manifest")
            .replace("id = \"flat-fee\"", "id = \"Flat_Fee\""),
    )
    .expect("manifest");
    liutong(
        dir.path(),
        &[
            "plugin",
            "sign",
            "--key",
            s(&key),
            "--manifest",
            s(&bad_manifest),
            "--component",
            s(&component),
        ],
    )
    .await
    .refused("not a plugin id");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    liutong(
        dir.path(),
        &["plugin", "sign", "--key", s(&key), "--dir", s(&empty)],
    )
    .await
    .refused("no Cargo.toml");
}

/// The byte offset of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in the package")
}

#[tokio::test]
async fn verify_refuses_untrusted_tampered_unsigned_and_invalid_packages() {
    let component = std::fs::read(component_path("billing-flat-fee")).expect("wasm");
    let manifest = std::fs::read_to_string(manifest_path("billing-flat-fee")).expect("manifest");
    let dir = tempfile::tempdir().expect("temp dir");
    let (key, trust) = key_and_trust(dir.path(), "acme").await;
    let (_, other_trust) = key_and_trust(dir.path(), "mallory").await;
    let publisher = PublisherKey::load(&key).expect("key");
    let good = publisher
        .sign(Package::build(manifest.clone(), component.clone()))
        .to_bytes();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("package");
        path
    };
    let verify = |package: PathBuf, trust: PathBuf| {
        let cwd = dir.path().to_path_buf();
        async move {
            liutong(
                &cwd,
                &["plugin", "verify", s(&package), "--trust-dir", s(&trust)],
            )
            .await
        }
    };

    let package = write("good.ltpkg", &good);
    verify(package.clone(), trust.clone()).await.ok();
    // Signed by a key this trust store does not hold.
    verify(package, other_trust)
        .await
        .refused("which is not in the trust store");

    // One byte of the component flipped inside the tar (tar headers do not cover data).
    let mut tampered = good.clone();
    let at = find(&tampered, &component[..64]) + 1000;
    tampered[at] ^= 0x01;
    verify(write("tampered.ltpkg", &tampered), trust.clone())
        .await
        .refused("modified after signing: its component (plugin.wasm)");

    // The manifest edited after signing (same length, so the tar stays well-formed).
    let mut edited = good.clone();
    let at = find(&edited, b"version = \"0.1.0\"");
    edited[at + 11] = b'9';
    verify(write("edited.ltpkg", &edited), trust.clone())
        .await
        .refused("modified after signing: its manifest (plugin.toml)");

    let unsigned = Package::build(manifest.clone(), component.clone()).to_bytes();
    verify(write("unsigned.ltpkg", &unsigned), trust.clone())
        .await
        .refused("not signed");

    let invalid = publisher
        .sign(Package::build(
            manifest.replace("kind = \"billing\"", "kind = \"pricing\""),
            component.clone(),
        ))
        .to_bytes();
    verify(write("invalid.ltpkg", &invalid), trust.clone())
        .await
        .refused("plugin.toml is invalid: `kind`");

    verify(write("junk.ltpkg", b"not a package"), trust.clone())
        .await
        .refused("malformed plugin package");
    liutong(
        dir.path(),
        &[
            "plugin",
            "verify",
            "missing.ltpkg",
            "--trust-dir",
            s(&trust),
        ],
    )
    .await
    .refused("missing.ltpkg");
}

#[tokio::test]
async fn new_checks_the_name_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("temp dir");
    let parent = s(dir.path());
    for bad in ["My-Fee", "1fee", "my_fee", "my fee"] {
        liutong(
            dir.path(),
            &["plugin", "new", bad, "--kind", "billing", "--dir", parent],
        )
        .await
        .refused("is not a plugin id");
    }
    for kind in ["billing", "policy", "adapter", "provider"] {
        let name = format!("my-{kind}");
        liutong(
            dir.path(),
            &["plugin", "new", &name, "--kind", kind, "--dir", parent],
        )
        .await
        .ok();
        let project = dir.path().join(&name);
        for file in [
            "Cargo.toml",
            "plugin.toml",
            "src/lib.rs",
            "README.md",
            ".gitignore",
            "harness/Cargo.toml",
            "harness/tests/plugin.rs",
        ] {
            assert!(project.join(file).is_file(), "{name} lacks {file}");
        }
        let manifest = std::fs::read(project.join("plugin.toml")).expect("manifest");
        let manifest = liutong_plugin_runtime::Manifest::parse(&manifest).expect("valid manifest");
        assert_eq!(
            (manifest.id.as_str(), manifest.kind.as_str()),
            (name.as_str(), kind)
        );
        let cargo = std::fs::read_to_string(project.join("Cargo.toml")).expect("Cargo.toml");
        assert!(
            cargo.contains("[workspace]") && cargo.contains("cdylib"),
            "{cargo}"
        );
        // Every template builds, and the runtime loads it as its kind (its world is checked).
        let _ = component_path("billing-flat-fee"); // the guests' dependencies, built once
        let guests_target = repo_root().join("plugins/guests/target");
        let out = liutong_in(
            dir.path(),
            &["plugin", "build", "--dir", s(&project)],
            &[("CARGO_TARGET_DIR", s(&guests_target))],
            None,
            Duration::from_secs(900),
        )
        .await;
        let wasm = PathBuf::from(out.ok().trim());
        liutong_plugin_runtime::testing::Harness::from_component(
            project.join("plugin.toml"),
            &wasm,
        )
        .unwrap_or_else(|e| panic!("the {kind} template does not load: {e}"));
    }
    liutong(
        dir.path(),
        &[
            "plugin",
            "new",
            "my-billing",
            "--kind",
            "billing",
            "--dir",
            parent,
        ],
    )
    .await
    .refused("exists already");
    liutong(
        dir.path(),
        &[
            "plugin", "new", "other", "--kind", "billing", "--dir", parent, "--sdk", parent,
        ],
    )
    .await
    .refused("--sdk");
}

/// The acceptance test of the plugin system: an operator writes a new billing plugin outside
/// the repository following docs/plugins.md, signs it, installs it on a running server without
/// a restart, and the next settlement charges by its rule — on SQLite, then PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_plugin_written_outside_the_repo_charges_the_next_settlement() {
    // The guests' workspace is built first: the new plugin reuses its compiled dependencies.
    component_path("billing-flat-fee");
    let guests_target = repo_root().join("plugins/guests/target");
    let work = tempfile::tempdir().expect("temp dir");
    let work = work.path();

    // 1. A new project, outside the repository.
    let out = liutong(
        work,
        &[
            "plugin",
            "new",
            "my-fee",
            "--kind",
            "billing",
            "--dir",
            s(work),
        ],
    )
    .await;
    assert!(
        out.ok().contains("created the billing plugin my-fee"),
        "{}",
        out.stdout
    );
    let project = work.join("my-fee");

    // 2. Build it (reusing what build-plugins.sh compiled).
    let out = liutong_in(
        work,
        &["plugin", "build", "--dir", s(&project)],
        &[("CARGO_TARGET_DIR", s(&guests_target))],
        None,
        Duration::from_secs(900),
    )
    .await;
    let wasm = PathBuf::from(out.ok().trim());
    assert!(wasm.is_file(), "build printed {:?}", out.stdout);
    assert!(wasm.starts_with(&guests_target), "{}", wasm.display());
    assert!(
        !out.stderr.contains("Compiling wit-bindgen"),
        "the SDK's dependencies were compiled again:\n{}",
        out.stderr
    );

    // 3. A publisher key, and the package signed with it.
    let (key, trust) = key_and_trust(work, "acme").await;
    liutong_in(
        work,
        &["plugin", "sign", "--key", s(&key), "--dir", s(&project)],
        &[("CARGO_TARGET_DIR", s(&guests_target))],
        None,
        Duration::from_secs(120),
    )
    .await
    .ok();
    let package = work.join("my-fee-0.1.0.ltpkg");
    liutong(
        work,
        &["plugin", "verify", s(&package), "--trust-dir", s(&trust)],
    )
    .await
    .ok();

    let extra_toml = format!(
        "[plugins]\ntrust_dir = {}\ncache_dir = {}\n",
        toml_string(&trust),
        toml_string(&shared_cache_dir())
    );
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = TestApp::spawn_binary(backend, &extra_toml).await;
        let server = format!("http://{}", app.addr);

        // 4. Installed on the running server, as the operator (password on stdin).
        let out = liutong_in(
            work,
            &[
                "plugin",
                "install",
                s(&package),
                "--server",
                &server,
                "--username",
                "operator",
            ],
            &[],
            Some(OPERATOR_PASSWORD),
            Duration::from_secs(120),
        )
        .await;
        assert!(
            out.ok().contains("installed my-fee 0.1.0 (billing)"),
            "{backend:?}: {}",
            out.stdout
        );
        let operator = app.operator().await;
        let out = liutong_in(
            work,
            &["plugin", "list", "--server", &server],
            &[("LIUTONG_TOKEN", &operator)],
            None,
            Duration::from_secs(60),
        )
        .await;
        let row = out
            .ok()
            .lines()
            .find(|l| l.starts_with("my-fee "))
            .unwrap_or_else(|| panic!("no my-fee row: {}", out.stdout))
            .to_owned();
        for cell in ["billing", "0.1.0", "yes", "loaded"] {
            assert!(row.contains(cell), "{row}");
        }
        // A second install of the same package changes nothing.
        let again = liutong_in(
            work,
            &["plugin", "install", s(&package), "--server", &server],
            &[("LIUTONG_TOKEN", &operator)],
            None,
            Duration::from_secs(60),
        )
        .await;
        assert!(again.ok().contains("installed already"), "{}", again.stdout);
        // The server's refusals come back as `code: errorMsg` with a non-zero exit.
        liutong_in(
            work,
            &["plugin", "install", s(&package), "--server", &server],
            &[("LIUTONG_TOKEN", "not-a-token")],
            None,
            Duration::from_secs(60),
        )
        .await
        .refused("UNAUTHENTICATED");

        // 5. The plugin becomes the default billing rule and this publication's rule, with a
        //    handling fee of 1.50.
        let alice = app.party("alice").await;
        let carol = app.buyer("carol").await;
        let listing = app
            .listing(&alice, "ct-2024", Some(19.99), b"chest CT scans")
            .await;
        app.credit("carol", 50.0, "wire-1").await.ok();
        app.send(
            app.client
                .put(app.url("/v1/admin/plugins/default"))
                .header("X-Auth-Token", &operator)
                .json(&json!({"kind": "billing", "plugin": "my-fee"})),
        )
        .await
        .ok();
        app.send(
            app.client
                .put(app.url("/v1/admin/billing-rules"))
                .header("X-Auth-Token", &operator)
                .json(&json!({
                    "registrationID": listing.registration_id,
                    "plugin": "my-fee",
                    "config": {"handlingFee": 150},
                })),
        )
        .await
        .ok();

        // 6. The next settlement charges price + handling fee, and says which rule did.
        let (_, settled) = app.settled_trade(&carol, &listing).await;
        let proof = &settled["payment_proof"];
        assert_eq!(
            proof["billing"], "plugin my-fee@0.1.0",
            "{backend:?}: {proof}"
        );
        assert_eq!(proof["amountMinor"], 2149, "{proof}");
        assert_eq!(proof["platformFeeMinor"], 150, "{proof}");
        assert_eq!(proof["providerShareMinor"], 1999, "{proof}");
        let items = proof["lineItems"].to_string();
        assert!(items.contains("handling fee"), "{items}");
        assert!((app.balance(&carol.token).await - (50.0 - 21.49)).abs() < 1e-9);
        assert!((app.balance(&alice.token).await - 19.99).abs() < 1e-9);

        // 7. The call is in the audit trail.
        let calls = app
            .get(
                "/v1/admin/plugin-calls",
                Some(&operator),
                &[("plugin", "my-fee")],
            )
            .await;
        let calls = calls.ok();
        assert_eq!(calls["calls"][0]["outcome"], "ok", "{calls}");
        assert_eq!(calls["calls"][0]["operation"], "charge-trade", "{calls}");

        // 8. Failures, as docs/plugins.md describes them: no money moves, the confirmation
        //    stays open, and it settles once the rule is fixed.
        let second = app
            .listing(&alice, "ct-2025", Some(10.0), b"more CT scans")
            .await;
        let rule = |config: serde_json::Value| {
            app.client
                .put(app.url("/v1/admin/billing-rules"))
                .header("X-Auth-Token", &operator)
                .json(&json!({
                    "registrationID": second.registration_id,
                    "plugin": "my-fee",
                    "config": config,
                }))
        };
        app.send(rule(json!({"handlingFee": -1}))).await.ok();
        let confirm_id = app.confirm(&carol, &second.registration_id).await;
        let failed = app.settle(&carol.token, &confirm_id).await;
        failed.expect_error(502, "PLUGIN_FAILED");
        assert!(
            failed
                .error_msg()
                .starts_with("billing rule 'plugin my-fee@0.1.0' failed: invalid config"),
            "{}",
            failed.error_msg()
        );
        app.send(rule(json!({"handlingFee": 50}))).await.ok();
        let disable = |path: &'static str| {
            app.client
                .post(app.url(path))
                .header("X-Auth-Token", &operator)
                .json(&json!({"plugin": "my-fee"}))
        };
        app.send(disable("/v1/admin/plugins/disable")).await.ok();
        let unavailable = app.settle(&carol.token, &confirm_id).await;
        unavailable.expect_error(503, "SERVICE_UNAVAILABLE");
        assert!(
            unavailable
                .error_msg()
                .contains("billing plugin 'my-fee' is disabled"),
            "{}",
            unavailable.error_msg()
        );
        assert!((app.balance(&carol.token).await - (50.0 - 21.49)).abs() < 1e-9);
        app.send(disable("/v1/admin/plugins/enable")).await.ok();
        let settled = app.settle(&carol.token, &confirm_id).await;
        assert_eq!(settled.ok()["payment_proof"]["amountMinor"], 1050);
    }
}
