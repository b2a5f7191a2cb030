//! `flat-fee`: the list price, plus a platform fee in basis points.
//!
//! Config `{"feeBps": 0..=10000}` (default 0).
//!
//! - charge-trade: the trade's price (0 when the trade is free).
//! - charge-usage: `price` is the price of one unit of what the subscription is billed in:
//!   - billing-type `fixed-term`: one period, `price` once;
//!   - `metered` by `calls`: `price × calls`;
//!   - `metered` by `tokens`: `price` per started 1 000 tokens, input and output together
//!     (`⌈(input + output) / 1000⌉ × price`);
//!   - `metered` by `duration`: `price` per started minute (`⌈seconds / 60⌉ × price`).

use super::{billing_config, check_fee_bps, check_input_price, flat_trade, total_tokens};
use crate::billing::{BillingError, BillingMethod, BillingType, Charge, Trade, Usage};
use crate::charge::ChargeBuilder;
use crate::money::div_ceil;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FlatFeeConfig {
    #[serde(default)]
    pub fee_bps: u32,
}

fn config(text: &str) -> Result<FlatFeeConfig, BillingError> {
    let c: FlatFeeConfig = billing_config(text)?;
    check_fee_bps(c.fee_bps)?;
    Ok(c)
}

pub fn charge_trade(trade: &Trade) -> Result<Charge, BillingError> {
    let c = config(&trade.config)?;
    flat_trade(trade, trade.price, c.fee_bps)
}

pub fn charge_usage(usage: &Usage) -> Result<Charge, BillingError> {
    let c = config(&usage.config)?;
    check_input_price(usage.price)?;
    let (description, quantity) = match (usage.billing_type, usage.billing_method) {
        (BillingType::FixedTerm, _) => ("subscription period".to_string(), 1),
        (BillingType::Metered, BillingMethod::Calls) => ("calls".to_string(), usage.calls),
        (BillingType::Metered, BillingMethod::Tokens) => {
            let tokens = total_tokens(usage)?;
            (
                format!("tokens: {tokens}, per started 1000"),
                div_ceil(tokens, 1000),
            )
        }
        (BillingType::Metered, BillingMethod::Duration) => (
            format!("duration: {} s, per started minute", usage.duration_seconds),
            div_ceil(usage.duration_seconds, 60),
        ),
    };
    ChargeBuilder::new()
        .fee_bps(c.fee_bps)
        .item(description, quantity, usage.price)?
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charge::is_well_formed;
    use crate::rules::test_support::{trade, usage};

    #[test]
    fn trade_with_fee() {
        let c = charge_trade(&trade(10_001, false, r#"{"feeBps": 500}"#)).unwrap();
        assert_eq!(
            (c.amount, c.platform_fee, c.provider_share),
            (10_001, 500, 9_501)
        );
        assert!(is_well_formed(&c));
        let c = charge_trade(&trade(10_010, false, r#"{"feeBps": 500}"#)).unwrap();
        assert_eq!(c.platform_fee, 501); // 500.5 → 501
    }

    #[test]
    fn free_and_default_config() {
        let c = charge_trade(&trade(999, true, "{}")).unwrap();
        assert_eq!((c.amount, c.platform_fee, c.provider_share), (0, 0, 0));
        assert!(is_well_formed(&c));
        let c = charge_trade(&trade(999, false, "")).unwrap();
        assert_eq!((c.amount, c.platform_fee, c.provider_share), (999, 0, 999));
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            charge_trade(&trade(-1, false, "{}")),
            Err(BillingError::InvalidInput(_))
        ));
        assert!(matches!(
            charge_trade(&trade(1, false, r#"{"feeBps": 10001}"#)),
            Err(BillingError::InvalidConfig(_))
        ));
        assert!(matches!(
            charge_trade(&trade(1, false, r#"{"fee": 1}"#)),
            Err(BillingError::InvalidConfig(_))
        ));
        assert!(matches!(
            charge_trade(&trade(1, false, r#"{"feeBps": -5}"#)),
            Err(BillingError::InvalidConfig(_))
        ));
    }

    #[test]
    fn usage_units() {
        let mut u = usage(BillingMethod::Calls, 7, r#"{"feeBps": 1000}"#);
        u.calls = 10;
        let c = charge_usage(&u).unwrap();
        assert_eq!((c.amount, c.platform_fee, c.provider_share), (70, 7, 63));

        let mut u = usage(BillingMethod::Tokens, 3, "{}");
        u.input_tokens = 1_500;
        u.output_tokens = 501;
        assert_eq!(charge_usage(&u).unwrap().amount, 9); // 2001 tokens → 3 × 3

        let mut u = usage(BillingMethod::Duration, 2, "{}");
        u.duration_seconds = 61;
        assert_eq!(charge_usage(&u).unwrap().amount, 4);

        let mut u = usage(BillingMethod::Calls, 50, "{}");
        u.billing_type = BillingType::FixedTerm;
        u.calls = 1_000;
        assert_eq!(charge_usage(&u).unwrap().amount, 50);

        let mut u = usage(BillingMethod::Calls, i64::MAX, "{}");
        u.calls = 2;
        assert!(matches!(
            charge_usage(&u),
            Err(BillingError::InvalidInput(_))
        ));
        assert!(matches!(
            charge_usage(&usage(BillingMethod::Calls, -1, "{}")),
            Err(BillingError::InvalidInput(_))
        ));
    }
}
