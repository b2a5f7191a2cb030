//! `tiered-per-call`: usage billed by the number of calls, with graduated tiers.
//!
//! Config `{"tiers": [{"upTo": 1000, "unitPrice": 5}, {"upTo": null, "unitPrice": 3}],
//! "feeBps": 0..=10000}`. `upTo` is the cumulative number of calls a tier reaches (calls
//! `previous upTo + 1 ..= upTo` are billed at its `unitPrice`); the bounds must increase
//! strictly, and only the last tier may leave `upTo` null (or out) for "no limit". With the
//! example, 1 500 calls cost `1000 × 5 + 500 × 3 = 6500`. More calls than a bounded last tier
//! reaches are `invalid-input`. `tiers` is required and non-empty; `unitPrice ≥ 0`.
//!
//! - charge-usage: one line item per tier used (none for 0 calls); only billing-method
//!   `calls` (others are `unsupported`).
//! - charge-trade: the trade's flat price, as `flat-fee`.

use super::{billing_config, check_fee_bps, flat_trade, method_name};
use crate::billing::{BillingError, BillingMethod, Charge, Trade, Usage};
use crate::charge::ChargeBuilder;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tier {
    #[serde(default)]
    pub up_to: Option<u64>,
    pub unit_price: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TieredConfig {
    pub tiers: Vec<Tier>,
    #[serde(default)]
    pub fee_bps: u32,
}

/// Calls billed in one tier: calls `first ..= last` (1-based), `last - first + 1` of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierUse {
    pub first: u64,
    pub last: u64,
    pub unit_price: i64,
}

