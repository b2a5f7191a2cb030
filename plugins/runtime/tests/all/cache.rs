//! The on-disk cache of compiled components.

use liutong_plugin_runtime::{Grants, PoolingMode, Runtime, RuntimeConfig};

use crate::common;

fn runtime(dir: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        pooling: PoolingMode::Off,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn second_load_hits_the_cache_and_corruption_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, wasm) = common::guest("billing-flat-fee");

    let rt = runtime(dir.path());
    let first = rt
        .load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
        .unwrap();
    assert!(!first.load_report().cache_hit);
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0]
            .to_string_lossy()
            .contains(first.component_sha256())
    );

    // A new runtime (a restarted host) reads the cache.
    let rt = runtime(dir.path());
    let second = rt
        .load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
        .unwrap();
    assert!(second.load_report().cache_hit);
    assert_eq!(second.load_report().compile_ms, 0);
    assert_eq!(rt.stats().cache_hits, 1);
    let c = second.charge_trade(common::trade(10, "{}")).await.unwrap();
    assert_eq!(c.value.unwrap().amount, 10);

    // Corrupt the file: detected, recompiled, replaced.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();
    let rt = runtime(dir.path());
    let third = rt
        .load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
        .unwrap();
    assert!(!third.load_report().cache_hit);
    assert_eq!(rt.stats().cache_rejects, 1);
    let c = third.charge_trade(common::trade(11, "{}")).await.unwrap();
    assert_eq!(c.value.unwrap().amount, 11);

    // Truncated to nothing: the same.
    std::fs::write(&files[0], b"").unwrap();
    let rt = runtime(dir.path());
    assert!(
        !rt.load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
            .unwrap()
            .load_report()
            .cache_hit
    );
    // …and the replacement is good again.
    let rt = runtime(dir.path());
    assert!(
        rt.load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
            .unwrap()
            .load_report()
            .cache_hit
    );
}

/// Exports with the world's names but other types are refused at load (they used to be looked
/// up by name only, and every call failed).
#[test]
fn exports_are_type_checked_at_load() {
    let (manifest, wasm) = common::guest("fixtures/fixture-wrong-signature");
    let err = common::runtime()
        .load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
        .unwrap_err();
    let liutong_plugin_runtime::LoadError::WrongWorld { message, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        message.contains("`liutong:billing/rule@0.1.0.charge-trade` has the wrong type"),
        "{message}"
    );
}

#[test]
fn wrong_world_is_refused_at_load() {
    // A billing component declared as a policy plugin.
    let (manifest, wasm) = common::guest("billing-flat-fee");
    let manifest = String::from_utf8(manifest)
        .unwrap()
        .replace("kind = \"billing\"", "kind = \"policy\"");
    let err = common::runtime()
        .load_unsigned_for_testing(manifest.as_bytes(), &wasm, &Grants::none())
        .unwrap_err();
    assert!(
        matches!(err, liutong_plugin_runtime::LoadError::WrongWorld { .. }),
        "{err}"
    );
    // An adapter (imports wasi:http) declared as a billing plugin.
    let (manifest, wasm) = common::guest("adapter-http-json");
    let manifest = String::from_utf8(manifest)
        .unwrap()
        .replace("kind = \"adapter\"", "kind = \"billing\"")
        .replace("[capabilities]", "[x]")
        .replace("http = [\"*\"]\nsecrets = [\"api-key\"]\n", "");
    let manifest = manifest.replace("[x]\n", "");
    let err = common::runtime()
        .load_unsigned_for_testing(manifest.as_bytes(), &wasm, &Grants::none())
        .unwrap_err();
    assert!(
        matches!(err, liutong_plugin_runtime::LoadError::WrongWorld { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn harness_from_component() {
    let h = liutong_plugin_runtime::testing::Harness::from_component(
        common::manifest_path("billing-flat-fee"),
        common::wasm_path("billing-flat-fee"),
    )
    .unwrap();
    let c = h
        .charge_trade(common::trade(500, r#"{"feeBps": 1000}"#))
        .await
        .unwrap();
    assert_eq!(c.value.unwrap().platform_fee, 50);
}

#[tokio::test]
async fn pooling_on_and_off_both_work() {
    let (manifest, wasm) = common::guest("billing-flat-fee");
    for pooling in [PoolingMode::On, PoolingMode::Off] {
        let rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(common::shared_cache_dir()),
            pooling,
            max_concurrent_instances: 16,
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert_eq!(rt.pooling(), pooling == PoolingMode::On);
        let p = rt
            .load_unsigned_for_testing(&manifest, &wasm, &Grants::none())
            .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let p = p.clone();
            tasks.spawn(async move { p.charge_trade(common::trade(i, "{}")).await });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap().value.unwrap();
        }
    }
    // The shared runtime (Auto) got the pooling allocator on this machine, or said why not.
    eprintln!("shared runtime pooling: {}", common::runtime().pooling());
}

#[test]
fn grants_debug_hides_secret_values() {
    let g = Grants::none()
        .with_http(["api.openai.com:443"])
        .unwrap()
        .with_secret("api-key", "sk-very-secret");
    let s = format!("{g:?}");
    assert!(
        s.contains("api-key") && s.contains("api.openai.com:443"),
        "{s}"
    );
    assert!(!s.contains("sk-very-secret"), "{s}");
}

/// `Harness::build` runs cargo on a guest project, as a plugin author's `cargo test` does. The
/// guests are built first (once per run), so this build only checks that they are up to date.
#[tokio::test]
async fn harness_build_compiles_a_guest_project() {
    let _ = common::guest("billing-flat-fee");
    let h = liutong_plugin_runtime::testing::Harness::build(
        common::repo_root().join("plugins/guests/billing-flat-fee"),
    )
    .unwrap();
    let c = h.charge_trade(common::trade(500, "{}")).await.unwrap();
    assert_eq!(c.value.unwrap().amount, 500);
}
