//! The sandbox: one wasmtime `Engine`, compiled components cached on disk, and a fresh,
//! limited `Store` per call.
//!
//! Why a fresh store per call: a plugin keeps no state between calls (the WIT says so), a
//! trap or exhausted fuel cannot poison the next call, and memory is returned at once. With
//! the pooling allocator an instantiation from a pre-linked `InstancePre` costs tens of µs.

use std::collections::BTreeMap;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    StoreLimits, StoreLimitsBuilder, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::bindings;
use crate::http::{HttpGuard, HttpPolicy, HttpRefusal};
use crate::manifest::{HostPattern, Manifest, PluginKind};
use crate::package::{VerifiedPackage, is_component, sha256_hex};
use crate::stdio::BoundedPipe;
use crate::{adapter, billing, policy};

/// Whether to use wasmtime's pooling instance allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingMode {
    /// Use it if its address-space reservation succeeds, else fall back (with a warning).
    #[default]
    Auto,
    /// Require it: [`Runtime::new`] fails if it cannot be created.
    On,
    /// Allocate each instance on demand (mmap per call; slower, no up-front reservation).
    Off,
}

/// Operator settings of the runtime. Per-plugin limits come from the manifest's `[limits]`
/// (or the `default_*` values when absent) and are capped by the `max_*` values.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where compiled components are cached (`None`: compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// Maximum fuel of one billing/policy call (default 1,000,000,000 ≈ 1 G wasm instructions).
    pub max_fuel: u64,
    /// Fuel of a call when the manifest says nothing (default 100,000,000).
    pub default_fuel: u64,
    /// Maximum linear memory of one instance (default 256 MiB).
    pub max_memory_bytes: usize,
    /// Linear memory when the manifest says nothing (default 32 MiB).
    pub default_memory_bytes: usize,
    /// Maximum wall-clock time of one call (default 120 s: adapters wait for upstreams).
    pub max_timeout: Duration,
    /// Time of a call when the manifest says nothing (default 2 s).
    pub default_timeout: Duration,
    /// Largest adapter `output` (default 8 MiB).
    pub max_output_bytes: usize,
    /// Most line items / reasons / counter changes a result may hold (default 1000).
    pub max_result_items: usize,
    /// Longest string in a billing/policy result (default 64 KiB).
    pub max_result_string_bytes: usize,
    /// Pooling allocator (default [`PoolingMode::Auto`]).
    pub pooling: PoolingMode,
    /// Calls running at once; further calls wait for a slot (default 1000). Sizes the pool.
    pub max_concurrent_instances: u32,
    /// Period of the epoch ticker that enforces timeouts (default 5 ms).
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            max_fuel: 1_000_000_000,
            default_fuel: 100_000_000,
            max_memory_bytes: 256 << 20,
            default_memory_bytes: 32 << 20,
            max_timeout: Duration::from_secs(120),
            default_timeout: Duration::from_secs(2),
            max_output_bytes: 8 << 20,
            max_result_items: 1000,
            max_result_string_bytes: 64 << 10,
            pooling: PoolingMode::Auto,
            max_concurrent_instances: 1000,
            epoch_tick: Duration::from_millis(5),
        }
    }
}

/// The limits a loaded plugin runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveLimits {
    /// Fuel per call; `None` for adapters (they wait on I/O; the timeout bounds them).
    pub fuel: Option<u64>,
    pub memory_bytes: usize,
    pub timeout: Duration,
}

/// What the operator allows one plugin, given at load time. `Debug` does not print secret
/// values.
#[derive(Clone, Default)]
pub struct Grants {
    /// Destinations the operator allows; a request must match these AND the manifest.
    pub http: Vec<HostPattern>,
    /// Secret values by name. Only names in the manifest's `capabilities.secrets` reach the
    /// plugin, in `publication.secrets`.
    pub secrets: BTreeMap<String, String>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let http: Vec<String> = self.http.iter().map(|p| p.to_string()).collect();
        f.debug_struct("Grants")
            .field("http", &http)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Grants {
    pub fn none() -> Grants {
        Grants::default()
    }

    /// Grant HTTP patterns, e.g. `["api.openai.com:443"]`.
    pub fn with_http<I, S>(mut self, patterns: I) -> Result<Grants, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for p in patterns {
            self.http.push(HostPattern::parse(p.as_ref())?);
        }
        Ok(self)
    }

