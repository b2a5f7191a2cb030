//! `liutong plugin …`: the plugin author's and operator's tools — publisher keys, a new plugin
//! project, building, signing and verifying packages, and installing them on a server.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use liutong_plugin_runtime::package::is_component;
use liutong_plugin_runtime::{Manifest, Package, PluginKind, PublisherKey, TrustStore};
use serde_json::{Value, json};

use crate::config::Config;

const WASM_TARGET: &str = "wasm32-wasip2";

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a publisher signing key: FILE (secret, mode 0600) and FILE.pub (public, JSON).
    ///
    /// Copy FILE.pub into every server's trust directory (plugins.trust_dir, default
    /// ./data/trusted-publishers) and restart it; keep FILE secret.
    Keygen {
        /// Publisher name recorded in the key and in every package it signs.
        #[arg(long, value_name = "NAME")]
        publisher: String,
        /// Where to write the secret key (FILE.pub is written beside it); never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Create a plugin project PARENT/NAME: a cargo crate built for wasm32-wasip2 with a
    /// working example rule, its plugin.toml, and a native test crate (harness/).
    New {
        /// Plugin id (and crate name): a lowercase letter, then lowercase letters, digits or
        /// `-`, at most 64 characters.
        name: String,
        /// What the plugin is: a billing rule, a usage policy or an invocation adapter.
        #[arg(long, value_parser = parse_kind)]
        kind: PluginKind,
        /// Folder to create the project in.
        #[arg(long, value_name = "PARENT", default_value = ".")]
        dir: PathBuf,
        /// The plugin SDK (plugins/guests/sdk of a liutong checkout) [default: this build's].
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin project into a WebAssembly component (cargo build --release --target
    /// wasm32-wasip2, adding the target with rustup when missing); prints the component's path.
    Build {
        /// The plugin project (the folder of its Cargo.toml).
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
    },
    /// Sign a plugin into a package (.ltpkg): a project's plugin.toml and built component
    /// (--dir), or a manifest and a component given separately.
    Sign {
        /// The publisher's secret key (FILE.pub must be beside it), as `keygen` writes it.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// A built plugin project [default: the current folder].
        #[arg(long, value_name = "DIR", conflicts_with_all = ["manifest", "component"])]
        dir: Option<PathBuf>,
        /// The plugin's plugin.toml (with --component).
        #[arg(long, value_name = "PLUGIN_TOML", requires = "component")]
        manifest: Option<PathBuf>,
        /// The plugin's component, a .wasm file (with --manifest).
        #[arg(long, value_name = "WASM", requires = "manifest")]
        component: Option<PathBuf>,
        /// The package file, or a folder to write <id>-<version>.ltpkg into
        /// [default: <id>-<version>.ltpkg in the current folder].
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Check a package as a server would: signature, trusted publisher, manifest, component.
    /// Exits non-zero with the reason when a server would refuse it.
    Verify {
        /// The .ltpkg file.
        package: PathBuf,
        /// Trusted publisher keys (*.pub) [default: plugins.trust_dir of --config, else
        /// ./data/trusted-publishers].
        #[arg(long, value_name = "DIR")]
        trust_dir: Option<PathBuf>,
    },
    /// Upload a package to a running server (POST /v1/admin/plugins); its version becomes the
    /// plugin's active one for new calls, without a restart.
    Install {
        /// The .ltpkg file.
        package: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// The plugins installed on a server (GET /v1/admin/plugins).
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// How to reach a server as an operator.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "LIUTONG_SERVER",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// An operator's X-Auth-Token.
    #[arg(
        long,
        env = "LIUTONG_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        conflicts_with = "username"
    )]
    pub token: Option<String>,
    /// Log in as this operator instead; the password is read from standard input.
    #[arg(long, value_name = "USER")]
    pub username: Option<String>,
}

/// `--kind billing|policy|adapter|provider`.
fn parse_kind(text: &str) -> Result<PluginKind, String> {
    text.parse().map_err(|_| {
        format!("'{text}' is not a plugin kind (billing, policy, adapter or provider)")
    })
}

pub async fn run(command: PluginCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        PluginCommand::Keygen { publisher, out } => keygen(&publisher, &out),
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk,
        } => new_project(&name, kind, &dir, sdk.as_deref()),
        PluginCommand::Build { dir } => {
            let wasm = build(&dir)?;
            println!("{}", wasm.display());
            Ok(())
        }
        PluginCommand::Sign {
            key,
            dir,
            manifest,
            component,
            out,
        } => {
            let (manifest, component) = match (manifest, component) {
                (Some(m), Some(c)) => (m, c),
                _ => {
                    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
                    (dir.join("plugin.toml"), built_component(&dir)?)
                }
            };
            sign(&key, &manifest, &component, out.as_deref())
        }
        PluginCommand::Verify { package, trust_dir } => {
            let trust_dir = trust_dir.unwrap_or_else(|| config.plugins.trust_dir.clone());
            verify(&package, &trust_dir)
        }
        PluginCommand::Install { package, server } => install(&package, &server).await,
        PluginCommand::List { server } => list(&server).await,
    }
}

