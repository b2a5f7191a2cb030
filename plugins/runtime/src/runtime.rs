//! The runtime: one engine, its linkers and cache, and loading a plugin — compile or read the
//! cache, check it against its kind's world through the bindings its `wit` resolves to, and
//! pre-link it for calls.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use wasmtime::Engine;

use crate::cache::{ComponentCache, RuntimeStats};
use crate::config::{EffectiveLimits, RuntimeConfig};
use crate::engine::{self, EpochTicker};
use crate::failure::{LoadError, RuntimeError, short_error};
use crate::grants::Grants;
use crate::http::HttpPolicy;
use crate::linker::Linkers;
use crate::manifest::{Manifest, PluginKind};
use crate::package::VerifiedPackage;
use crate::plugin::{LoadReport, LoadedPlugin, PluginInner, Pre, ResultLimits};
use crate::prelinked::{
    adapter::AdapterPre, billing::BillingPre, policy::PolicyPre, provider::ProviderPre,
};
use crate::session::SessionConfig;

struct RuntimeInner {
    config: RuntimeConfig,
    engine: Engine,
    pooling: bool,
    linkers: Linkers,
    cache: ComponentCache,
    slots: Arc<Semaphore>,
    tls: Arc<rustls::ClientConfig>,
    ticker: Arc<EpochTicker>,
}

/// The plugin runtime. Cheap to clone; create one per process.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("pooling", &self.inner.pooling)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Runtime {
    /// Start a runtime: the engine (pooling per [`RuntimeConfig::pooling`]), the linkers and
    /// the epoch ticker thread (stopped when the runtime and every plugin it loaded are
    /// dropped).
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if config.epoch_tick.is_zero() {
            return Err(RuntimeError("epoch_tick must be positive".into()));
        }
        let (engine, pooling) = engine::build(&config)?;
        let linkers = Linkers::new(&engine)?;
        let cache = ComponentCache::new(config.cache_dir.clone(), &engine);
        let tls = crate::http::tls_config().map_err(RuntimeError)?;
        let ticker = Arc::new(EpochTicker::start(&engine, config.epoch_tick)?);
        let slots = Arc::new(Semaphore::new(
            config.max_concurrent_instances.max(1) as usize
        ));
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                config,
                engine,
                pooling,
                linkers,
                cache,
                slots,
                tls,
                ticker,
            }),
        })
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    pub fn stats(&self) -> RuntimeStats {
        self.inner.cache.stats()
    }

    /// The limits a manifest gets here: its own or the defaults, capped by the maximums.
    pub fn effective_limits(&self, manifest: &Manifest) -> EffectiveLimits {
        EffectiveLimits::of(&self.inner.config, manifest)
    }

    /// Load a verified package: compile it (or read it from the cache), check that it
    /// implements its kind's world with only the imports that kind may use, and pre-link it.
    /// CPU-bound (a compile takes 50-100 ms in release builds): call it from
    /// `spawn_blocking` in async code.
    pub fn load(
        &self,
        package: &VerifiedPackage,
        grants: &Grants,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load_parts(
            package.manifest.clone(),
            package.component.clone(),
            package.component_sha256.clone(),
            grants,
        )
    }

    /// Load a plugin WITHOUT a signature. Only for plugin authors' tests
    /// ([`crate::testing::Harness`]) and benchmarks; a host must use [`Runtime::load`].
    #[cfg(feature = "testing")]
    pub fn load_unsigned_for_testing(
        &self,
        manifest: &[u8],
        component: &[u8],
        grants: &Grants,
    ) -> Result<LoadedPlugin, LoadError> {
        let manifest = Manifest::parse(manifest).map_err(|e| LoadError::InvalidManifest {
            field: e.field,
            message: e.message,
        })?;
        if !crate::package::is_component(component) {
            return Err(LoadError::NotAComponent);
        }
        let sha = crate::package::sha256_hex(component);
        self.load_parts(manifest, component.into(), sha, grants)
    }

    fn load_parts(
        &self,
        manifest: Manifest,
        component_bytes: Arc<[u8]>,
        component_sha256: String,
        grants: &Grants,
    ) -> Result<LoadedPlugin, LoadError> {
        let started = Instant::now();
        let rt = &self.inner;
        let label = format!("{}@{}", manifest.id, manifest.version);
        let kind = manifest.kind;
        let wit = manifest
            .wit
            .resolve(kind)
            .map_err(|message| LoadError::InvalidManifest {
                field: "wit".into(),
                message,
            })?;
        let compiled =
            rt.cache
                .component(&rt.engine, &label, &component_bytes, &component_sha256)?;
        let world = format!("liutong:{kind}/{kind}@{wit}");
        let wrong = |message: String| LoadError::WrongWorld {
            plugin: label.clone(),
            kind,
            world: world.clone(),
            message,
        };
        let instance_pre = rt
            .linkers
            .for_kind(kind)
            .instantiate_pre(&compiled.component)
            .map_err(|e| {
                wrong(format!(
                    "it imports something {kind} plugins may not use: {}",
                    short_error(&e)
                ))
            })?;
        let pre = match kind {
            PluginKind::Billing => BillingPre::new(wit, instance_pre).map(Pre::Billing),
            PluginKind::Policy => PolicyPre::new(wit, instance_pre).map(Pre::Policy),
            PluginKind::Adapter => AdapterPre::new(wit, instance_pre).map(Pre::Adapter),
            PluginKind::Provider => ProviderPre::new(wit, instance_pre).map(Pre::Provider),
        }
        .map_err(|e| wrong(short_error(&e)))?;

        let limits = self.effective_limits(&manifest);
        let (http, secrets) = if kind.reaches_network() {
            let secrets = manifest
                .capabilities
                .secrets
                .iter()
                .filter_map(|name| grants.secrets.get(name).map(|v| (name.clone(), v.clone())))
                .collect();
            let policy = HttpPolicy {
                manifest: manifest.capabilities.http.clone(),
                granted: grants.http.clone(),
                tls: rt.tls.clone(),
            };
            (policy, secrets)
        } else {
            let policy = HttpPolicy {
                manifest: Vec::new(),
                granted: Vec::new(),
                tls: rt.tls.clone(),
            };
            (policy, Vec::new())
        };
        let session = SessionConfig {
            engine: rt.engine.clone(),
            slots: rt.slots.clone(),
            limits,
            deadline_ticks: engine::deadline_ticks(limits.timeout, rt.config.epoch_tick),
            deterministic: !kind.reaches_network(),
            http: Arc::new(http),
            _ticker: rt.ticker.clone(),
        };
        let report = LoadReport {
            cache_hit: compiled.cache_hit,
            compile_ms: compiled.compile_ms,
            load_ms: started.elapsed().as_millis() as u64,
        };
        tracing::debug!(plugin = %label, %wit, ?report, "plugin loaded");
        Ok(LoadedPlugin {
            inner: Arc::new(PluginInner {
                version: manifest.version.to_string(),
                manifest,
                component_sha256,
                pre,
                session,
                results: ResultLimits {
                    max_items: rt.config.max_result_items,
                    max_bill_lines: rt.config.max_bill_lines,
                    max_string_bytes: rt.config.max_result_string_bytes,
                    max_output_bytes: rt.config.max_output_bytes,
                },
                secrets,
                report,
            }),
        })
    }
}
