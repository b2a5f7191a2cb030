//! The `fixed-term` billing rule; the logic and its documentation are in
//! [`liutong_plugin_sdk::rules::fixed_term`].

use liutong_plugin_sdk::billing::{BillingError, Charge, Guest, Trade, Usage};
use liutong_plugin_sdk::rules::fixed_term;

struct Rule;

impl Guest for Rule {
    fn charge_trade(trade: Trade) -> Result<Charge, BillingError> {
        fixed_term::charge_trade(&trade)
    }

    fn charge_usage(usage: Usage) -> Result<Charge, BillingError> {
        fixed_term::charge_usage(&usage)
    }
}

liutong_plugin_sdk::export_billing!(Rule);
