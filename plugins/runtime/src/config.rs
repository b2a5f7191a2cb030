//! What the operator sets ([`RuntimeConfig`]) and the limits a plugin ends up with
//! ([`EffectiveLimits`]): its manifest's request, or the default, capped by the maximum.

use std::path::PathBuf;
use std::time::Duration;

use crate::manifest::{Manifest, PluginKind};

/// Whether to use wasmtime's pooling instance allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PoolingMode {
    /// Use it if its address-space reservation succeeds, else fall back (with a warning).
    #[default]
    Auto,
    /// Require it: [`crate::Runtime::new`] fails if it cannot be created.
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
    /// Most bill lines one `list-bills` call may answer (default 100 000).
    pub max_bill_lines: usize,
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
            max_bill_lines: 100_000,
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

impl EffectiveLimits {
    /// The limits `manifest` gets under `config`: its own or the defaults, capped by the
    /// maximums.
    pub fn of(config: &RuntimeConfig, manifest: &Manifest) -> EffectiveLimits {
        let l = &manifest.limits;
        let memory_bytes = l
            .memory_mb
            .map(|mb| usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX))
            .unwrap_or(config.default_memory_bytes)
            .min(config.max_memory_bytes);
        let timeout = l
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(config.default_timeout)
            .min(config.max_timeout);
        let fuel = match manifest.kind {
            PluginKind::Adapter | PluginKind::Provider => None,
            _ => Some(l.fuel.unwrap_or(config.default_fuel).min(config.max_fuel)),
        };
        EffectiveLimits {
            fuel,
            memory_bytes,
            timeout,
        }
    }
}
