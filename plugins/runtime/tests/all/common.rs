//! Shared fixtures: the guest components (built once per test process), one shared runtime,
//! and sample arguments.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use liutong_plugin_runtime::billing::{BillingMethod, BillingType, ResourceKind, Trade, Usage};
use liutong_plugin_runtime::{Grants, LoadedPlugin, PoolingMode, Runtime, RuntimeConfig};

pub use liutong_testkit::guests::{component_path as wasm_path, manifest_path, repo_root};

/// A guest crate's component and manifest bytes: `crate_dir` relative to plugins/guests
/// (e.g. `billing-flat-fee` or `fixtures/fixture-trap`), built by the shared test kit.
pub fn guest(crate_dir: &str) -> (Vec<u8>, Vec<u8>) {
    let wasm_path = wasm_path(crate_dir);
    let manifest = std::fs::read(manifest_path(crate_dir)).expect("plugin.toml");
    let wasm = std::fs::read(&wasm_path).unwrap_or_else(|e| panic!("{}: {e}", wasm_path.display()));
    (manifest, wasm)
}

/// A directory for compiled-component caches that survives test runs (debug builds compile
/// slowly), inside this runtime's target directory.
pub fn shared_cache_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    base.join("plugin-runtime-test-cache")
}

/// One runtime for the tests (pooling per default, cached compiles).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(shared_cache_dir()),
            // The oversized-output fixture needs more than the default maximum to build its
            // output.
            max_fuel: 20_000_000_000,
            pooling: PoolingMode::Auto,
            ..RuntimeConfig::default()
        })
        .expect("runtime")
    })
}

/// A plugin loaded (unsigned) into the shared runtime, once per test process.
pub fn plugin(crate_dir: &str) -> LoadedPlugin {
    plugin_with(crate_dir, &Grants::default())
}

pub fn plugin_with(crate_dir: &str, grants: &Grants) -> LoadedPlugin {
    static CACHE: OnceLock<Mutex<HashMap<String, LoadedPlugin>>> = OnceLock::new();
    let key = format!("{crate_dir}|{grants:?}");
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap().get(&key) {
        return p.clone();
    }
    let (manifest, wasm) = guest(crate_dir);
    let p = runtime()
        .load_unsigned_for_testing(&manifest, &wasm, grants)
        .unwrap_or_else(|e| panic!("loading {crate_dir}: {e}"));
    cache.lock().unwrap().insert(key, p.clone());
    p
}

pub fn trade(price: i64, config: &str) -> Trade {
    Trade {
        confirm_id: "c-1".into(),
        buyer: "alice".into(),
        seller: "bob".into(),
        resource_id: "r-1".into(),
        data_id: "d-1".into(),
        resource_kind: ResourceKind::Dataset,
        data_type: "csv".into(),
        free: false,
        price,
        currency: "CNY".into(),
        at_ms: 1_700_000_000_000,
        config: config.into(),
    }
}

pub fn usage(method: BillingMethod, price: i64, config: &str) -> Usage {
    Usage {
        order_id: "o-1".into(),
        buyer: "alice".into(),
        seller: "bob".into(),
        resource_id: "r-1".into(),
        billing_type: BillingType::Metered,
        billing_method: method,
        calls: 0,
        input_tokens: 0,
        output_tokens: 0,
        duration_seconds: 0,
        period_start_ms: 0,
        period_end_ms: 0,
        price,
        currency: "CNY".into(),
        config: config.into(),
    }
}