// ---------------------------------------------------------------------------------------------
// keygen

fn keygen(publisher: &str, out: &Path) -> anyhow::Result<()> {
    let publisher = publisher.trim();
    if publisher.is_empty() {
        bail!("--publisher must not be empty");
    }
    let public = PublisherKey::public_path(out);
    for path in [out, public.as_path()] {
        if path.exists() {
            bail!(
                "{} exists already; refusing to overwrite a key (choose another --out)",
                path.display()
            );
        }
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let key = PublisherKey::generate(publisher);
    key.save(out)?;
    println!(
        "created publisher key {} (publisher {publisher}, key id {})",
        out.display(),
        key.key_id()
    );
    println!("public key: {}", public.display());
    println!(
        "copy {} into the server's trust_dir (plugins.trust_dir, default \
         ./data/trusted-publishers) and restart the server; keep {} secret",
        public.display(),
        out.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// new

/// plugins/guests/sdk of the checkout this binary was built from.
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/guests/sdk")
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn new_project(
    name: &str,
    kind: PluginKind,
    parent: &Path,
    sdk: Option<&Path>,
) -> anyhow::Result<()> {
    if !liutong_plugin_runtime::manifest::valid_id(name) {
        bail!(
            "{name:?} is not a plugin id: 1-64 characters, a lowercase letter first, then \
             lowercase letters, digits or `-`"
        );
    }
    let sdk_given = sdk.is_some();
    let sdk = sdk.map_or_else(default_sdk, Path::to_path_buf);
    let sdk = match sdk.canonicalize() {
        Ok(p) if p.join("Cargo.toml").is_file() => p,
        _ if sdk_given => bail!(
            "{} is not the plugin SDK (no Cargo.toml there): pass --sdk PATH to the \
             plugins/guests/sdk folder of a liutong checkout",
            sdk.display()
        ),
        _ => bail!(
            "the plugin SDK is not at {} (this liutong was built from a checkout that has \
             moved?): pass --sdk PATH to the plugins/guests/sdk folder of a liutong checkout",
            sdk.display()
        ),
    };
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} exists already", dir.display());
    }
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir_abs = parent
        .canonicalize()
        .with_context(|| format!("resolving {}", parent.display()))?
        .join(name);
    std::fs::create_dir(&dir_abs).with_context(|| format!("creating {}", dir_abs.display()))?;

    let kind_name = kind.as_str();
    let fill = |template: &str| template.replace("{{id}}", name);
    let (sdk_features, extra_deps, description, manifest_extra, lib, harness) = match kind {
        PluginKind::Billing => (
            r#"["billing"]"#,
            "",
            "Billing rule: the list price plus a fixed handling fee",
            "[limits]\nfuel = 50_000_000\nmemory_mb = 16\ntimeout_ms = 200\n",
            include_str!("templates/billing.lib.rs.tmpl"),
            include_str!("templates/billing.harness.rs.tmpl"),
        ),
        PluginKind::Policy => (
            r#"["policy"]"#,
            "",
            "Usage policy: an allow-list of users, a validity window and allowed scenes",
            "[limits]\nfuel = 50_000_000\nmemory_mb = 16\ntimeout_ms = 200\n",
            include_str!("templates/policy.lib.rs.tmpl"),
            include_str!("templates/policy.harness.rs.tmpl"),
        ),
        PluginKind::Adapter => (
            r#"["adapter", "http"]"#,
            "serde_json = \"1\"\n",
            "Adapter: POSTs the input JSON to the endpoint and returns the response JSON",
            "# Hosts this adapter asks to reach (host[:port|:*]); a request passes only if the\n\
             # operator's grants ([plugins.grants.<id>] http) allow it too.\n\
             [capabilities]\n\
             http = [\"*:443\", \"127.0.0.1:*\", \"localhost:*\"]\n\
             secrets = [\"api-key\"]\n\n\
             [limits]\nmemory_mb = 32\ntimeout_ms = 30_000\n",
            include_str!("templates/adapter.lib.rs.tmpl"),
            include_str!("templates/adapter.harness.rs.tmpl"),
        ),
        PluginKind::Provider => (
            r#"["provider", "http"]"#,
            "serde_json = \"1\"\n",
            "Compute provider: provisions, operates and reclaims resources through a JSON API",
            "# Hosts this provider asks to reach (host[:port|:*]); a request passes only if the\n\
             # operator's grants ([plugins.grants.<id>] http) allow it too.\n\
             [capabilities]\n\
             http = [\"*:443\", \"127.0.0.1:*\", \"localhost:*\"]\n\
             secrets = [\"api-key\"]\n\n\
             [limits]\nmemory_mb = 32\ntimeout_ms = 30_000\n",
            include_str!("templates/provider.lib.rs.tmpl"),
            include_str!("templates/provider.harness.rs.tmpl"),
        ),
    };

    let cargo_toml = format!(
        r#"[package]
name = "{name}"
description = "{description}"
version = "0.1.0"
edition = "2024"
publish = false

# A workspace of its own: this plugin builds on its own, wherever it lives.
[workspace]
exclude = ["harness"]

[lib]
# rustc turns a cdylib built for wasm32-wasip2 into a WebAssembly component.
crate-type = ["cdylib"]

[dependencies]
liutong-plugin-sdk = {{ path = {sdk}, default-features = false, features = {sdk_features} }}
serde = {{ version = "1", features = ["derive"] }}
{extra_deps}
# The same release profile as liutong's own plugins: small components.
[profile.release]
opt-level = "s"
lto = true
strip = true
codegen-units = 1
"#,
        sdk = toml_string(&sdk.display().to_string()),
    );
    let plugin_toml = format!(
        r#"# The plugin's manifest: signed with the component into the package.
id = "{name}"              # ^[a-z][a-z0-9-]{{0,63}}$; the id operators choose the plugin by
version = "0.1.0"          # semver; a new build must have a new version
kind = "{kind_name}"
wit = "0.1.0"              # the WIT version of wit/{kind_name}/v0.1.0 the SDK implements
description = "{description}"

# The sandbox's limits this plugin asks for; the operator's maximums cap them.
{manifest_extra}"#
    );
    let readme = fill(&format!(
        r#"# {{{{id}}}}

A liutong {kind_name} plugin (a WebAssembly component for `wasm32-wasip2`). {description}.
See `docs/plugins.md` of liutong for the whole guide.

```sh
liutong plugin build --dir .                        # → target/wasm32-wasip2/release/*.wasm
(cd harness && cargo test)                          # native tests in the real sandbox
liutong plugin sign --key publisher.key --dir .     # → {{{{id}}}}-<version>.ltpkg
liutong plugin verify {{{{id}}}}-0.1.0.ltpkg --trust-dir <server's trust_dir>
liutong plugin install {{{{id}}}}-0.1.0.ltpkg --server http://127.0.0.1:8080 --username operator
```

- `src/lib.rs`: the rule; `plugin.toml`: the manifest (id, version, kind, WIT version,
  limits{adapter_note}).
- Bump `version` in `plugin.toml` for every build you install: a server refuses a second,
  different component under a version it has.
"#,
        adapter_note = if kind.reaches_network() {
            ", the hosts and secrets it asks for"
        } else {
            ""
        }
    ));
    let gitignore = "/target\n/harness/target\n*.ltpkg\n# Publisher keys are secrets.\n*.key\n";
    let runtime = sdk.join("../../runtime").canonicalize().ok();

    let write = |rel: &str, text: &str| -> anyhow::Result<()> {
        let path = dir_abs.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("Cargo.toml", &cargo_toml)?;
    write("plugin.toml", &plugin_toml)?;
    write("src/lib.rs", &fill(lib))?;
    write("README.md", &readme)?;
    write(".gitignore", gitignore)?;
    // The SDK's own lock file pins the versions the SDK is built and tested with (and lets a
    // build reuse what the SDK's workspace compiled, given the same CARGO_TARGET_DIR).
    if let Some(parent) = sdk.parent()
        && let Ok(lock) = std::fs::read(parent.join("Cargo.lock"))
    {
        std::fs::write(dir_abs.join("Cargo.lock"), lock)
            .with_context(|| format!("writing {}", dir_abs.join("Cargo.lock").display()))?;
    }
    if let Some(runtime) = &runtime {
        let harness_toml = format!(
            r#"# Native tests of the plugin in liutong's real sandbox: `cargo test` here.
[package]
name = "{name}-harness"
version = "0.1.0"
edition = "2024"
publish = false

[workspace]

[dev-dependencies]
liutong-plugin-runtime = {{ path = {runtime}, features = ["testing"] }}
tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}

# liutong's own dev profile: compiling components is slow unoptimised.
[profile.dev]
debug = "line-tables-only"
[profile.dev.package.cranelift-codegen]
opt-level = 2
[profile.dev.package.wasmtime-internal-cranelift]
opt-level = 2
[profile.dev.package.sha2]
opt-level = 3
"#,
            runtime = toml_string(&runtime.display().to_string()),
        );
        write("harness/Cargo.toml", &harness_toml)?;
        write(
            "harness/src/lib.rs",
            "//! Nothing here: the tests are in tests/.\n",
        )?;
        write("harness/tests/plugin.rs", &fill(harness))?;
        if let Some(lock) = runtime
            .parent()
            .and_then(Path::parent)
            .and_then(|root| std::fs::read(root.join("Cargo.lock")).ok())
        {
            std::fs::write(dir_abs.join("harness/Cargo.lock"), lock)
                .context("writing harness/Cargo.lock")?;
        }
    }

    println!(
        "created the {kind_name} plugin {name} in {}",
        dir_abs.display()
    );
    println!("  SDK: {}", sdk.display());
    println!("next:");
    println!("  liutong plugin build --dir {}", dir.display());
    if runtime.is_some() {
        println!("  (cd {}/harness && cargo test)", dir.display());
    }
    println!(
        "  liutong plugin sign --key publisher.key --dir {}",
        dir.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// build

fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// Adds the wasm32-wasip2 target with rustup when rustup is there and the target is not.
fn ensure_target(dir: &Path) -> anyhow::Result<()> {
    let Ok(out) = Process::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
    else {
        return Ok(()); // no rustup: the toolchain is managed otherwise
    };
    let installed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || installed.lines().any(|l| l.trim() == WASM_TARGET) {
        return Ok(());
    }
    eprintln!("adding the {WASM_TARGET} target with rustup");
    let status = Process::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .current_dir(dir)
        .status()
        .context("running rustup target add")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed");
    }
    Ok(())
}

fn manifest_of(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} is not a plugin project (no Cargo.toml); create one with `liutong plugin new`",
            dir.display()
        );
    }
    manifest
        .canonicalize()
        .with_context(|| format!("resolving {}", manifest.display()))
}

fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = manifest_of(dir)?;
    let project = manifest.parent().unwrap_or(dir).to_path_buf();
    ensure_target(&project)?;
    let out = Process::new(cargo())
        .args(["build", "--release", "--target", WASM_TARGET])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .current_dir(&project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !out.status.success() {
        bail!("cargo build failed (see above)");
    }
    // The .wasm artifact of this project's own package (dependencies produce rlibs).
    let mut wasm = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let own = msg["manifest_path"]
            .as_str()
            .is_some_and(|p| Path::new(p) == manifest);
        for file in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = file.as_str().filter(|f| f.ends_with(".wasm"))
                && (own || wasm.is_none())
            {
                wasm = Some(PathBuf::from(f));
            }
        }
    }
    let wasm = wasm.ok_or_else(|| {
        anyhow!(
            "the build produced no .wasm file: is the crate a cdylib (crate-type = [\"cdylib\"])?"
        )
    })?;
    if let Ok(bytes) = std::fs::read(&wasm)
        && !is_component(&bytes)
    {
        bail!(
            "{} is a core WebAssembly module, not a component: build for {WASM_TARGET}",
            wasm.display()
        );
    }
    Ok(wasm)
}

/// Where `build` leaves a project's component: `<target dir>/wasm32-wasip2/release/<lib>.wasm`,
/// with the target directory as cargo resolves it (CARGO_TARGET_DIR, a parent workspace…).
fn built_component(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = manifest_of(dir)?;
    let out = Process::new(cargo())
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed on {}", manifest.display());
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("reading cargo metadata")?;
    let target_dir = meta["target_directory"]
        .as_str()
        .ok_or_else(|| anyhow!("cargo metadata without a target_directory"))?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == manifest)
        })
        .ok_or_else(|| anyhow!("{} has no [package]", manifest.display()))?;
    let lib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| {
            t["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .and_then(|t| t["name"].as_str())
        .ok_or_else(|| {
            anyhow!(
                "{} is not a plugin: its lib is not a cdylib (crate-type = [\"cdylib\"])",
                manifest.display()
            )
        })?;
    let wasm = Path::new(target_dir)
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", lib.replace('-', "_")));
    if !wasm.is_file() {
        bail!(
            "{} is not built yet (no {}): run `liutong plugin build --dir {}` first",
            dir.display(),
            wasm.display(),
            dir.display()
        );
    }
    if let Some(newer) = newer_source(dir, &wasm) {
        eprintln!(
            "warning: {} changed after {} was built; run `liutong plugin build --dir {}` to \
             sign what you wrote",
            newer.display(),
            wasm.display(),
            dir.display()
        );
    }
    Ok(wasm)
}

/// A source of the project (Cargo.toml, src/**) modified after `built`.
fn newer_source(dir: &Path, built: &Path) -> Option<PathBuf> {
    let built_at = std::fs::metadata(built).and_then(|m| m.modified()).ok()?;
    let mut pending = vec![dir.join("Cargo.toml"), dir.join("src")];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
            }
        } else if meta.modified().is_ok_and(|m| m > built_at) {
            return Some(path);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// sign and verify

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

fn sign(
    key_path: &Path,
    manifest_path: &Path,
    component_path: &Path,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let key = PublisherKey::load(key_path)
        .with_context(|| format!("loading the publisher key {}", key_path.display()))?;
    let manifest_bytes = read(manifest_path, "manifest")?;
    let component = read(component_path, "component")?;
    let manifest = Manifest::parse(&manifest_bytes)
        .with_context(|| format!("{} is not a valid manifest", manifest_path.display()))?;
    if !is_component(&component) {
        bail!(
            "{} is not a WebAssembly component (a core module or another file): build it for \
             {WASM_TARGET}",
            component_path.display()
        );
    }
    let file_name = format!("{}-{}.ltpkg", manifest.id, manifest.version);
    let out = match out {
        None => PathBuf::from(&file_name),
        Some(p) if p.is_dir() => p.join(&file_name),
        Some(p) => p.to_path_buf(),
    };
    let package = key
        .sign(Package::build(manifest_bytes, component))
        .to_bytes();
    std::fs::write(&out, &package).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "signed {} {} ({}) as {} (key id {}): {}",
        manifest.id,
        manifest.version,
        manifest.kind,
        key.publisher,
        key.key_id(),
        out.display()
    );
    Ok(())
}