impl TierUse {
    pub fn calls(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// Checks the tiers: non-empty, unit prices ≥ 0, bounds > 0 and strictly increasing, only
/// the last one unbounded.
pub fn validate_tiers(tiers: &[Tier]) -> Result<(), String> {
    if tiers.is_empty() {
        return Err("tiers must not be empty".to_string());
    }
    let mut previous = 0u64;
    for (i, tier) in tiers.iter().enumerate() {
        if tier.unit_price < 0 {
            return Err(format!("tiers[{i}].unitPrice must not be negative"));
        }
        match tier.up_to {
            Some(bound) if bound <= previous => {
                return Err(format!(
                    "tiers[{i}].upTo must be greater than {previous}, not {bound}"
                ));
            }
            Some(bound) => previous = bound,
            None if i + 1 != tiers.len() => {
                return Err(format!("tiers[{i}].upTo may only be null in the last tier"));
            }
            None => {}
        }
    }
    Ok(())
}

/// Splits `calls` over validated `tiers`; `Err` when they exceed a bounded last tier.
pub fn split_calls(tiers: &[Tier], calls: u64) -> Result<Vec<TierUse>, String> {
    let mut uses = Vec::new();
    let mut billed = 0u64;
    for tier in tiers {
        if billed == calls {
            break;
        }
        let last = match tier.up_to {
            Some(bound) => bound.min(calls),
            None => calls,
        };
        uses.push(TierUse {
            first: billed + 1,
            last,
            unit_price: tier.unit_price,
        });
        billed = last;
    }
    if billed < calls {
        return Err(format!(
            "{calls} calls exceed the last tier, which reaches {billed}"
        ));
    }
    Ok(uses)
}

fn config(text: &str) -> Result<TieredConfig, BillingError> {
    let c: TieredConfig = billing_config(text)?;
    check_fee_bps(c.fee_bps)?;
    validate_tiers(&c.tiers)
        .map_err(|e| BillingError::InvalidConfig(format!("invalid config: {e}")))?;
    Ok(c)
}

pub fn charge_trade(trade: &Trade) -> Result<Charge, BillingError> {
    let c = config(&trade.config)?;
    flat_trade(trade, trade.price, c.fee_bps)
}

pub fn charge_usage(usage: &Usage) -> Result<Charge, BillingError> {
    let c = config(&usage.config)?;
    if usage.billing_method != BillingMethod::Calls {
        return Err(BillingError::Unsupported(format!(
            "tiered-per-call bills calls, not {}",
            method_name(usage.billing_method)
        )));
    }
    let uses = split_calls(&c.tiers, usage.calls).map_err(BillingError::InvalidInput)?;
    let mut builder = ChargeBuilder::new().fee_bps(c.fee_bps);
    for u in &uses {
        builder = builder.item(
            format!("calls {}-{}", u.first, u.last),
            u.calls(),
            u.unit_price,
        )?;
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charge::is_well_formed;
    use crate::rules::test_support::{trade, usage};

    const CFG: &str = r#"{"tiers": [{"upTo": 1000, "unitPrice": 5}, {"upTo": null, "unitPrice": 3}], "feeBps": 1000}"#;

    fn calls(n: u64, config: &str) -> Result<Charge, BillingError> {
        let mut u = usage(BillingMethod::Calls, 0, config);
        u.calls = n;
        charge_usage(&u)
    }

    #[test]
    fn graduated() {
        let c = calls(1_500, CFG).unwrap();
        assert_eq!(c.amount, 6_500);
        assert_eq!((c.platform_fee, c.provider_share), (650, 5_850));
        assert_eq!(c.line_items.len(), 2);
        assert_eq!(c.line_items[0].description, "calls 1-1000");
        assert_eq!(
            (c.line_items[0].quantity, c.line_items[0].amount),
            (1_000, 5_000)
        );
        assert_eq!(c.line_items[1].description, "calls 1001-1500");
        assert_eq!(
            (c.line_items[1].quantity, c.line_items[1].amount),
            (500, 1_500)
        );
        assert!(is_well_formed(&c));

        let c = calls(1_000, CFG).unwrap();
        assert_eq!((c.amount, c.line_items.len()), (5_000, 1));
        let c = calls(1, CFG).unwrap();
        assert_eq!((c.amount, c.line_items.len()), (5, 1));
        let c = calls(0, CFG).unwrap();
        assert_eq!((c.amount, c.line_items.len()), (0, 0));
        assert!(is_well_formed(&c));
    }

    #[test]
    fn bounded_last_tier() {
        let cfg = r#"{"tiers": [{"upTo": 10, "unitPrice": 2}, {"upTo": 20, "unitPrice": 1}]}"#;
        assert_eq!(calls(20, cfg).unwrap().amount, 30);
        assert!(matches!(calls(21, cfg), Err(BillingError::InvalidInput(_))));
        // `upTo` may be left out in the last tier.
        let cfg = r#"{"tiers": [{"unitPrice": 2}]}"#;
        assert_eq!(
            calls(u64::MAX / 4, cfg).unwrap().amount,
            (u64::MAX / 4 * 2) as i64
        );
        assert!(matches!(
            calls(u64::MAX, cfg),
            Err(BillingError::InvalidInput(_))
        ));
    }

    #[test]
    fn bad_configs() {
        for cfg in [
            "{}",
            r#"{"tiers": []}"#,
            r#"{"tiers": [{"upTo": null, "unitPrice": 1}, {"upTo": 5, "unitPrice": 1}]}"#,
            r#"{"tiers": [{"upTo": 5, "unitPrice": 1}, {"upTo": 5, "unitPrice": 1}]}"#,
            r#"{"tiers": [{"upTo": 0, "unitPrice": 1}]}"#,
            r#"{"tiers": [{"upTo": 5, "unitPrice": -1}]}"#,
            r#"{"tiers": [{"upTo": 5, "unitPrice": 1, "x": 1}]}"#,
            r#"{"tiers": [{"unitPrice": 1}], "feeBps": 20000}"#,
        ] {
            assert!(
                matches!(calls(3, cfg), Err(BillingError::InvalidConfig(_))),
                "{cfg}"
            );
        }
    }

    #[test]
    fn other_methods_and_trades() {
        let u = usage(BillingMethod::Tokens, 0, CFG);
        assert!(matches!(
            charge_usage(&u),
            Err(BillingError::Unsupported(_))
        ));
        let c = charge_trade(&trade(1_000, false, CFG)).unwrap();
        assert_eq!((c.amount, c.platform_fee), (1_000, 100));
    }
}