    pub fn with_secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Grants {
        self.secrets.insert(name.into(), value.into());
        self
    }
}

/// The result of a call with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<T> {
    pub value: T,
    /// Fuel consumed (billing/policy); `None` for adapters.
    pub fuel_used: Option<u64>,
    /// Wall-clock time of instantiation + call.
    pub duration: Duration,
}

/// How a load went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadReport {
    /// The compiled component came from the on-disk cache.
    pub cache_hit: bool,
    /// Time spent compiling (0 on a cache hit).
    pub compile_ms: u64,
    /// Time of the whole load (cache read or compile, linking, type checks).
    pub load_ms: u64,
}

/// Counters of a runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    pub cache_hits: u64,
    pub compilations: u64,
    /// Cache files that could not be used and were replaced.
    pub cache_rejects: u64,
}

/// A plugin that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("plugin.toml is invalid: `{field}`: {message}")]
    InvalidManifest { field: String, message: String },
    #[error("plugin.wasm is not a WebAssembly component; build it for wasm32-wasip2")]
    NotAComponent,
    #[error("plugin {plugin}: the component does not compile: {message}")]
    Compile { plugin: String, message: String },
    #[error(
        "plugin {plugin}: the component does not implement the {kind} world {world}: {message}"
    )]
    WrongWorld {
        plugin: String,
        kind: PluginKind,
        world: String,
        message: String,
    },
}

/// How a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFailure {
    #[error("timed out (limit {} ms)", limit.as_millis())]
    Timeout { limit: Duration },
    #[error("ran out of fuel (limit {limit})")]
    OutOfFuel { limit: u64 },
    #[error("exceeded its memory limit ({limit} bytes)")]
    MemoryLimit { limit: usize },
    #[error("trapped: {message}")]
    Trap { message: String },
    #[error("returned a malformed result: {message}")]
    MalformedResult { message: String },
    #[error("returned a result larger than allowed ({limit})")]
    OutputTooLarge { limit: String },
    #[error("was refused an HTTP request to {host}: {hint}")]
    HttpRefused { host: String, hint: String },
    #[error("could not be instantiated: {message}")]
    Instantiate { message: String },
}

/// A failed call: which plugin, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plugin {plugin}@{version}: {kind}")]
pub struct PluginError {
    pub plugin: String,
    pub version: String,
    pub kind: PluginFailure,
}

/// Instantiates `$pre` in session `$s` and runs one export call on it, under the plugin's
/// wall-time limit; errors are tagged with the phase they happened in.
macro_rules! call_in_session {
    ($self:ident, $pre:ident, $s:ident, |$inst:ident, $store:ident| $call:expr) => {
        tokio::time::timeout($self.inner.limits.timeout, async {
            let $inst = $pre
                .instantiate_async(&mut $s.store)
                .await
                .map_err(|e| (Phase::Instantiate, e))?;
            let $store = &mut $s.store;
            $call.await.map_err(|e| (Phase::Call, e))
        })
        .await
    };
}

/// Store data of one call.
pub(crate) struct CallState {
    limiter: Limiter,
    wasi: WasiCtx,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    http: HttpGuard,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.http,
            table: &mut self.table,
            ctx: &mut self.http_ctx,
        }
    }
}

/// `StoreLimits` that also remember whether a memory grow was refused, so that a trap caused
/// by the limit is reported as `MemoryLimit` whatever the guest did after the failed grow.
struct Limiter {
    inner: StoreLimits,
    memory_limit: usize,
    memory_refused: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_refused = true;
        }
        self.inner.memory_growing(current, desired, maximum)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_refused = true;
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }
    fn tables(&self) -> usize {
        self.inner.tables()
    }
    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Clocks of billing and policy plugins: frozen at the epoch. They get the time in their
/// arguments, and must give the same answer for the same arguments.
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

