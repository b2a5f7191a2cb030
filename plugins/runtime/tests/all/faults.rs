//! Faulty plugins are contained: each fault has its kind, and healthy calls keep working.

use std::time::Duration;

use liutong_plugin_runtime::billing::BillingMethod;
use liutong_plugin_runtime::{LoadedPlugin, PluginFailure};

use crate::common::{self, trade, usage};

/// After a fault: the same plugin (through its healthy export, when it has one) and another
/// plugin still answer.
async fn still_healthy(faulty: Option<&LoadedPlugin>) {
    if let Some(p) = faulty {
        let c = p
            .charge_usage(usage(BillingMethod::Calls, 7, "{}"))
            .await
            .unwrap_or_else(|e| panic!("healthy call after a fault failed: {e}"));
        assert_eq!(c.value.unwrap().amount, 7);
    }
    let flat = common::plugin("billing-flat-fee");
    let c = flat.charge_trade(trade(100, "{}")).await.unwrap();
    assert_eq!(c.value.unwrap().amount, 100);
}

#[tokio::test]
async fn endless_loop_runs_out_of_fuel() {
    let p = common::plugin("fixtures/fixture-endless-loop");
    assert_eq!(p.limits().fuel, Some(10_000_000));
    let err = p.charge_trade(trade(1, "{}")).await.unwrap_err();
    assert!(
        matches!(
            err.kind,
            PluginFailure::OutOfFuel { limit: 10_000_000 } | PluginFailure::Timeout { .. }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "plugin fixture-endless-loop@0.1.0: ran out of fuel (limit 10000000)"
    );
    still_healthy(Some(&p)).await;
}

#[tokio::test]
async fn endless_loop_times_out_when_fuel_is_plenty() {
    // Same component, a manifest with huge fuel and a short timeout: the epoch deadline stops it.
    let (_, wasm) = common::guest("fixtures/fixture-endless-loop");
    let manifest = r#"id = "fixture-endless-loop"
version = "0.1.0"
kind = "billing"
wit = "0.1.0"
description = "endless loop, stopped by time"
[limits]
fuel = 10_000_000_000
timeout_ms = 50
"#;
    let p = common::runtime()
        .load_unsigned_for_testing(manifest.as_bytes(), &wasm, &Default::default())
        .unwrap();
    let started = std::time::Instant::now();
    let err = p.charge_trade(trade(1, "{}")).await.unwrap_err();
    assert_eq!(
        err.kind,
        PluginFailure::Timeout {
            limit: Duration::from_millis(50)
        },
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    still_healthy(Some(&p)).await;
}

#[tokio::test]
async fn memory_hog_hits_the_memory_limit() {
    let p = common::plugin("fixtures/fixture-memory-hog");
    let err = p.charge_trade(trade(1, "{}")).await.unwrap_err();
    assert_eq!(
        err.kind,
        PluginFailure::MemoryLimit { limit: 16 << 20 },
        "{err}"
    );
    still_healthy(Some(&p)).await;
}

#[tokio::test]
async fn panics_and_unreachable_trap() {
    let p = common::plugin("fixtures/fixture-trap");
    let err = p.charge_trade(trade(1, "{}")).await.unwrap_err();
    let PluginFailure::Trap { message } = &err.kind else {
        panic!("expected Trap, got {err}");
    };
    // The guest's panic message is kept from its stderr.
    assert!(message.contains("deliberate panic"), "{message}");
    let err = p
        .charge_usage(usage(BillingMethod::Calls, 1, "{}"))
        .await
        .unwrap_err();
    let PluginFailure::Trap { message } = &err.kind else {
        panic!("expected Trap, got {err}");
    };
    assert!(message.contains("unreachable"), "{message}");
    still_healthy(None).await;
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let p = common::plugin("fixtures/fixture-oversized-output");
    // Many line items (charge-usage): within memory, beyond the item cap.
    let err = p
        .charge_usage(usage(BillingMethod::Calls, 0, r#"{"lineItems": 5000}"#))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, PluginFailure::OutputTooLarge { .. }),
        "{err}"
    );
    let err = p
        .charge_usage(usage(BillingMethod::Calls, 0, "{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.kind,
            PluginFailure::OutputTooLarge { .. } | PluginFailure::MemoryLimit { .. }
        ),
        "{err}"
    );
    // One huge string.
    let err = p
        .charge_trade(trade(1, r#"{"descriptionBytes": 1048576, "lineItems": 1}"#))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind, PluginFailure::OutputTooLarge { .. }),
        "{err}"
    );
    // The defaults (64 MiB description / 2 000 000 items): too large one way or another.
    let err = p.charge_trade(trade(1, "{}")).await.unwrap_err();
    assert!(
        matches!(
            err.kind,
            PluginFailure::OutputTooLarge { .. }
                | PluginFailure::MemoryLimit { .. }
                | PluginFailure::OutOfFuel { .. }
        ),
        "{err}"
    );
    still_healthy(None).await;
}

#[tokio::test]
async fn bad_charge_comes_back_unchanged() {
    // The runtime does not judge the split; the host does. The numbers arrive as returned.
    let p = common::plugin("fixtures/fixture-bad-charge");
    let c = p
        .charge_trade(trade(100, "{}"))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!((c.amount, c.platform_fee, c.provider_share), (101, 0, 100));
    assert_eq!(c.line_items[0].amount, 101);
    still_healthy(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls() {
    let p = common::plugin("billing-flat-fee");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000i64 {
        let p = p.clone();
        tasks.spawn(async move {
            let c = p
                .charge_trade(trade(10_000 + i, r#"{"feeBps": 100}"#))
                .await
                .map_err(|e| e.to_string())?;
            let c = c.value.map_err(|e| format!("{e:?}"))?;
            if c.amount != 10_000 + i {
                return Err(format!("wrong amount {}", c.amount));
            }
            Ok::<_, String>(())
        });
    }
    let mut ok = 0;
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
        ok += 1;
    }
    assert_eq!(ok, 1000);
}
