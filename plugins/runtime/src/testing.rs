//! The plugin author kit: load a plugin straight from a cargo project or a built component,
//! without signing it, into a real [`Runtime`], and call it from a plain `#[tokio::test]`.
//!
//! ```no_run
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! use liutong_plugin_runtime::testing::Harness;
//! let harness = Harness::build("plugins/guests/billing-flat-fee")?;
//! # let trade: liutong_plugin_runtime::billing::Trade = todo!();
//! let charge = harness.charge_trade(trade).await?.value;
//! # Ok(()) }
//! ```
//!
//! Nothing here checks signatures: a host must load plugins with [`Runtime::load`]. Only
//! compiled with the cargo feature `testing`, which a host enables for its dev-dependencies
//! and never for its build.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Call, Grants, LoadError, LoadedPlugin, PluginError, Runtime, RuntimeConfig};
use crate::{adapter, billing, policy, provider};

/// Why a harness could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the plugin failed: {0}")]
    Build(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Runtime(#[from] crate::RuntimeError),
}

/// A runtime with one plugin loaded, unsigned.
#[derive(Clone, Debug)]
pub struct Harness {
    runtime: Runtime,
    plugin: LoadedPlugin,
}

/// Build a guest cargo project for `wasm32-wasip2` (release) and return its component path.
pub fn build_component(crate_dir: &Path) -> Result<PathBuf, HarnessError> {
    let manifest = crate_dir.join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|source| HarnessError::Io {
            path: manifest.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(HarnessError::Build(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    // The last `.wasm` artifact of the build is the plugin's cdylib.
    let mut wasm = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        if let Some(files) = msg["filenames"].as_array() {
            for f in files.iter().filter_map(|f| f.as_str()) {
                if f.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(f));
                }
            }
        }
    }
    wasm.ok_or_else(|| HarnessError::Build("the build produced no .wasm file".into()))
}

impl Harness {
    /// Build the guest project in `crate_dir` and load it with its `plugin.toml`, default
    /// [`RuntimeConfig`] and no grants.
    pub fn build(crate_dir: impl AsRef<Path>) -> Result<Harness, HarnessError> {
        let dir = crate_dir.as_ref();
        let wasm = build_component(dir)?;
        Harness::from_component(dir.join("plugin.toml"), wasm)
    }

    /// Load a built component with its manifest (default config, no grants).
    pub fn from_component(
        manifest_path: impl AsRef<Path>,
        wasm_path: impl AsRef<Path>,
    ) -> Result<Harness, HarnessError> {
        let runtime = Runtime::new(RuntimeConfig::default())?;
        Harness::from_component_with(&runtime, manifest_path, wasm_path, &Grants::default())
    }

    /// Load a built component into a given runtime with grants (e.g. HTTP to a mock server).
    pub fn from_component_with(
        runtime: &Runtime,
        manifest_path: impl AsRef<Path>,
        wasm_path: impl AsRef<Path>,
        grants: &Grants,
    ) -> Result<Harness, HarnessError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| HarnessError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let manifest = read(manifest_path.as_ref())?;
        let wasm = read(wasm_path.as_ref())?;
        let plugin = runtime.load_unsigned_for_testing(&manifest, &wasm, grants)?;
        Ok(Harness {
            runtime: runtime.clone(),
            plugin,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    pub async fn charge_trade(
        &self,
        trade: billing::Trade,
    ) -> Result<Call<Result<billing::Charge, billing::BillingError>>, PluginError> {
        self.plugin.charge_trade(trade).await
    }

    pub async fn charge_usage(
        &self,
        usage: billing::Usage,
    ) -> Result<Call<Result<billing::Charge, billing::BillingError>>, PluginError> {
        self.plugin.charge_usage(usage).await
    }

    pub async fn evaluate(
        &self,
        usage_policy: policy::UsagePolicy,
        request: policy::AccessRequest,
    ) -> Result<Call<Result<policy::Verdict, policy::PolicyError>>, PluginError> {
        self.plugin.evaluate(usage_policy, request).await
    }

    pub async fn invoke(
        &self,
        publication: adapter::Publication,
        invocation: adapter::Invocation,
    ) -> Result<Call<Result<adapter::Outcome, adapter::AdapterError>>, PluginError> {
        self.plugin.invoke(publication, invocation).await
    }

    pub async fn provision(
        &self,
        account: provider::Account,
        request: provider::ProvisionRequest,
    ) -> Result<Call<Result<provider::Resource, provider::ProviderError>>, PluginError> {
        self.plugin.provision(account, request).await
    }

    pub async fn describe(
        &self,
        account: provider::Account,
        resource_id: &str,
    ) -> Result<Call<Result<provider::Resource, provider::ProviderError>>, PluginError> {
        self.plugin.describe(account, resource_id).await
    }

    pub async fn operate(
        &self,
        account: provider::Account,
        resource_id: &str,
        action: provider::Action,
    ) -> Result<Call<Result<provider::Resource, provider::ProviderError>>, PluginError> {
        self.plugin.operate(account, resource_id, action).await
    }

    pub async fn reclaim(
        &self,
        account: provider::Account,
        resource_id: &str,
    ) -> Result<Call<Result<(), provider::ProviderError>>, PluginError> {
        self.plugin.reclaim(account, resource_id).await
    }

    pub async fn list_bills(
        &self,
        account: provider::Account,
        period: provider::Period,
    ) -> Result<Call<Result<Vec<provider::BillLine>, provider::ProviderError>>, PluginError> {
        self.plugin.list_bills(account, period).await
    }
}
