//! The one wasmtime `Engine` of a runtime: its configuration (fuel, epochs, the pooling
//! allocator and how it recycles slots) and the epoch ticker that enforces wall-clock limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::{PoolingMode, RuntimeConfig};
use crate::failure::RuntimeError;

/// Builds the engine; the flag says whether it uses the pooling allocator.
pub(crate) fn build(config: &RuntimeConfig) -> Result<(Engine, bool), RuntimeError> {
    let (engine, pooling) = match config.pooling {
        PoolingMode::Off => (Engine::new(&engine_config(config, false)), false),
        PoolingMode::On => (Engine::new(&engine_config(config, true)), true),
        PoolingMode::Auto => match Engine::new(&engine_config(config, true)) {
            Ok(e) => (Ok(e), true),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "plugin runtime: pooling allocator unavailable, allocating instances on demand"
                );
                (Engine::new(&engine_config(config, false)), false)
            }
        },
    };
    let engine = engine.map_err(|e| RuntimeError(format!("{e:#}")))?;
    Ok((engine, pooling))
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
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            // A freed slot is reset by copying back only the pages the call dirtied (found
            // with the PAGEMAP_SCAN ioctl), and they stay mapped. Without this every call
            // ended in an madvise (a TLB shootdown) and the next one page-faulted its stack,
            // data and tables in again: half of a call's time went to the kernel. Without the
            // ioctl (Linux < 6.7) keeping memory resident would mean a memset of the lowest
            // bytes of every slot, which is the guest's 1 MiB stack: then leave the defaults.
            p.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
                .table_keep_resident(KEEP_RESIDENT_TABLE);
        }
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

/// Most dirty bytes of a linear memory reset by copying (beyond them, decommitted), and so
/// resident per warm slot at most. A flat-fee call dirties under 16 KiB (its time is the same
/// with 16 KiB as with 1 MiB here); the margin is for rules that allocate more.
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;
/// The same for tables; a component's tables are about a page each, zeroed by a memset.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Epoch deadline of a call limited to `timeout`, in ticks of `tick`. One tick more than the
/// quotient: a call may start just before a tick, which must not count as a whole period.
pub(crate) fn deadline_ticks(timeout: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    u64::try_from(timeout.as_nanos().div_ceil(tick) + 1).unwrap_or(u64::MAX)
}

/// The thread that advances the engine's epoch every `tick`; it stops when this is dropped
/// or when the engine is gone.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine, tick: Duration) -> Result<EpochTicker, RuntimeError> {
        if tick.is_zero() {
            return Err(RuntimeError("epoch_tick must be positive".into()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.weak();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match engine.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| RuntimeError(format!("epoch thread: {e}")))?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
