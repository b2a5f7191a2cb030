//! `fixed-term`: a price per period of subscription.
//!
//! Config `{"periodDays": 30, "pricePerPeriod": 9900, "feeBps": 0..=10000}`: `periodDays`
//! 1..=36500 (default 30), `pricePerPeriod` in minor units (default: the usage's or trade's
//! list price).
//!
//! - charge-usage: the number of periods **started** in `[period-start, period-end)` times the
//!   price per period, as one line item: a period of 31 days with `periodDays = 30` is 2
//!   periods; an empty interval is 0; `period-end < period-start` is `invalid-input`. Any
//!   billing-type and billing-method: only the interval counts.
//! - charge-trade: one period (`pricePerPeriod`, default the trade's price), 0 when free.

use super::{billing_config, check_config_price, check_fee_bps, check_input_price, flat_trade};
use crate::billing::{BillingError, Charge, Trade, Usage};
use crate::charge::ChargeBuilder;
use serde::Deserialize;

pub const DAY_MS: i128 = 86_400_000;
pub const MAX_PERIOD_DAYS: u32 = 36_500;

fn default_period_days() -> u32 {
    30
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FixedTermConfig {
    #[serde(default = "default_period_days")]
    pub period_days: u32,
    #[serde(default)]
    pub price_per_period: Option<i64>,
    #[serde(default)]
    pub fee_bps: u32,
}

/// The number of periods of `period_days` started in `[start_ms, end_ms)`.
pub fn started_periods(start_ms: i64, end_ms: i64, period_days: u32) -> Result<u64, String> {
    if end_ms < start_ms {
        return Err(format!(
            "period-end-ms {end_ms} is before period-start-ms {start_ms}"
        ));
    }
    if period_days == 0 {
        return Err("periodDays must be at least 1".to_string());
    }
    let length = i128::from(end_ms) - i128::from(start_ms);
    let period = i128::from(period_days) * DAY_MS;
    let periods = (length + period - 1) / period;
    u64::try_from(periods).map_err(|_| "too many periods".to_string())
}

fn config(text: &str) -> Result<FixedTermConfig, BillingError> {
    let c: FixedTermConfig = billing_config(text)?;
    check_fee_bps(c.fee_bps)?;
    check_config_price("pricePerPeriod", c.price_per_period)?;
    if !(1..=MAX_PERIOD_DAYS).contains(&c.period_days) {
        return Err(BillingError::InvalidConfig(format!(
            "periodDays must be within 1..={MAX_PERIOD_DAYS}, not {}",
            c.period_days
        )));
    }
    Ok(c)
}

pub fn charge_trade(trade: &Trade) -> Result<Charge, BillingError> {
    let c = config(&trade.config)?;
    flat_trade(trade, c.price_per_period.unwrap_or(trade.price), c.fee_bps)
}

pub fn charge_usage(usage: &Usage) -> Result<Charge, BillingError> {
    let c = config(&usage.config)?;
    check_input_price(usage.price)?;
    let periods = started_periods(usage.period_start_ms, usage.period_end_ms, c.period_days)
        .map_err(BillingError::InvalidInput)?;
    ChargeBuilder::new()
        .fee_bps(c.fee_bps)
        .item(
            format!("{periods} period(s) of {} days", c.period_days),
            periods,
            c.price_per_period.unwrap_or(usage.price),
        )?
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::BillingMethod;
    use crate::charge::is_well_formed;
    use crate::rules::test_support::{trade, usage};

    const DAY: i64 = 86_400_000;

    #[test]
    fn counting() {
        assert_eq!(started_periods(0, 0, 30), Ok(0));
        assert_eq!(started_periods(0, 1, 30), Ok(1));
        assert_eq!(started_periods(0, 30 * DAY, 30), Ok(1));
        assert_eq!(started_periods(0, 30 * DAY + 1, 30), Ok(2));
        assert_eq!(started_periods(0, 31 * DAY, 30), Ok(2));
        assert_eq!(started_periods(-5, 5, 1), Ok(1));
        assert_eq!(
            started_periods(i64::MIN, i64::MAX, 1).map(|n| n > 0),
            Ok(true)
        );
        assert!(started_periods(10, 9, 30).is_err());
    }

    #[test]
    fn usage_charge() {
        let mut u = usage(
            BillingMethod::Calls,
            100,
            r#"{"periodDays": 7, "pricePerPeriod": 700, "feeBps": 500}"#,
        );
        u.period_end_ms = u.period_start_ms + 15 * DAY;
        let c = charge_usage(&u).unwrap();
        assert_eq!(c.amount, 2_100); // 3 started weeks
        assert_eq!((c.platform_fee, c.provider_share), (105, 1_995));
        assert_eq!(c.line_items[0].quantity, 3);
        assert!(is_well_formed(&c));

        let mut u = usage(BillingMethod::Tokens, 100, "{}");
        u.period_end_ms = u.period_start_ms + 30 * DAY;
        assert_eq!(charge_usage(&u).unwrap().amount, 100);

        u.period_end_ms = u.period_start_ms - 1;
        assert!(matches!(
            charge_usage(&u),
            Err(BillingError::InvalidInput(_))
        ));
    }

    #[test]
    fn configs_and_trades() {
        for cfg in [
            r#"{"periodDays": 0}"#,
            r#"{"periodDays": 40000}"#,
            r#"{"pricePerPeriod": -1}"#,
            r#"{"period": 30}"#,
        ] {
            assert!(
                matches!(
                    charge_trade(&trade(1, false, cfg)),
                    Err(BillingError::InvalidConfig(_))
                ),
                "{cfg}"
            );
        }
        assert_eq!(
            charge_trade(&trade(300, false, r#"{"pricePerPeriod": 250}"#))
                .unwrap()
                .amount,
            250
        );
        assert_eq!(charge_trade(&trade(300, false, "{}")).unwrap().amount, 300);
        assert_eq!(charge_trade(&trade(300, true, "{}")).unwrap().amount, 0);
    }
}