struct RuntimeInner {
    config: RuntimeConfig,
    engine: Engine,
    engine_hash: String,
    pooling: bool,
    /// Billing and policy: WASI without files, network, environment or clocks.
    compute_linker: Linker<CallState>,
    /// Adapters: the same WASI plus wasi:http through [`HttpGuard`].
    adapter_linker: Linker<CallState>,
    slots: Arc<Semaphore>,
    tls: Arc<rustls::ClientConfig>,
    stop_ticker: Arc<AtomicBool>,
    cache_hits: AtomicU64,
    compilations: AtomicU64,
    cache_rejects: AtomicU64,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
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

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the plugin runtime: {0}")]
pub struct RuntimeError(String);

/// Feeds `Hash` into SHA-256, for a stable name of the engine configuration.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn engine_config(config: &RuntimeConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.consume_fuel(true);
    c.epoch_interruption(true);
    c.parallel_compilation(true);
    if pooling {
        let n = config.max_concurrent_instances.max(1);
        let mut p = PoolingAllocationConfig::new();
        p.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(4))
            .total_stacks(n)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(config.max_memory_bytes)
            .max_unused_warm_slots(n.min(100));
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

impl Runtime {
    /// Start a runtime: the engine (pooling per [`RuntimeConfig::pooling`]), the linkers and
    /// the epoch ticker thread (stopped when the last clone is dropped).
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if config.epoch_tick.is_zero() {
            return Err(RuntimeError("epoch_tick must be positive".into()));
        }
        let (engine, pooling) = match config.pooling {
            PoolingMode::Off => (Engine::new(&engine_config(&config, false)), false),
            PoolingMode::On => (Engine::new(&engine_config(&config, true)), true),
            PoolingMode::Auto => match Engine::new(&engine_config(&config, true)) {
                Ok(e) => (Ok(e), true),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "plugin runtime: pooling allocator unavailable, allocating instances on demand"
                    );
                    (Engine::new(&engine_config(&config, false)), false)
                }
            },
        };
        let engine = engine.map_err(|e| RuntimeError(format!("{e:#}")))?;

        let mut hasher = ShaHasher(Sha256::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        hasher.write(env!("CARGO_PKG_VERSION").as_bytes());
        let engine_hash = hex::encode(hasher.0.finalize())[..16].to_string();

        let mut compute_linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut compute_linker)
            .map_err(|e| RuntimeError(format!("linking WASI: {e:#}")))?;
        let mut adapter_linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut adapter_linker)
            .map_err(|e| RuntimeError(format!("linking WASI: {e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut adapter_linker)
            .map_err(|e| RuntimeError(format!("linking wasi:http: {e:#}")))?;

        let tls = crate::http::tls_config().map_err(RuntimeError)?;
        let stop_ticker = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.weak();
            let stop = stop_ticker.clone();
            let tick = config.epoch_tick;
            std::thread::Builder::new()
                .name("plugin-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        match engine.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| RuntimeError(format!("epoch thread: {e}")))?;
        }

        let slots = Arc::new(Semaphore::new(
            config.max_concurrent_instances.max(1) as usize
        ));
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                config,
                engine,
                engine_hash,
                pooling,
                compute_linker,
                adapter_linker,
                slots,
                tls,
                stop_ticker,
                cache_hits: AtomicU64::new(0),
                compilations: AtomicU64::new(0),
                cache_rejects: AtomicU64::new(0),
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
        RuntimeStats {
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
            compilations: self.inner.compilations.load(Ordering::Relaxed),
            cache_rejects: self.inner.cache_rejects.load(Ordering::Relaxed),
        }
    }

    /// The limits a manifest gets here: its own or the defaults, capped by the maximums.
    pub fn effective_limits(&self, manifest: &Manifest) -> EffectiveLimits {
        let c = &self.inner.config;
        let l = &manifest.limits;
        let memory_bytes = l
            .memory_mb
            .map(|mb| usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
            .unwrap_or(c.default_memory_bytes)
            .min(c.max_memory_bytes);
        let timeout = l
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(c.default_timeout)
            .min(c.max_timeout);
        let fuel = match manifest.kind {
            PluginKind::Adapter => None,
            _ => Some(l.fuel.unwrap_or(c.default_fuel).min(c.max_fuel)),
        };
        EffectiveLimits {
            fuel,
            memory_bytes,
            timeout,
        }
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
        if !is_component(component) {
            return Err(LoadError::NotAComponent);
        }
        let sha = sha256_hex(component);
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
        let label = format!("{}@{}", manifest.id, manifest.version);
        let (component, cache_hit, compile_ms) =
            self.component(&label, &component_bytes, &component_sha256)?;
        let kind = manifest.kind;
        let wit = manifest.wit.to_string();
        let linker = match kind {
            PluginKind::Adapter => &self.inner.adapter_linker,
            _ => &self.inner.compute_linker,
        };
        let world = format!("liutong:{kind}/{kind}@{wit}");
        let wrong = |message: String| LoadError::WrongWorld {
            plugin: label.clone(),
            kind,
            world: world.clone(),
            message,
        };
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            wrong(format!(
                "it imports something {kind} plugins may not use: {}",
                short_error(&e)
            ))
        })?;
        let pre = match (kind, wit.as_str()) {
            (PluginKind::Billing, "0.1.0") => Pre::BillingV0_1_0(
                bindings::billing::v0_1_0::BillingPre::new(instance_pre)
                    .map_err(|e| wrong(short_error(&e)))?,
            ),
            (PluginKind::Policy, "0.1.0") => Pre::PolicyV0_1_0(
                bindings::policy::v0_1_0::PolicyPre::new(instance_pre)
                    .map_err(|e| wrong(short_error(&e)))?,
            ),
            (PluginKind::Adapter, "0.1.0") => Pre::AdapterV0_1_0(
                bindings::adapter::v0_1_0::AdapterPre::new(instance_pre)
                    .map_err(|e| wrong(short_error(&e)))?,
            ),
            _ => {
                return Err(LoadError::InvalidManifest {
                    field: "wit".into(),
                    message: format!("{kind} WIT version {wit} is not supported by this runtime"),
                });
            }
        };

        let limits = self.effective_limits(&manifest);
        let (http, secrets) = if kind == PluginKind::Adapter {
            let secrets = manifest
                .capabilities
                .secrets
                .iter()
                .filter_map(|name| grants.secrets.get(name).map(|v| (name.clone(), v.clone())))
                .collect();
            (
                Arc::new(HttpPolicy {
                    manifest: manifest.capabilities.http.clone(),
                    granted: grants.http.clone(),
                    tls: self.inner.tls.clone(),
                }),
                secrets,
            )
        } else {
            (
                Arc::new(HttpPolicy {
                    manifest: Vec::new(),
                    granted: Vec::new(),
                    tls: self.inner.tls.clone(),
                }),
                Vec::new(),
            )
        };
        let report = LoadReport {
            cache_hit,
            compile_ms,
            load_ms: started.elapsed().as_millis() as u64,
        };
        tracing::debug!(plugin = %label, ?report, "plugin loaded");
        Ok(LoadedPlugin {
            inner: Arc::new(PluginInner {
                runtime: self.inner.clone(),
                version: manifest.version.to_string(),
                manifest,
                component_sha256,
                limits,
                pre,
                http,
                secrets,
                report,
            }),
        })
    }

    /// The compiled component: from the cache if a valid entry exists, else compiled (and
    /// cached). Returns (component, cache hit, compile ms).
    fn component(
        &self,
        label: &str,
        bytes: &[u8],
        sha: &str,
    ) -> Result<(Component, bool, u64), LoadError> {
        let engine = &self.inner.engine;
        let cache_path = self
            .inner
            .config
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha}-{}.cwasm", self.inner.engine_hash)));
        if let Some(path) = &cache_path
            && path.exists()
        {
            match read_cache(engine, path) {
                Ok(c) => {
                    self.inner.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((c, true, 0));
                }
                Err(e) => {
                    self.inner.cache_rejects.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(path = %path.display(), error = %e, "plugin cache entry unusable; recompiling");
                }
            }
        }
        let started = Instant::now();
        let component = Component::new(engine, bytes).map_err(|e| LoadError::Compile {
            plugin: label.to_string(),
            message: short_error(&e),
        })?;
        let compile_ms = started.elapsed().as_millis() as u64;
        self.inner.compilations.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = &cache_path
            && let Err(e) = write_cache(&component, path)
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the plugin cache");
        }
        Ok((component, false, compile_ms))
    }
}

