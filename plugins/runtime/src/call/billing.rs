//! Billing calls: `rule.charge-trade` and `rule.charge-usage`.

use wasmtime::component::{ComponentExportIndex, Lower};

use crate::billing::{BillingError, Charge, Trade, Usage};
use crate::failure::PluginError;
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::prelinked::billing::{BillingPre, BillingV0_1_0, ChargeResult};
use crate::prelinked::call_export;
use crate::session::{Call, Session};

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
                // SAFETY: `BillingPre::new` checked both `rule` exports as taking their
                // argument type and returning `ChargeResult`, and callers pass the index
                // together with the argument of that export.
                BillingPre::V0_1_0(v) => unsafe {
                    call_export::<(&A,), ChargeResult>(store, &v.pre, export(v), (arg,)).await
                }
                .map(|(charge,)| charge),
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
