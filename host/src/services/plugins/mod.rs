//! Plugins in the host: installing signed packages, keeping every server's registry in step
//! with the database, and calling plugins with audit and metrics.
//!
//! The sandbox itself (wasmtime, limits, grants, package signatures) is the
//! `liutong-plugin-runtime` crate; this module decides *which* plugin serves a call, records
//! what happened, and turns failures into domain errors.
//!
//! A registry is an immutable snapshot (`Arc<Registry>`): a call takes the snapshot current
//! when it starts and finishes on the plugin versions it holds, while an install or an
//! activation swaps in a new snapshot for later calls — no restart, no call cut short.

pub mod adapter;
pub mod admin;
pub mod audit;
pub mod billing;
pub mod policy;
pub mod provider;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use liutong_plugin_runtime::{
    Grants, LoadedPlugin, Package, PackageError, PluginKind, PoolingMode, Runtime, RuntimeConfig,
    TrustStore, VerifiedPackage,
};

use super::ServiceError;
use crate::config::{Config, PluginsConfig};
use crate::domain::plugins::{
    CapabilitiesView, Installed, InstalledVersion, LimitsView, PluginVersionView, PluginView,
    ResourceRule, ResourceRuleRequest,
};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::{Caller, DomainError, Role};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::plugins::{RuleTable, RuleWrite, VersionInsert};
use audit::AuditSink;

/// How long a server trusts its registry before it asks the database whether another server
/// changed the plugins. Changes made through this server apply at once.
const REFRESH_INTERVAL_MS: i64 = 1000;

/// The largest package accepted (component + manifest + signature).
pub const MAX_PACKAGE_BYTES: usize = 65 * 1024 * 1024;

/// A plugin id as the registry knows it: its active version, loaded (or why not).
#[derive(Clone)]
pub struct RegisteredPlugin {
    pub plugin_id: String,
    pub kind: PluginKind,
    pub active_version: String,
    pub enabled: bool,
    pub loaded: Result<LoadedPlugin, String>,
}

/// A consistent view of the installed plugins at one generation.
#[derive(Default)]
pub struct Registry {
    pub generation: i64,
    pub plugins: HashMap<String, RegisteredPlugin>,
    pub defaults: HashMap<PluginKind, String>,
    /// resource id → (plugin id, config JSON).
    pub billing_rules: HashMap<String, (String, String)>,
    /// resource id → (plugin id, config JSON): the policy plugins of controlled data.
    pub policy_rules: HashMap<String, (String, String)>,
}

#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    trust: TrustStore,
    store: Store,
    grants: BTreeMap<String, Grants>,
    registry: RwLock<Arc<Registry>>,
    /// One reload at a time; the others wait for it instead of repeating it.
    reloading: tokio::sync::Mutex<()>,
    last_check_ms: AtomicI64,
    audit: AuditSink,
    metrics: Arc<Metrics>,
    /// Configuration of the default billing rule for publications without their own.
    default_billing_config: String,
}

fn package_error(e: PackageError) -> ServiceError {
    match e {
        PackageError::Unsigned
        | PackageError::UntrustedPublisher { .. }
        | PackageError::Tampered { .. }
        | PackageError::BadSignature => {
            ServiceError::forbidden(format!("plugin package refused: {e}"))
        }
        other => ServiceError::invalid("/package", other.to_string()),
    }
}