const CACHE_MAGIC: &[u8; 8] = b"LTPCACHE";

/// Cache file: magic, serialized component, SHA-256 of the serialized bytes. The checksum
/// catches truncated or corrupted files, which wasmtime's own header check would not.
fn read_cache(engine: &Engine, path: &Path) -> Result<Component, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    if data.len() < 8 + 32 || &data[..8] != CACHE_MAGIC {
        return Err("not a liutong plugin cache file".into());
    }
    let (body, sum) = data[8..].split_at(data.len() - 8 - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch".into());
    }
    // SAFETY: the bytes were produced by `Component::serialize` of an engine with this
    // configuration (the file name includes its hash) in the operator's cache directory, and
    // the checksum shows they are unchanged; wasmtime also checks version and settings.
    unsafe { Component::deserialize(engine, body) }.map_err(|e| short_error(&e))
}

/// Write atomically: a temporary file in the same directory, then rename.
fn write_cache(component: &Component, path: &Path) -> Result<(), String> {
    let body = component.serialize().map_err(|e| short_error(&e))?;
    let dir = path.parent().ok_or("cache path has no directory")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(CACHE_MAGIC)?;
        f.write_all(&body)?;
        f.write_all(&Sha256::digest(&body))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| e.to_string())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The first line of an error chain, without backtraces.
