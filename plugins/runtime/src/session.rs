//! The `Store` of one call: its limits (memory, fuel, epoch deadline), its WASI and wasi-http
//! contexts and stderr, the wall-clock limit around it, and what it recorded for explaining a
//! failure.
//!
//! Why a fresh store per call: a plugin keeps no state between calls (the WIT says so), a
//! trap or exhausted fuel cannot poison the next call, and memory is returned at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::config::EffectiveLimits;
use crate::failure::{Evidence, Phase, PluginFailure, classify, short_error};
use crate::http::{HttpGuard, HttpPolicy, HttpRefusal};
use crate::stdio::BoundedPipe;

/// The result of a call with what it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Call<T> {
    pub value: T,
    /// Fuel consumed (billing/policy); `None` for adapters.
    pub fuel_used: Option<u64>,
    /// Wall-clock time of instantiation + call.
    pub duration: Duration,
}

/// What every call of one loaded plugin starts from; built once at load.
pub(crate) struct SessionConfig {
    pub engine: Engine,
    /// Bounds the calls running at once (and so the pool slots in use).
    pub slots: Arc<Semaphore>,
    pub limits: EffectiveLimits,
    /// Epoch deadline of a call, in ticks of the runtime's epoch ticker.
    pub deadline_ticks: u64,
    /// Billing and policy: clocks frozen at the epoch and a fixed random seed, so that the
    /// same arguments give the same answer.
    pub deterministic: bool,
    pub http: Arc<HttpPolicy>,
    /// Deadlines need the ticker: a loaded plugin keeps it running after its runtime is dropped.
    pub _ticker: Arc<crate::engine::EpochTicker>,
}

/// Store data of one call.
pub(crate) struct CallState {
    limiter: Limiter,
    /// Built by the guest's first WASI call: most calls make none (a billing rule's std only
    /// reaches WASI to print a panic), and building a context — random generators seeded from
    /// the OS, clocks, stdio — cost more than the rest of the store.
    wasi: Option<WasiCtx>,
    /// The guest's stderr, created with its WASI context.
    stderr: Option<BoundedPipe>,
    deterministic: bool,
    table: ResourceTable,
    http_ctx: WasiHttpCtx,
    http: HttpGuard,
}

impl CallState {
    /// What the guest wrote to stderr, if it ever reached WASI.
    fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .map(BoundedPipe::contents)
            .unwrap_or_default()
    }
}

/// The WASI context of one call: no files, no environment, no network; stderr kept (its first
/// 4 KiB); for billing and policy, clocks frozen at the epoch and a fixed random seed.
fn wasi_context(deterministic: bool, stderr: &BoundedPipe) -> WasiCtx {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if deterministic {
        wasi.wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            .insecure_random_seed(0);
    }
    wasi.build()
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let CallState {
            wasi,
            stderr,
            deterministic,
            table,
            ..
        } = self;
        let ctx = wasi.get_or_insert_with(|| {
            let pipe = stderr.get_or_insert_with(|| BoundedPipe::new(4096));
            wasi_context(*deterministic, pipe)
        });
        WasiCtxView { ctx, table }
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

/// A store ready for one call, with what is needed to explain its failure.
pub(crate) struct Session {
    store: Store<CallState>,
    refusal: Arc<Mutex<Option<HttpRefusal>>>,
    limits: EffectiveLimits,
    started: Instant,
    slot: OwnedSemaphorePermit,
}

/// How a call ended before it became a [`Call`]: a wasmtime error tagged with its phase, or
/// the wall-clock limit.
pub(crate) type Outcome<R> =
    Result<Result<R, (Phase, wasmtime::Error)>, tokio::time::error::Elapsed>;

impl Session {
    /// Waits for a slot and sets up the store.
    pub async fn open(config: &SessionConfig) -> Result<Session, PluginFailure> {
        let slot =
            config
                .slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| PluginFailure::Instantiate {
                    message: "the runtime is shutting down".into(),
                })?;
        let limits = config.limits;
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
            wasi: None,
            stderr: None,
            deterministic: config.deterministic,
            table: ResourceTable::new(),
            http_ctx: WasiHttpCtx::new(),
            http: HttpGuard {
                policy: config.http.clone(),
                refusal: refusal.clone(),
            },
        };
        let mut store = Store::new(&config.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(limits.fuel.unwrap_or(u64::MAX))
            .map_err(|e| PluginFailure::Instantiate {
                message: short_error(&e),
            })?;
        store.set_epoch_deadline(config.deadline_ticks);
        store.epoch_deadline_trap();
        Ok(Session {
            store,
            refusal,
            limits,
            started: Instant::now(),
            slot,
        })
    }

    /// Runs `call` (instantiation and one export call, errors tagged with their phase) under
    /// the plugin's wall-clock limit.
    pub async fn run<R>(
        &mut self,
        call: impl AsyncFnOnce(&mut Store<CallState>) -> Result<R, (Phase, wasmtime::Error)>,
    ) -> Outcome<R> {
        tokio::time::timeout(self.limits.timeout, call(&mut self.store)).await
    }

    /// The first HTTP request refused during the call, if any.
    pub fn refusal(&self) -> Option<HttpRefusal> {
        self.refusal.lock().ok().and_then(|r| r.clone())
    }

    /// Turns the outcome of [`Session::run`] into a [`Call`] or the failure it stands for.
    pub fn finish<R>(self, outcome: Outcome<R>) -> Result<Call<R>, PluginFailure> {
        let duration = self.started.elapsed();
        let limits = self.limits;
        let fuel_used = limits
            .fuel
            .map(|f| f.saturating_sub(self.store.get_fuel().unwrap_or(0)));
        let result = match outcome {
            Ok(Ok(value)) => Ok(Call {
                value,
                fuel_used,
                duration,
            }),
            Err(_) => Err(PluginFailure::Timeout {
                limit: limits.timeout,
            }),
            Ok(Err((phase, err))) => {
                let evidence = Evidence {
                    fuel_limit: limits.fuel,
                    timeout: limits.timeout,
                    memory_limit: limits.memory_bytes,
                    memory_refused: self.store.data().limiter.memory_refused,
                    refusal: self.refusal(),
                    stderr: self.store.data().stderr(),
                };
                Err(classify(phase, &err, evidence))
            }
        };
        release(self.store, self.slot);
        result
    }
}

/// Drops a used store, and only then frees its slot, off the caller's path when there is a
/// runtime to do it on. Dropping the store deallocates its instance, and with the pooling
/// allocator that resets the slot's memory and tables (a page-map scan and a copy of the dirty
/// pages): work the call's answer need not wait for. The slot's permit goes with the store, so
/// `max_concurrent_instances` still bounds the slots in use, resets included.
fn release(store: Store<CallState>, slot: OwnedSemaphorePermit) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                drop(store);
                drop(slot);
            });
        }
        Err(_) => {
            drop(store);
            drop(slot);
        }
    }
}
