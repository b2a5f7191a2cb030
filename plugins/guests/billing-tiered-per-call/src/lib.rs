//! The `tiered-per-call` billing rule; the logic and its documentation are in
//! [`liutong_plugin_sdk::rules::tiered_per_call`].

use liutong_plugin_sdk::billing::{BillingError, Charge, Guest, Trade, Usage};
use liutong_plugin_sdk::rules::tiered_per_call;

struct Rule;

impl Guest for Rule {
    fn charge_trade(trade: Trade) -> Result<Charge, BillingError> {
        tiered_per_call::charge_trade(&trade)
    }

    fn charge_usage(usage: Usage) -> Result<Charge, BillingError> {
        tiered_per_call::charge_usage(&usage)
    }
}

liutong_plugin_sdk::export_billing!(Rule);