fn short_error(e: &wasmtime::Error) -> String {
    let mut s = format!("{e:#}");
    if let Some(i) = s.find("\nStack backtrace") {
        s.truncate(i);
    }
    let s = s.trim().replace('\n', " ");
    truncate(&s, 1000)
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

enum Pre {
    BillingV0_1_0(bindings::billing::v0_1_0::BillingPre<CallState>),
    PolicyV0_1_0(bindings::policy::v0_1_0::PolicyPre<CallState>),
    AdapterV0_1_0(bindings::adapter::v0_1_0::AdapterPre<CallState>),
}

struct PluginInner {
    runtime: Arc<RuntimeInner>,
    manifest: Manifest,
    version: String,
    component_sha256: String,
    limits: EffectiveLimits,
    pre: Pre,
    http: Arc<HttpPolicy>,
    secrets: Vec<(String, String)>,
    report: LoadReport,
}

/// A loaded plugin, ready to call. Cheap to clone; calls may run concurrently.
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<PluginInner>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("id", &self.inner.manifest.id)
            .field("version", &self.inner.version)
            .field("kind", &self.inner.manifest.kind)
            .field("limits", &self.inner.limits)
            .finish()
    }
}

/// A store ready for one call, with what is needed to explain its failure.
struct Session {
    store: Store<CallState>,
    refusal: Arc<Mutex<Option<HttpRefusal>>>,
    stderr: BoundedPipe,
    fuel: Option<u64>,
    started: Instant,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

enum Phase {
    Instantiate,
    Call,
}

impl LoadedPlugin {
    pub fn id(&self) -> &str {
        &self.inner.manifest.id
    }
    pub fn version(&self) -> &semver::Version {
        &self.inner.manifest.version
    }
    pub fn kind(&self) -> PluginKind {
        self.inner.manifest.kind
    }
    pub fn component_sha256(&self) -> &str {
        &self.inner.component_sha256
    }
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }
    pub fn limits(&self) -> EffectiveLimits {
        self.inner.limits
    }
    pub fn load_report(&self) -> LoadReport {
        self.inner.report
    }

    fn error(&self, kind: PluginFailure) -> PluginError {
        PluginError {
            plugin: self.inner.manifest.id.clone(),
            version: self.inner.version.clone(),
            kind,
        }
    }

    fn wrong_kind(&self, wanted: PluginKind) -> PluginError {
        self.error(PluginFailure::Instantiate {
            message: format!(
                "this is a {} plugin, not a {wanted} plugin",
                self.inner.manifest.kind
            ),
        })
    }

