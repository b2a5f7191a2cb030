//! Billing calls: `rule.charge-trade` and `rule.charge-usage`.

use semver::Version;
use wasmtime::component::{ComponentExportIndex, InstancePre, Lower};

use crate::billing::{BillingError, Charge, Trade, Usage};
use crate::bindings::billing::v0_1_0::liutong::billing::types as v0_1_0;
use crate::bindings::triple;
use crate::call::{export_func, typed_func};
use crate::failure::{Phase, PluginError};
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::session::{Call, CallState, Session};

/// A billing component pre-linked through the bindings of its WIT version.
pub(crate) enum BillingPre {
    V0_1_0(BillingV0_1_0),
}

/// `liutong:billing@0.1.0`: the component and its `rule` functions, type-checked at load.
pub(crate) struct BillingV0_1_0 {
    pre: InstancePre<CallState>,
    charge_trade: ComponentExportIndex,
    charge_usage: ComponentExportIndex,
}

type ChargeResult = (Result<v0_1_0::Charge, v0_1_0::BillingError>,);

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

impl LoadedPlugin {
    fn billing_pre(&self) -> Result<&BillingPre, PluginError> {
        match &self.inner.pre {
            Pre::Billing(pre) => Ok(pre),
            _ => Err(self.wrong_kind(PluginKind::Billing)),
        }
    }

    /// `rule.charge-trade`.
    pub async fn charge_trade(
        &self,
        trade: Trade,
    ) -> Result<Call<Result<Charge, BillingError>>, PluginError> {
        self.call_rule(&trade, |v| &v.charge_trade).await
    }

    /// `rule.charge-usage`.
    pub async fn charge_usage(
        &self,
        usage: Usage,
    ) -> Result<Call<Result<Charge, BillingError>>, PluginError> {
        self.call_rule(&usage, |v| &v.charge_usage).await
    }

    /// One call of a `rule` function taking `arg` and answering a charge: a fresh store and
    /// instance, the export found by the index checked at load, the result checked.
    async fn call_rule<A>(
        &self,
        arg: &A,
        export: fn(&BillingV0_1_0) -> &ComponentExportIndex,
    ) -> Result<Call<Result<Charge, BillingError>>, PluginError>
    where
        A: Lower + Sync,
    {
        let pre = self.billing_pre()?;
        let mut session = Session::open(&self.inner.session)
            .await
            .map_err(|f| self.failed(f))?;
        let outcome = session
            .run(async |store| match pre {
                BillingPre::V0_1_0(v) => {
                    let instance = v
                        .pre
                        .instantiate_async(&mut *store)
                        .await
                        .map_err(|e| (Phase::Instantiate, e))?;
                    // SAFETY: `BillingPre::new` checked both `rule` exports as taking their
                    // argument type and returning `ChargeResult`, and callers pass the index
                    // together with the argument of that export.
                    let func =
                        unsafe { typed_func::<(&A,), ChargeResult>(store, &instance, export(v)) }
                            .map_err(|e| (Phase::Instantiate, e))?;
                    let (charge,) = func
                        .call_async(store, (arg,))
                        .await
                        .map_err(|e| (Phase::Call, e))?;
                    Ok(charge)
                }
            })
            .await;
        let call = session.finish(outcome).map_err(|f| self.failed(f))?;
        self.check_charge(&call.value)?;
        Ok(call)
    }

    fn check_charge(&self, r: &Result<Charge, BillingError>) -> Result<(), PluginError> {
        match r {
            Ok(c) => {
                self.check_items("line-items", c.line_items.len())?;
                for item in &c.line_items {
                    self.check_string("line-items.description", &item.description)?;
                }
                Ok(())
            }
            Err(
                BillingError::InvalidConfig(m)
                | BillingError::InvalidInput(m)
                | BillingError::Unsupported(m),
            ) => self.check_string("billing-error", m),
        }
    }
}
