//! The sample billing plugins' charge maths through the real runtime.

use liutong_plugin_runtime::billing::{BillingError, BillingMethod, BillingType, Charge};

use crate::common::{self, trade, usage};

fn well_formed(c: &Charge) {
    assert_eq!(c.amount, c.platform_fee + c.provider_share, "{c:?}");
    assert_eq!(
        c.amount,
        c.line_items.iter().map(|i| i.amount).sum::<i64>(),
        "{c:?}"
    );
    assert!(c.platform_fee >= 0 && c.provider_share >= 0);
}

#[tokio::test]
async fn flat_fee() {
    let p = common::plugin("billing-flat-fee");
    let call = p
        .charge_trade(trade(10_000, r#"{"feeBps": 250}"#))
        .await
        .unwrap();
    let c = call.value.unwrap();
    assert_eq!(
        (c.amount, c.platform_fee, c.provider_share),
        (10_000, 250, 9_750)
    );
    well_formed(&c);
    assert!(call.fuel_used.unwrap() > 0);
    assert!(call.fuel_used.unwrap() < 50_000_000);

    let mut free = trade(10_000, "{}");
    free.free = true;
    let c = p.charge_trade(free).await.unwrap().value.unwrap();
    assert_eq!(c.amount, 0);

    let mut u = usage(BillingMethod::Calls, 3, r#"{"feeBps": 1000}"#);
    u.calls = 7;
    let c = p.charge_usage(u).await.unwrap().value.unwrap();
    assert_eq!((c.amount, c.platform_fee, c.provider_share), (21, 2, 19));
    well_formed(&c);

    let e = p
        .charge_trade(trade(1, r#"{"feeBps": 10001}"#))
        .await
        .unwrap()
        .value;
    assert!(matches!(e, Err(BillingError::InvalidConfig(_))), "{e:?}");
}

#[tokio::test]
async fn tiered_per_call() {
    let p = common::plugin("billing-tiered-per-call");
    let cfg = r#"{"tiers": [{"upTo": 1000, "unitPrice": 5}, {"upTo": null, "unitPrice": 3}], "feeBps": 1000}"#;
    let mut u = usage(BillingMethod::Calls, 0, cfg);
    u.calls = 1_500;
    let c = p.charge_usage(u).await.unwrap().value.unwrap();
    assert_eq!(
        (c.amount, c.platform_fee, c.provider_share),
        (6_500, 650, 5_850)
    );
    assert_eq!(c.line_items.len(), 2);
    assert_eq!(c.line_items[0].description, "calls 1-1000");
    assert_eq!(
        (c.line_items[1].quantity, c.line_items[1].amount),
        (500, 1_500)
    );
    well_formed(&c);

    let e = p
        .charge_usage(usage(BillingMethod::Tokens, 0, cfg))
        .await
        .unwrap()
        .value;
    assert!(matches!(e, Err(BillingError::Unsupported(_))), "{e:?}");
}

#[tokio::test]
async fn per_token_with_free_quota() {
    let p = common::plugin("billing-per-token");
    let cfg = r#"{"inputPrice": 20, "outputPrice": 60, "freeTokens": 1000}"#;
    let mut u = usage(BillingMethod::Tokens, 0, cfg);
    u.input_tokens = 2_500; // 1 000 free → 1 500 billed → 2 started thousands
    u.output_tokens = 1_200; // 2 started thousands
    let c = p.charge_usage(u).await.unwrap().value.unwrap();
    assert_eq!(c.amount, 2 * 20 + 2 * 60);
    assert_eq!(c.line_items.len(), 2);
    assert_eq!(
        (c.line_items[0].quantity, c.line_items[0].unit_price),
        (2, 20)
    );
    assert_eq!(
        (c.line_items[1].quantity, c.line_items[1].unit_price),
        (2, 60)
    );
    well_formed(&c);

    // Entirely within the free quota.
    let mut u = usage(BillingMethod::Tokens, 0, cfg);
    u.input_tokens = 600;
    u.output_tokens = 400;
    assert_eq!(p.charge_usage(u).await.unwrap().value.unwrap().amount, 0);
}

#[tokio::test]
async fn fixed_term() {
    let p = common::plugin("billing-fixed-term");
    let cfg = r#"{"periodDays": 30, "pricePerPeriod": 9900, "feeBps": 500}"#;
    let mut u = usage(BillingMethod::Calls, 0, cfg);
    u.billing_type = BillingType::FixedTerm;
    u.period_start_ms = 1_700_000_000_000;
    u.period_end_ms = u.period_start_ms + 31 * 86_400_000; // 2 started periods
    let c = p.charge_usage(u.clone()).await.unwrap().value.unwrap();
    assert_eq!(
        (c.amount, c.platform_fee, c.provider_share),
        (19_800, 990, 18_810)
    );
    assert_eq!(c.line_items.len(), 1);
    well_formed(&c);

    u.period_end_ms = u.period_start_ms - 1;
    let e = p.charge_usage(u).await.unwrap().value;
    assert!(matches!(e, Err(BillingError::InvalidInput(_))), "{e:?}");

    let c = p
        .charge_trade(trade(500, cfg))
        .await
        .unwrap()
        .value
        .unwrap();
    assert_eq!(c.amount, 9_900);
}

/// Same arguments, same answer: billing plugins see a frozen clock and fixed seeds.
#[tokio::test]
async fn deterministic() {
    let p = common::plugin("billing-flat-fee");
    let a = p
        .charge_trade(trade(12_345, r#"{"feeBps": 333}"#))
        .await
        .unwrap();
    let b = p
        .charge_trade(trade(12_345, r#"{"feeBps": 333}"#))
        .await
        .unwrap();
    assert_eq!(a.value, b.value);
    assert_eq!(a.fuel_used, b.fuel_used);
}
