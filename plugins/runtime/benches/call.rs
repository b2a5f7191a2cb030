//! Per-call cost of the runtime alone: `cargo bench -p liutong-plugin-runtime --bench call`.
//!
//! Loads `billing-flat-fee` (built by `scripts/build-plugins.sh` beforehand) and times
//! sequential `charge-trade` calls, each a fresh store and instance, with the pooling
//! allocator and without. A faster loop than the host's `plugins` bench, for profiling the
//! runtime (`perf record -g` on this binary); the host's bench is the reference figure.
//!
//! Settings (environment): LIUTONG_BENCH_CALLS (20000), LIUTONG_BENCH_POOLING (`on`, `off` or
//! `both`, default `both`), LIUTONG_BENCH_SLOTS (the runtime's `max_concurrent_instances`,
//! default 1000; a few slots keep the pool's address-space reservation small enough for
//! `valgrind --tool=callgrind`, whose instruction counts do not depend on the machine's load),
//! LIUTONG_BENCH_GAP_US (pause between calls, default 0: with a few ms the calls are cold, as
//! in a server that bills one settlement now and then).

use std::path::Path;
use std::time::{Duration, Instant};

use liutong_plugin_runtime::billing::{ResourceKind, Trade};
use liutong_plugin_runtime::{Grants, LoadedPlugin, PoolingMode, Runtime, RuntimeConfig};

fn trade(n: u64) -> Trade {
    Trade {
        confirm_id: format!("cfm_{n}"),
        buyer: "carol".into(),
        seller: "alice".into(),
        resource_id: "reg_1".into(),
        data_id: "ct-2024".into(),
        resource_kind: ResourceKind::Dataset,
        data_type: "dataset".into(),
        free: false,
        price: 1999,
        currency: "CNY".into(),
        at_ms: 1_763_800_000_000,
        config: r#"{"feeBps": 250}"#.into(),
    }
}

async fn calls(plugin: &LoadedPlugin, n: u64, gap: Duration) -> (Vec<Duration>, u64) {
    let mut lat = Vec::with_capacity(n as usize);
    let mut fuel = 0;
    for i in 0..n {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        let t = trade(i);
        let start = Instant::now();
        let call = plugin.charge_trade(t).await.expect("call");
        lat.push(start.elapsed());
        fuel = call.fuel_used.unwrap_or(0);
        assert_eq!(call.value.expect("charge").platform_fee, 50);
    }
    lat.sort();
    (lat, fuel)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("LIUTONG_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let modes = match std::env::var("LIUTONG_BENCH_POOLING").as_deref() {
        Ok("on") => vec![PoolingMode::On],
        Ok("off") => vec![PoolingMode::Off],
        _ => vec![PoolingMode::On, PoolingMode::Off],
    };
    let slots: u32 = std::env::var("LIUTONG_BENCH_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let gap = Duration::from_micros(
        std::env::var("LIUTONG_BENCH_GAP_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let guests = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests");
    let manifest = std::fs::read(guests.join("billing-flat-fee/plugin.toml")).expect("manifest");
    let wasm = std::fs::read(guests.join("target/wasm32-wasip2/release/billing_flat_fee.wasm"))
        .expect("component: run scripts/build-plugins.sh first");
    println!("| pooling | calls | p50 µs | p90 µs | p99 µs | fuel per call |");
    println!("|---|---|---|---|---|---|");
    for mode in modes {
        let runtime = Runtime::new(RuntimeConfig {
            pooling: mode,
            max_concurrent_instances: slots,
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        let plugin = runtime
            .load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
            .expect("load");
        calls(&plugin, 500, Duration::ZERO).await;
        let (lat, fuel) = calls(&plugin, n, gap).await;
        let at = |p: usize| lat[(lat.len() - 1) * p / 100];
        println!(
            "| {mode:?} | {n} | {:.1} | {:.1} | {:.1} | {fuel} |",
            us(at(50)),
            us(at(90)),
            us(at(99))
        );
    }
}