    async fn session(&self) -> Result<Session, PluginError> {
        let rt = &self.inner.runtime;
        let slot = rt.slots.clone().acquire_owned().await.map_err(|_| {
            self.error(PluginFailure::Instantiate {
                message: "the runtime is shutting down".into(),
            })
        })?;
        let limits = self.inner.limits;
        let stderr = BoundedPipe::new(4096);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if self.inner.manifest.kind != PluginKind::Adapter {
            wasi.wall_clock(FrozenClock)
                .monotonic_clock(FrozenClock)
                .insecure_random_seed(0);
        }
        let refusal = Arc::new(Mutex::new(None));
        let state = CallState {
            limiter: Limiter {
                inner: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .table_elements(100_000)
                    .instances(64)
                    .tables(64)
                    .memories(8)
                    .trap_on_grow_failure(true)
                    .build(),
                memory_limit: limits.memory_bytes,
                memory_refused: false,
            },
            wasi: wasi.build(),
            table: ResourceTable::new(),
            http_ctx: WasiHttpCtx::new(),
            http: HttpGuard {
                policy: self.inner.http.clone(),
                refusal: refusal.clone(),
            },
        };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limiter);
        let fuel = limits.fuel;
        store.set_fuel(fuel.unwrap_or(u64::MAX)).map_err(|e| {
            self.error(PluginFailure::Instantiate {
                message: short_error(&e),
            })
        })?;
        let tick = rt.config.epoch_tick.as_nanos().max(1);
        let ticks = limits.timeout.as_nanos().div_ceil(tick) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        Ok(Session {
            store,
            refusal,
            stderr,
            fuel,
            started: Instant::now(),
            _slot: slot,
        })
    }

    /// Turn the outcome of a call into a [`Call`] or a [`PluginError`].
    fn finish<R>(
        &self,
        session: Session,
        outcome: Result<Result<R, (Phase, wasmtime::Error)>, tokio::time::error::Elapsed>,
    ) -> Result<Call<R>, PluginError> {
        let duration = session.started.elapsed();
        let limits = self.inner.limits;
        let fuel_used = session
            .fuel
            .map(|f| f.saturating_sub(session.store.get_fuel().unwrap_or(0)));
        let memory_refused = session.store.data().limiter.memory_refused;
        let refusal = session.refusal.lock().ok().and_then(|r| r.clone());
        let (phase, err) = match outcome {
            Ok(Ok(value)) => {
                return Ok(Call {
                    value,
                    fuel_used,
                    duration,
                });
            }
            Err(_) => {
                return Err(self.error(PluginFailure::Timeout {
                    limit: limits.timeout,
                }));
            }
            Ok(Err(e)) => e,
        };
        let trap = err.downcast_ref::<Trap>().copied();
        let failure = match trap {
            Some(Trap::OutOfFuel) => PluginFailure::OutOfFuel {
                limit: session.fuel.unwrap_or(0),
            },
            Some(Trap::Interrupt) => PluginFailure::Timeout {
                limit: limits.timeout,
            },
            _ if memory_refused => PluginFailure::MemoryLimit {
                limit: limits.memory_bytes,
            },
            _ if refusal.is_some() => {
                let r = refusal.unwrap_or_else(|| HttpRefusal {
                    host: String::new(),
                    hint: String::new(),
                });
                PluginFailure::HttpRefused {
                    host: r.host,
                    hint: r.hint,
                }
            }
            Some(t) => {
                let mut message = t.to_string();
                let stderr = session.stderr.contents();
                let stderr = stderr.trim();
                if !stderr.is_empty() {
                    message.push_str(&format!(" (guest stderr: {})", truncate(stderr, 500)));
                }
                PluginFailure::Trap { message }
            }
            None => match phase {
                Phase::Instantiate => PluginFailure::Instantiate {
                    message: short_error(&err),
                },
                Phase::Call => PluginFailure::Trap {
                    message: short_error(&err),
                },
            },
        };
        tracing::debug!(plugin = %self.inner.manifest.id, failure = %failure, "plugin call failed");
        Err(self.error(failure))
    }

    fn too_large(&self, what: String) -> PluginError {
        self.error(PluginFailure::OutputTooLarge { limit: what })
    }

    fn check_string(&self, field: &str, s: &str) -> Result<(), PluginError> {
        let max = self.inner.runtime.config.max_result_string_bytes;
        if s.len() > max {
            return Err(self.too_large(format!("{field}: {} bytes > {max} bytes", s.len())));
        }
        Ok(())
    }

    fn check_items(&self, field: &str, n: usize) -> Result<(), PluginError> {
        let max = self.inner.runtime.config.max_result_items;
        if n > max {
            return Err(self.too_large(format!("{field}: {n} items > {max} items")));
        }
        Ok(())
    }

    fn check_charge(
        &self,
        r: &Result<billing::Charge, billing::BillingError>,
    ) -> Result<(), PluginError> {
        match r {
            Ok(c) => {
                self.check_items("line-items", c.line_items.len())?;
                for item in &c.line_items {
                    self.check_string("line-items.description", &item.description)?;
                }
                Ok(())
            }
            Err(
                billing::BillingError::InvalidConfig(m)
                | billing::BillingError::InvalidInput(m)
                | billing::BillingError::Unsupported(m),
            ) => self.check_string("billing-error", m),
        }
    }

    /// `rule.charge-trade`.
    pub async fn charge_trade(
        &self,
        trade: billing::Trade,
    ) -> Result<Call<Result<billing::Charge, billing::BillingError>>, PluginError> {
        #[allow(irrefutable_let_patterns)]
        let Pre::BillingV0_1_0(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Billing));
        };
        let mut s = self.session().await?;
        let outcome = call_in_session!(self, pre, s, |inst, store| inst
            .liutong_billing_rule()
            .call_charge_trade(store, &trade));
        let call = self.finish(s, outcome)?;
        self.check_charge(&call.value)?;
        Ok(call)
    }

    /// `rule.charge-usage`.
    pub async fn charge_usage(
        &self,
        usage: billing::Usage,
    ) -> Result<Call<Result<billing::Charge, billing::BillingError>>, PluginError> {
        #[allow(irrefutable_let_patterns)]
        let Pre::BillingV0_1_0(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Billing));
        };
        let mut s = self.session().await?;
        let outcome = call_in_session!(self, pre, s, |inst, store| inst
            .liutong_billing_rule()
            .call_charge_usage(store, &usage));
        let call = self.finish(s, outcome)?;
        self.check_charge(&call.value)?;
        Ok(call)
    }

    /// `evaluator.evaluate`.
    pub async fn evaluate(
        &self,
        usage_policy: policy::UsagePolicy,
        request: policy::AccessRequest,
    ) -> Result<Call<Result<policy::Verdict, policy::PolicyError>>, PluginError> {
        let Pre::PolicyV0_1_0(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Policy));
        };
        let mut s = self.session().await?;
        let outcome = call_in_session!(self, pre, s, |inst, store| inst
            .liutong_policy_evaluator()
            .call_evaluate(store, &usage_policy, &request));
        let call = self.finish(s, outcome)?;
        match &call.value {
            Ok(v) => {
                self.check_items("reasons", v.reasons.len())?;
                self.check_items("counter-changes", v.counter_changes.len())?;
                for r in &v.reasons {
                    self.check_string("reasons", r)?;
                }
            }
            Err(policy::PolicyError::InvalidPolicy(m) | policy::PolicyError::InvalidRequest(m)) => {
                self.check_string("policy-error", m)?
            }
        }
        Ok(call)
    }

    /// `invoke.invoke`. `publication.secrets` is replaced: only secrets named in the
    /// manifest's `capabilities.secrets` pass, and granted values override the caller's.
    pub async fn invoke(
        &self,
        mut publication: adapter::Publication,
        invocation: adapter::Invocation,
    ) -> Result<Call<Result<adapter::Outcome, adapter::AdapterError>>, PluginError> {
        let Pre::AdapterV0_1_0(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Adapter));
        };
        let allowed = &self.inner.manifest.capabilities.secrets;
        let mut secrets: Vec<adapter::Secret> = publication
            .secrets
            .drain(..)
            .filter(|s| allowed.contains(&s.name))
            .filter(|s| !self.inner.secrets.iter().any(|(n, _)| *n == s.name))
            .collect();
        secrets.extend(
            self.inner
                .secrets
                .iter()
                .map(|(name, value)| adapter::Secret {
                    name: name.clone(),
                    value: value.clone(),
                }),
        );
        publication.secrets = secrets;

        let mut s = self.session().await?;
        let refusal = s.refusal.clone();
        let outcome = call_in_session!(self, pre, s, |inst, store| inst
            .liutong_adapter_invoke()
            .call_invoke(store, &publication, &invocation));
        let call = self.finish(s, outcome)?;
        if call.value.is_err()
            && let Some(r) = refusal.lock().ok().and_then(|r| r.clone())
        {
            return Err(self.error(PluginFailure::HttpRefused {
                host: r.host,
                hint: r.hint,
            }));
        }
        if let Ok(o) = &call.value {
            let max = self.inner.runtime.config.max_output_bytes;
            if o.output.len() > max {
                return Err(
                    self.too_large(format!("output: {} bytes > {max} bytes", o.output.len()))
                );
            }
        }
        Ok(call)
    }
}
