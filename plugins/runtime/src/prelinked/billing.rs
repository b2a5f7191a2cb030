//! The billing kind's pre-linked component: `rule.charge-trade` and `rule.charge-usage`,
//! type-checked at load.

use semver::Version;
use wasmtime::component::{ComponentExportIndex, InstancePre};

use crate::bindings::billing::v0_1_0::liutong::billing::types as v0_1_0;
use crate::bindings::triple;
use crate::prelinked::export_func;
use crate::session::CallState;

/// A billing component pre-linked through the bindings of its WIT version.
pub(crate) enum BillingPre {
    V0_1_0(BillingV0_1_0),
}

/// `liutong:billing@0.1.0`: the component and its `rule` functions, type-checked at load.
pub(crate) struct BillingV0_1_0 {
    pub(crate) pre: InstancePre<CallState>,
    pub(crate) charge_trade: ComponentExportIndex,
    pub(crate) charge_usage: ComponentExportIndex,
}

pub(crate) type ChargeResult = (Result<v0_1_0::Charge, v0_1_0::BillingError>,);

impl BillingPre {
    /// Type-checks the component's exports against the bindings of `version`.
    pub fn new(version: &Version, pre: InstancePre<CallState>) -> wasmtime::Result<BillingPre> {
        match triple(version) {
            (0, 1, 0) => {
                const RULE: &str = "liutong:billing/rule@0.1.0";
                Ok(BillingPre::V0_1_0(BillingV0_1_0 {
                    charge_trade: export_func::<(&v0_1_0::Trade,), ChargeResult>(
                        &pre,
                        RULE,
                        "charge-trade",
                    )?,
                    charge_usage: export_func::<(&v0_1_0::Usage,), ChargeResult>(
                        &pre,
                        RULE,
                        "charge-usage",
                    )?,
                    pre,
                }))
            }
            _ => wasmtime::bail!("this runtime has no bindings of billing WIT {version}"),
        }
    }
}