fn verify(package_path: &Path, trust_dir: &Path) -> anyhow::Result<()> {
    let bytes = read(package_path, "package")?;
    let trust = TrustStore::load(trust_dir)
        .with_context(|| format!("loading the trusted publishers of {}", trust_dir.display()))?;
    if trust.list().is_empty() {
        eprintln!(
            "warning: no trusted publisher keys (*.pub) in {}",
            trust_dir.display()
        );
    }
    let verified = Package::from_bytes(&bytes)
        .and_then(|p| p.verify(&trust))
        .map_err(|e| anyhow!("{} refused: {e}", package_path.display()))?;
    let m = verified.manifest();
    println!("{}: verified", package_path.display());
    println!("id:               {}", m.id);
    println!("version:          {}", m.version);
    println!("kind:             {}", m.kind);
    println!("wit:              {}", m.wit);
    println!("description:      {}", m.description);
    println!("publisher:        {}", verified.publisher());
    println!("key id:           {}", verified.key_id());
    println!("component sha256: {}", verified.component_sha256());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// install and list

struct Server {
    base: String,
    client: reqwest::Client,
    token: String,
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    // reqwest speaks TLS through rustls, whose crypto provider must be chosen (as App::build does).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .context("creating the HTTP client")
}

/// The envelope's `data`, or the server's `code: errorMsg`.
async fn envelope(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("{what}: reading the response"))?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
        anyhow!(
            "{what}: HTTP {status}, not a liutong response: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })?;
    if status.is_success() && body["code"] == "OK" {
        return Ok(body["data"].clone());
    }
    bail!(
        "{what}: {}: {} (HTTP {})",
        body["code"].as_str().unwrap_or("ERROR"),
        body["errorMsg"].as_str().unwrap_or_default(),
        status.as_u16()
    )
}

impl Server {
    async fn connect(args: &ServerArgs) -> anyhow::Result<Server> {
        let base = args.server.trim_end_matches('/').to_owned();
        reqwest::Url::parse(&base).with_context(|| format!("--server {base:?} is not a URL"))?;
        let client = http_client()?;
        let token = match (&args.token, &args.username) {
            (Some(token), _) => token.clone(),
            (None, Some(username)) => {
                let password = super::read_password()?;
                let body = json!({"username": username, "password": password});
                let response = client
                    .post(format!("{base}/v1/account/token"))
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .with_context(|| format!("reaching {base}"))?;
                let data = envelope(response, "logging in").await?;
                data["token"]
                    .as_str()
                    .ok_or_else(|| anyhow!("logging in: no token in the answer"))?
                    .to_owned()
            }
            (None, None) => bail!(
                "give an operator's token (--token or LIUTONG_TOKEN) or --username (password on \
                 standard input)"
            ),
        };
        Ok(Server {
            base,
            client,
            token,
        })
    }
}

async fn install(package: &Path, args: &ServerArgs) -> anyhow::Result<()> {
    let bytes = read(package, "package")?;
    let server = Server::connect(args).await?;
    let response = server
        .client
        .post(format!("{}/v1/admin/plugins", server.base))
        .header("X-Auth-Token", &server.token)
        .header("Content-Type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("reaching {}", server.base))?;
    let data = envelope(response, &format!("installing {}", package.display())).await?;
    let s = |k: &str| data[k].as_str().unwrap_or_default().to_owned();
    if data["installed"] == true {
        println!(
            "installed {} {} ({}) on {}: active for new calls; compiled in {} ms{}",
            s("id"),
            s("version"),
            s("kind"),
            server.base,
            data["compileMs"].as_u64().unwrap_or_default(),
            if data["cacheHit"] == true {
                " (from the cache)"
            } else {
                ""
            }
        );
    } else {
        println!(
            "{} {} ({}) was installed already on {}; nothing changed{}",
            s("id"),
            s("version"),
            s("kind"),
            server.base,
            if data["active"] == true {
                ""
            } else {
                " (it is not the active version: POST /v1/admin/plugins/activate to use it)"
            }
        );
    }
    println!("component sha256 {}", s("componentSha256"));
    Ok(())
}

async fn list(args: &ServerArgs) -> anyhow::Result<()> {
    let server = Server::connect(args).await?;
    let response = server
        .client
        .get(format!("{}/v1/admin/plugins", server.base))
        .header("X-Auth-Token", &server.token)
        .send()
        .await
        .with_context(|| format!("reaching {}", server.base))?;
    let data = envelope(response, "listing plugins").await?;
    let plugins = data["plugins"].as_array().cloned().unwrap_or_default();
    if plugins.is_empty() {
        println!("no plugins installed on {}", server.base);
        return Ok(());
    }
    let yes_no = |v: &Value| if v == &Value::Bool(true) { "yes" } else { "no" };
    let mut rows = vec![[
        "ID".to_owned(),
        "KIND".to_owned(),
        "ACTIVE".to_owned(),
        "ENABLED".to_owned(),
        "DEFAULT".to_owned(),
        "STATUS".to_owned(),
    ]];
    for p in &plugins {
        let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
        rows.push([
            s("id"),
            s("kind"),
            s("activeVersion"),
            yes_no(&p["enabled"]).to_owned(),
            yes_no(&p["default"]).to_owned(),
            s("status"),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut stdout = std::io::stdout().lock();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  "));
            }
        }
        writeln!(stdout, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_ids() {
        for ok in ["a", "my-fee", "fee2", &"a".repeat(64)] {
            assert!(liutong_plugin_runtime::manifest::valid_id(ok), "{ok}");
        }
        for bad in [
            "",
            "My-fee",
            "1fee",
            "-fee",
            "my_fee",
            "my fee",
            &"a".repeat(65),
        ] {
            assert!(!liutong_plugin_runtime::manifest::valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_sdk_is_found() {
        assert!(default_sdk().join("Cargo.toml").is_file());
    }
}