impl PluginHost {
    /// Creates the runtime (one engine for the process), reads the trust store and resolves
    /// the operator's grants. Nothing is loaded until `refresh`.
    pub fn new(
        config: &Config,
        store: Store,
        metrics: Arc<Metrics>,
    ) -> Result<PluginHost, anyhow::Error> {
        let p = &config.plugins;
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(p.cache_dir.clone()),
            max_fuel: p.max_fuel,
            max_memory_bytes: usize::try_from(p.max_memory_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            max_timeout: std::time::Duration::from_millis(p.max_timeout_ms),
            pooling: PoolingMode::Auto,
            ..RuntimeConfig::default()
        })
        .map_err(|e| anyhow::anyhow!("plugin runtime: {e}"))?;
        let trust = if p.trust_dir.exists() {
            TrustStore::load(&p.trust_dir).map_err(|e| {
                anyhow::anyhow!("trusted publishers in {}: {e}", p.trust_dir.display())
            })?
        } else {
            TrustStore::new()
        };
        let grants = resolve_grants(p)?;
        let audit = AuditSink::start(store.clone());
        Ok(PluginHost {
            inner: Arc::new(Inner {
                runtime,
                trust,
                store,
                grants,
                registry: RwLock::new(Arc::new(Registry::default())),
                reloading: tokio::sync::Mutex::new(()),
                last_check_ms: AtomicI64::new(0),
                audit,
                metrics,
                default_billing_config: serde_json::json!({"feeBps": config.platform_fee_bps})
                    .to_string(),
            }),
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    pub fn audit(&self) -> &AuditSink {
        &self.inner.audit
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn default_billing_config(&self) -> &str {
        &self.inner.default_billing_config
    }

    /// The registry snapshot to serve a call with.
    pub fn snapshot(&self) -> Arc<Registry> {
        match self.inner.registry.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Plugin `id` of `kind`, installed, enabled and loaded now, as a request names it at
    /// `field`; else `400` at `field` saying why not.
    pub async fn require(
        &self,
        kind: PluginKind,
        id: &str,
        field: &str,
    ) -> Result<LoadedPlugin, ServiceError> {
        let registry = self.refresh(false).await?;
        self.pick_one(&registry, kind, id)
            .map_err(|message| ServiceError::invalid(field, message))
    }

    /// Brings the registry up to the database's generation: at most once a second unless
    /// `force`.
    pub async fn refresh(&self, force: bool) -> Result<Arc<Registry>, ServiceError> {
        let now = now_millis();
        if !force && now - self.inner.last_check_ms.load(Ordering::Relaxed) < REFRESH_INTERVAL_MS {
            return Ok(self.snapshot());
        }
        let generation = self.inner.store.plugin_generation().await?;
        self.inner.last_check_ms.store(now, Ordering::Relaxed);
        if generation == self.snapshot().generation {
            return Ok(self.snapshot());
        }
        let _turn = self.inner.reloading.lock().await;
        let current = self.snapshot();
        if current.generation == generation {
            return Ok(current);
        }
        let next = Arc::new(self.build_registry(&current).await?);
        match self.inner.registry.write() {
            Ok(mut r) => *r = Arc::clone(&next),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&next),
        }
        Ok(next)
    }

    async fn build_registry(&self, current: &Registry) -> Result<Registry, ServiceError> {
        let store = &self.inner.store;
        // Read the generation first: a change committed while we read shows up as a newer
        // generation at the next refresh instead of being lost.
        let generation = store.plugin_generation().await?;
        let rows = store.plugins().await?;
        let versions = store.plugin_versions().await?;
        let mut plugins = HashMap::new();
        for row in rows {
            let sha = versions
                .iter()
                .find(|v| v.plugin_id == row.plugin_id && v.version == row.active_version)
                .map(|v| v.component_sha256.clone())
                .unwrap_or_default();
            let reusable = current.plugins.get(&row.plugin_id).and_then(|p| {
                p.loaded
                    .as_ref()
                    .ok()
                    .filter(|l| {
                        l.version().to_string() == row.active_version && l.component_sha256() == sha
                    })
                    .cloned()
            });
            let loaded = match reusable {
                Some(l) => Ok(l),
                None => self.load_stored(&row.plugin_id, &row.active_version).await,
            };
            if let Err(reason) = &loaded {
                tracing::error!(plugin = %row.plugin_id, version = %row.active_version, %reason, "plugin not loaded");
            }
            plugins.insert(
                row.plugin_id.clone(),
                RegisteredPlugin {
                    plugin_id: row.plugin_id,
                    kind: row.kind,
                    active_version: row.active_version,
                    enabled: row.enabled,
                    loaded,
                },
            );
        }
        let defaults = store.plugin_defaults().await?.into_iter().collect();
        let rules = async |table| -> Result<HashMap<String, (String, String)>, ServiceError> {
            Ok(store
                .resource_rules(table)
                .await?
                .into_iter()
                .map(|r: ResourceRule| (r.resource_id, (r.plugin_id, r.config)))
                .collect())
        };
        Ok(Registry {
            generation,
            plugins,
            defaults,
            billing_rules: rules(RuleTable::Billing).await?,
            policy_rules: rules(RuleTable::Policy).await?,
        })
    }

    /// Loads an installed version from its stored package, verifying its signature again
    /// (the trust store may have changed since it was installed).
    async fn load_stored(&self, plugin_id: &str, version: &str) -> Result<LoadedPlugin, String> {
        let bytes = self
            .inner
            .store
            .plugin_package(plugin_id, version)
            .await
            .map_err(|e| format!("reading the package: {e}"))?
            .ok_or_else(|| "the package is missing".to_owned())?;
        let verified = Package::from_bytes(&bytes)
            .and_then(|p| p.verify(&self.inner.trust))
            .map_err(|e| format!("package refused: {e}"))?;
        self.load_verified(verified)
            .await
            .map(|(l, _)| l)
            .map_err(|e| e.to_string())
    }

    async fn load_verified(
        &self,
        verified: VerifiedPackage,
    ) -> Result<(LoadedPlugin, VerifiedPackage), ServiceError> {
        let runtime = self.inner.runtime.clone();
        let grants = self
            .inner
            .grants
            .get(&verified.manifest().id)
            .cloned()
            .unwrap_or_default();
        // Compiling is CPU-bound (tens of milliseconds, more on a cache miss in debug builds).
        tokio::task::spawn_blocking(move || {
            let loaded = runtime.load(&verified, &grants);
            (loaded, verified)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("plugin load task: {e}")))
        .and_then(|(loaded, verified)| match loaded {
            Ok(l) => Ok((l, verified)),
            Err(e) => Err(DomainError::invalid("/package", e.to_string()).into()),
        })
    }

    /// Verifies, loads and stores a package; its version becomes the active one of its
    /// plugin id for new calls.
    pub async fn install(&self, caller: &Caller, bytes: &[u8]) -> Result<Installed, ServiceError> {
        caller.require_role(Role::Operator)?;
        self.install_as(&caller.username, bytes).await
    }

    /// `install` without a caller: packages the operator lists in `plugins.preinstall`.
    pub async fn install_as(
        &self,
        installed_by: &str,
        bytes: &[u8],
    ) -> Result<Installed, ServiceError> {
        if bytes.len() > MAX_PACKAGE_BYTES {
            return Err(DomainError::TooLarge(format!(
                "a plugin package may have at most {MAX_PACKAGE_BYTES} bytes"
            ))
            .into());
        }
        let package = Package::from_bytes(bytes).map_err(package_error)?;
        let verified = package.verify(&self.inner.trust).map_err(package_error)?;
        let manifest = verified.manifest().clone();
        let id = manifest.id.clone();
        let version = manifest.version.to_string();
        let kind = manifest.kind;
        let store = &self.inner.store;
        let installed_plugin = store.plugin(&id).await?;
        if let Some(existing) = &installed_plugin
            && existing.kind != kind
        {
            return Err(DomainError::Conflict(format!(
                "plugin '{id}' is a {} plugin; this package is a {kind} plugin",
                existing.kind
            ))
            .into());
        }
        if let Some(existing) = store.plugin_version(&id, &version).await? {
            if existing.component_sha256 == verified.component_sha256() {
                let active = installed_plugin.is_some_and(|p| p.active_version == version);
                return Ok(Installed {
                    id,
                    version,
                    kind,
                    component_sha256: existing.component_sha256,
                    installed: false,
                    active,
                    compile_ms: 0,
                    cache_hit: true,
                });
            }
            return Err(DomainError::Conflict(format!(
                "plugin '{id}' version {version} is installed with another component \
                 (sha256 {}); give the new build a new version",
                existing.component_sha256
            ))
            .into());
        }
        let (loaded, verified) = self.load_verified(verified).await?;
        let report = loaded.load_report();
        let row = InstalledVersion {
            plugin_id: id.clone(),
            version: version.clone(),
            kind,
            wit_version: manifest.wit.to_string(),
            component_sha256: verified.component_sha256().to_owned(),
            publisher: verified.publisher().to_owned(),
            key_id: verified.key_id().to_owned(),
            description: manifest.description.clone(),
            manifest: String::from_utf8_lossy(verified.manifest_bytes()).into_owned(),
            installed_by: installed_by.to_owned(),
            installed_at: now_millis(),
        };
        if store.install_plugin_version(&row, bytes).await? == VersionInsert::VersionExists {
            return Err(ServiceError::conflict(format!(
                "plugin '{id}' version {version} was installed at the same moment by another \
                 request"
            )));
        }
        tracing::info!(plugin = %id, %version, %kind, by = installed_by, compile_ms = report.compile_ms, cache_hit = report.cache_hit, "plugin installed");
        self.refresh(true).await?;
        Ok(Installed {
            id,
            version,
            kind,
            component_sha256: row.component_sha256,
            installed: true,
            active: true,
            compile_ms: report.compile_ms,
            cache_hit: report.cache_hit,
        })
    }

    /// Installs the packages named by `plugins.preinstall` (files or directories of
    /// `*.ltpkg`) and sets the configured defaults where none is chosen yet.
    pub async fn preinstall(&self, config: &PluginsConfig) -> Result<(), anyhow::Error> {
        for path in package_files(&config.preinstall)? {
            let bytes = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let done = self
                .install_as("preinstall", &bytes)
                .await
                .map_err(|e| anyhow::anyhow!("installing {}: {e}", path.display()))?;
            if done.installed {
                tracing::info!(path = %path.display(), plugin = %done.id, version = %done.version, "preinstalled plugin");
            }
        }
        let registry = self.refresh(true).await?;
        for (kind, id) in &config.defaults {
            if registry.defaults.contains_key(kind) {
                continue;
            }
            self.set_default_inner(*kind, id)
                .await
                .map_err(|e| anyhow::anyhow!("plugins.defaults.{kind}: {e}"))?;
            tracing::info!(%kind, plugin = %id, "default plugin set from the configuration");
        }
        Ok(())
    }

    pub async fn list(&self, caller: &Caller) -> Result<Vec<PluginView>, ServiceError> {
        caller.require_role(Role::Operator)?;
        let registry = self.refresh(true).await?;
        let versions = self.inner.store.plugin_versions().await?;
        let mut views: Vec<PluginView> = registry
            .plugins
            .values()
            .map(|p| PluginView {
                id: p.plugin_id.clone(),
                kind: p.kind,
                active_version: p.active_version.clone(),
                enabled: p.enabled,
                default: registry.defaults.get(&p.kind) == Some(&p.plugin_id),
                status: match &p.loaded {
                    Ok(_) => "loaded".to_owned(),
                    Err(reason) => format!("not loaded: {reason}"),
                },
                versions: versions
                    .iter()
                    .filter(|v| v.plugin_id == p.plugin_id)
                    .map(|v| self.version_view(v))
                    .collect(),
            })
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(views)
    }

    fn version_view(&self, v: &InstalledVersion) -> PluginVersionView {
        let manifest = liutong_plugin_runtime::Manifest::parse(v.manifest.as_bytes()).ok();
        let limits = manifest
            .as_ref()
            .map(|m| self.inner.runtime.effective_limits(m));
        PluginVersionView {
            version: v.version.clone(),
            wit: v.wit_version.clone(),
            description: v.description.clone(),
            component_sha256: v.component_sha256.clone(),
            publisher: v.publisher.clone(),
            key_id: v.key_id.clone(),
            installed_by: v.installed_by.clone(),
            installed_at: to_rfc3339(from_millis(v.installed_at)),
            limits: LimitsView {
                fuel: limits.and_then(|l| l.fuel),
                memory_bytes: limits.map(|l| l.memory_bytes).unwrap_or_default(),
                timeout_ms: limits
                    .map(|l| l.timeout.as_millis() as u64)
                    .unwrap_or_default(),
            },
            capabilities: CapabilitiesView {
                http: manifest
                    .as_ref()
                    .map(|m| m.capabilities.http.iter().map(|p| p.to_string()).collect())
                    .unwrap_or_default(),
                secrets: manifest
                    .as_ref()
                    .map(|m| m.capabilities.secrets.clone())
                    .unwrap_or_default(),
            },
        }
    }

    pub async fn set_enabled(
        &self,
        caller: &Caller,
        plugin_id: &str,
        enabled: bool,
    ) -> Result<(), ServiceError> {
        caller.require_role(Role::Operator)?;
        if !self
            .inner
            .store
            .set_plugin_enabled(plugin_id, enabled, now_millis())
            .await?
        {
            return Err(unknown_plugin(plugin_id));
        }
        tracing::info!(plugin = plugin_id, enabled, by = %caller.username, "plugin enabled state changed");
        self.refresh(true).await?;
        Ok(())
    }

    pub async fn activate(
        &self,
        caller: &Caller,
        plugin_id: &str,
        version: &str,
    ) -> Result<(), ServiceError> {
        caller.require_role(Role::Operator)?;
        let store = &self.inner.store;
        if store.plugin(plugin_id).await?.is_none() {
            return Err(unknown_plugin(plugin_id));
        }
        if store.plugin_version(plugin_id, version).await?.is_none() {
            return Err(DomainError::NotFound(format!(
                "plugin '{plugin_id}' has no installed version '{version}'"
            ))
            .into());
        }
        store
            .activate_plugin_version(plugin_id, version, now_millis())
            .await?;
        tracing::info!(plugin = plugin_id, version, by = %caller.username, "plugin version activated");
        self.refresh(true).await?;
        Ok(())
    }

    pub async fn set_default(
        &self,
        caller: &Caller,
        kind: PluginKind,
        plugin_id: &str,
    ) -> Result<(), ServiceError> {
        caller.require_role(Role::Operator)?;
        self.set_default_inner(kind, plugin_id).await
    }

    async fn set_default_inner(
        &self,
        kind: PluginKind,
        plugin_id: &str,
    ) -> Result<(), ServiceError> {
        let Some(plugin) = self.inner.store.plugin(plugin_id).await? else {
            return Err(unknown_plugin(plugin_id));
        };
        if plugin.kind != kind {
            return Err(DomainError::invalid(
                "/plugin",
                format!(
                    "plugin '{plugin_id}' is a {} plugin, not a {kind} plugin",
                    plugin.kind
                ),
            )
            .into());
        }
        self.inner.store.set_plugin_default(kind, plugin_id).await?;
        self.refresh(true).await?;
        Ok(())
    }

    /// Chooses the billing rule of one publication (operators); answers with the rule as
    /// stored.
    pub async fn set_billing_rule(
        &self,
        caller: &Caller,
        req: ResourceRuleRequest,
    ) -> Result<serde_json::Value, ServiceError> {
        self.set_rule(caller, RuleTable::Billing, req).await
    }

    /// Chooses the policy plugin of one controlled publication (operators); answers with the
    /// rule as stored.
    pub async fn set_policy_rule(
        &self,
        caller: &Caller,
        req: ResourceRuleRequest,
    ) -> Result<serde_json::Value, ServiceError> {
        self.set_rule(caller, RuleTable::Policy, req).await
    }

    async fn set_rule(
        &self,
        caller: &Caller,
        table: RuleTable,
        req: ResourceRuleRequest,
    ) -> Result<serde_json::Value, ServiceError> {
        caller.require_role(Role::Operator)?;
        let kind = match table {
            RuleTable::Billing => PluginKind::Billing,
            RuleTable::Policy => PluginKind::Policy,
        };
        let config = req.config.unwrap_or_else(|| serde_json::json!({}));
        let registration_id = req.registration_id.as_str();
        let data_id = req.data_id.as_deref();
        let plugin_id = req.plugin.as_str();
        let store = &self.inner.store;
        let Some(resource) = store.resource_by_ref(registration_id, data_id).await? else {
            return Err(DomainError::NotFound(format!(
                "no resource with registrationID '{registration_id}'"
            ))
            .into());
        };
        if kind == PluginKind::Policy && !resource.controlled {
            return Err(ServiceError::invalid(
                "/registrationID",
                "usage policies govern controlled data (registrationID TDS-CONTROLLED) only",
            ));
        }
        let Some(plugin) = store.plugin(plugin_id).await? else {
            return Err(unknown_plugin(plugin_id));
        };
        if plugin.kind != kind {
            return Err(DomainError::invalid(
                "/plugin",
                format!(
                    "plugin '{plugin_id}' is a {} plugin, not a {kind} plugin",
                    plugin.kind
                ),
            )
            .into());
        }
        let written = store
            .set_resource_rule(
                table,
                &ResourceRule {
                    resource_id: resource.id,
                    plugin_id: plugin_id.to_owned(),
                    config: config.to_string(),
                },
                &caller.username,
                now_millis(),
            )
            .await?;
        if written == RuleWrite::UnknownResource {
            return Err(ServiceError::not_found(format!(
                "no resource with registrationID '{registration_id}'"
            )));
        }
        self.refresh(true).await?;
        Ok(serde_json::json!({
            "registrationID": registration_id,
            "dataID": data_id,
            "plugin": plugin_id,
            "config": config,
        }))
    }
}

pub(crate) fn unknown_plugin(plugin_id: &str) -> ServiceError {
    ServiceError::not_found(format!("no plugin '{plugin_id}' is installed"))
}

/// The operator's grants, with secret values read from the environment.
fn resolve_grants(config: &PluginsConfig) -> Result<BTreeMap<String, Grants>, anyhow::Error> {
    let mut all = BTreeMap::new();
    for (id, grant) in &config.grants {
        let mut grants = Grants::none()
            .with_http(&grant.http)
            .map_err(|e| anyhow::anyhow!("plugins.grants.{id}.http: {e}"))?;
        for name in &grant.secrets {
            let Some(var) = config.secret_env.get(name) else {
                anyhow::bail!("plugins.grants.{id}: secret '{name}' is not in plugins.secret_env");
            };
            match std::env::var(var) {
                Ok(value) => grants = grants.with_secret(name, value),
                Err(_) => {
                    tracing::warn!(plugin = %id, secret = %name, env = %var, "secret's environment variable is not set; the plugin will not receive it")
                }
            }
        }
        all.insert(id.clone(), grants);
    }
    Ok(all)
}

/// Package files named directly, and the `*.ltpkg` files of named directories (sorted, so
/// versions install in a stable order).
fn package_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, anyhow::Error> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_package(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn is_package(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "ltpkg")
}

/// Seconds of wall time, for metrics.
pub(crate) fn elapsed_secs(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}
