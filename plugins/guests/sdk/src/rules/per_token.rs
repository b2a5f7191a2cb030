//! `per-token`: usage billed by input and output tokens.
//!
//! Config `{"inputPrice": 20, "outputPrice": 60, "freeTokens": 1000, "feeBps": 0..=10000}`:
//! prices in minor units per 1 000 tokens (each defaults to the usage's list price), a free
//! quota of tokens (default 0) taken from the input tokens first and what is left of it from
//! the output tokens. The billed tokens of each kind are rounded **up** to whole thousands:
//! 1 001 billed input tokens cost `2 × inputPrice`.
//!
//! - charge-usage: two line items, input then output (quantity = billed thousands, unit price
//!   = price per 1 000); only billing-method `tokens` (others are `unsupported`).
//! - charge-trade: the trade's flat price, as `flat-fee`.

use super::{
    billing_config, check_config_price, check_fee_bps, check_input_price, flat_trade, method_name,
};
use crate::billing::{BillingError, BillingMethod, Charge, Trade, Usage};
use crate::charge::ChargeBuilder;
use crate::money::div_ceil;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PerTokenConfig {
    #[serde(default)]
    pub input_price: Option<i64>,
    #[serde(default)]
    pub output_price: Option<i64>,
    #[serde(default)]
    pub free_tokens: u64,
    #[serde(default)]
    pub fee_bps: u32,
}

/// The billed `(input, output)` tokens once `free` tokens are taken off, input first.
pub fn billable_tokens(input: u64, output: u64, free: u64) -> (u64, u64) {
    let free_input = free.min(input);
    let free_output = (free - free_input).min(output);
    (input - free_input, output - free_output)
}

fn config(text: &str) -> Result<PerTokenConfig, BillingError> {
    let c: PerTokenConfig = billing_config(text)?;
    check_fee_bps(c.fee_bps)?;
    check_config_price("inputPrice", c.input_price)?;
    check_config_price("outputPrice", c.output_price)?;
    Ok(c)
}

pub fn charge_trade(trade: &Trade) -> Result<Charge, BillingError> {
    let c = config(&trade.config)?;
    flat_trade(trade, trade.price, c.fee_bps)
}

pub fn charge_usage(usage: &Usage) -> Result<Charge, BillingError> {
    let c = config(&usage.config)?;
    if usage.billing_method != BillingMethod::Tokens {
        return Err(BillingError::Unsupported(format!(
            "per-token bills tokens, not {}",
            method_name(usage.billing_method)
        )));
    }
    check_input_price(usage.price)?;
    let input_price = c.input_price.unwrap_or(usage.price);
    let output_price = c.output_price.unwrap_or(usage.price);
    let (input, output) = billable_tokens(usage.input_tokens, usage.output_tokens, c.free_tokens);
    ChargeBuilder::new()
        .fee_bps(c.fee_bps)
        .item(
            format!(
                "input tokens: {input} billed of {}, per started 1000",
                usage.input_tokens
            ),
            div_ceil(input, 1000),
            input_price,
        )?
        .item(
            format!(
                "output tokens: {output} billed of {}, per started 1000",
                usage.output_tokens
            ),
            div_ceil(output, 1000),
            output_price,
        )?
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charge::is_well_formed;
    use crate::rules::test_support::{trade, usage};

    fn tokens(input: u64, output: u64, price: i64, config: &str) -> Result<Charge, BillingError> {
        let mut u = usage(BillingMethod::Tokens, price, config);
        u.input_tokens = input;
        u.output_tokens = output;
        charge_usage(&u)
    }

    #[test]
    fn free_quota_input_first() {
        assert_eq!(billable_tokens(500, 800, 1_000), (0, 300));
        assert_eq!(billable_tokens(1_500, 800, 1_000), (500, 800));
        assert_eq!(billable_tokens(10, 20, 1_000), (0, 0));
        assert_eq!(billable_tokens(10, 20, 0), (10, 20));
        assert_eq!(billable_tokens(u64::MAX, u64::MAX, u64::MAX), (0, u64::MAX));
    }

    #[test]
    fn prices_and_rounding() {
        let cfg = r#"{"inputPrice": 20, "outputPrice": 60, "freeTokens": 1000, "feeBps": 1000}"#;
        // input 2500 - 1000 free = 1500 → 2 × 20; output 1001 → 2 × 60.
        let c = tokens(2_500, 1_001, 0, cfg).unwrap();
        assert_eq!(c.amount, 160);
        assert_eq!((c.platform_fee, c.provider_share), (16, 144));
        assert_eq!(c.line_items.len(), 2);
        assert_eq!(
            (c.line_items[0].quantity, c.line_items[0].unit_price),
            (2, 20)
        );
        assert_eq!(
            (c.line_items[1].quantity, c.line_items[1].unit_price),
            (2, 60)
        );
        assert!(is_well_formed(&c));
        // Everything free: two zero items.
        let c = tokens(10, 10, 0, cfg).unwrap();
        assert_eq!((c.amount, c.line_items.len()), (0, 2));
        // Prices default to the list price.
        assert_eq!(tokens(1_000, 1, 7, "{}").unwrap().amount, 14);
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            tokens(1, 1, 0, r#"{"inputPrice": -1}"#),
            Err(BillingError::InvalidConfig(_))
        ));
        assert!(matches!(
            tokens(1, 1, 0, r#"{"inputPrice": 1, "cachedPrice": 1}"#),
            Err(BillingError::InvalidConfig(_))
        ));
        assert!(matches!(
            tokens(1, 1, -3, "{}"),
            Err(BillingError::InvalidInput(_))
        ));
        assert!(matches!(
            tokens(u64::MAX, 0, i64::MAX, "{}"),
            Err(BillingError::InvalidInput(_))
        ));
        let u = usage(BillingMethod::Calls, 1, "{}");
        assert!(matches!(
            charge_usage(&u),
            Err(BillingError::Unsupported(_))
        ));
        assert_eq!(charge_trade(&trade(5, false, "{}")).unwrap().amount, 5);
    }
}
