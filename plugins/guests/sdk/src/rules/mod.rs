//! The logic of the shipped billing rules, on the generated WIT types, so that it is tested
//! natively; each `billing-*` crate only exports one of these modules.
//!
//! Shared conventions: money is integer minor units; every product and sum is checked (an
//! overflow or a negative price is `invalid-input`); the platform fee is `feeBps` basis points
//! of the amount rounded half up, the provider's share the rest; unknown config fields are
//! `invalid-config`.

use crate::billing::{BillingError, BillingMethod, Charge, Trade, Usage};
use crate::charge::ChargeBuilder;
use crate::money::BPS_WHOLE;
use serde::de::DeserializeOwned;

pub mod fixed_term;
pub mod flat_fee;
pub mod per_token;
pub mod tiered_per_call;

/// Parses a billing rule's config; errors are `invalid-config`.
pub fn billing_config<T: DeserializeOwned>(config: &str) -> Result<T, BillingError> {
    crate::config::parse_config(config).map_err(BillingError::InvalidConfig)
}

/// `feeBps` must be within 0..=10 000.
pub fn check_fee_bps(fee_bps: u32) -> Result<(), BillingError> {
    if fee_bps > BPS_WHOLE {
        return Err(BillingError::InvalidConfig(format!(
            "feeBps must be within 0..=10000, not {fee_bps}"
        )));
    }
    Ok(())
}

/// A config price must not be negative.
pub fn check_config_price(name: &str, price: Option<i64>) -> Result<(), BillingError> {
    match price {
        Some(p) if p < 0 => Err(BillingError::InvalidConfig(format!(
            "{name} must not be negative, not {p}"
        ))),
        _ => Ok(()),
    }
}

/// A list price passed by the host must not be negative.
pub fn check_input_price(price: i64) -> Result<(), BillingError> {
    if price < 0 {
        return Err(BillingError::InvalidInput(format!(
            "negative price {price}"
        )));
    }
    Ok(())
}

/// A trade at a flat price: one line item of `price` (of 0 when the trade is free), split by
/// `fee_bps`. `price` is the trade's price unless the rule's config overrides it.
pub fn flat_trade(trade: &Trade, price: i64, fee_bps: u32) -> Result<Charge, BillingError> {
    check_input_price(trade.price)?;
    check_fee_bps(fee_bps)?;
    let builder = ChargeBuilder::new().fee_bps(fee_bps);
    let builder = if trade.free {
        builder.item(format!("free trade {}", trade.confirm_id), 1, 0)?
    } else {
        builder.item(
            format!("trade {} of {}", trade.confirm_id, trade.data_id),
            1,
            price,
        )?
    };
    builder.build()
}

/// The name the standard gives a billing method, for messages.
pub fn method_name(method: BillingMethod) -> &'static str {
    match method {
        BillingMethod::Calls => "calls",
        BillingMethod::Tokens => "tokens",
        BillingMethod::Duration => "duration",
    }
}

/// `input + output` tokens, checked.
pub fn total_tokens(usage: &Usage) -> Result<u64, BillingError> {
    usage
        .input_tokens
        .checked_add(usage.output_tokens)
        .ok_or_else(|| BillingError::InvalidInput("token count overflows".to_string()))
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::billing::{BillingMethod, BillingType, ResourceKind, Trade, Usage};

    pub fn trade(price: i64, free: bool, config: &str) -> Trade {
        Trade {
            confirm_id: "c-1".into(),
            buyer: "carol".into(),
            seller: "alice".into(),
            resource_id: "r-1".into(),
            data_id: "d-1".into(),
            resource_kind: ResourceKind::Dataset,
            data_type: "csv".into(),
            free,
            price,
            currency: "CNY".into(),
            at_ms: 1_700_000_000_000,
            config: config.into(),
        }
    }

    pub fn usage(method: BillingMethod, price: i64, config: &str) -> Usage {
        Usage {
            order_id: "o-1".into(),
            buyer: "carol".into(),
            seller: "alice".into(),
            resource_id: "m-1".into(),
            billing_type: BillingType::Metered,
            billing_method: method,
            calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            duration_seconds: 0,
            period_start_ms: 1_700_000_000_000,
            period_end_ms: 1_700_000_000_000,
            price,
            currency: "CNY".into(),
            config: config.into(),
        }
    }
}
