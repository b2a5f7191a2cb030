//! Provider calls: `resources.provision`, `describe`, `operate`, `reclaim` and `list-bills`,
//! with the granted secrets and the HTTP allow-list, as adapters have them.

use wasmtime::component::{ComponentExportIndex, ComponentNamedList, Lift, Lower};

use crate::failure::PluginError;
use crate::manifest::PluginKind;
use crate::plugin::{LoadedPlugin, Pre};
use crate::prelinked::call_export;
use crate::prelinked::provider::{
    BillsParams, IdParams, OperateParams, ProviderPre, ProviderV0_1_0, ProvisionParams,
};
use crate::provider::{
    Account, Action, BillLine, Period, ProviderError, ProvisionRequest, Resource, Secret,
};
use crate::session::{Call, Session};

impl LoadedPlugin {
    /// `resources.provision`: must be idempotent on `request.client-token`.
    pub async fn provision(
        &self,
        account: Account,
        request: ProvisionRequest,
    ) -> Result<Call<Result<Resource, ProviderError>>, PluginError> {
        let account = self.provider_account(account);
        let call = self
            .call_provider::<ProvisionParams<'_>, _>((&account, &request), |v| &v.provision)
            .await?;
        self.check_resource(&call.value)?;
        Ok(call)
    }

    /// `resources.describe`.
    pub async fn describe(
        &self,
        account: Account,
        resource_id: &str,
    ) -> Result<Call<Result<Resource, ProviderError>>, PluginError> {
        let account = self.provider_account(account);
        let call = self
            .call_provider::<IdParams<'_>, _>((&account, resource_id), |v| &v.describe)
            .await?;
        self.check_resource(&call.value)?;
        Ok(call)
    }

    /// `resources.operate`.
    pub async fn operate(
        &self,
        account: Account,
        resource_id: &str,
        action: Action,
    ) -> Result<Call<Result<Resource, ProviderError>>, PluginError> {
        let account = self.provider_account(account);
        let call = self
            .call_provider::<OperateParams<'_>, _>((&account, resource_id, &action), |v| &v.operate)
            .await?;
        self.check_resource(&call.value)?;
        Ok(call)
    }

    /// `resources.reclaim`: succeeds for a resource that is already gone.
    pub async fn reclaim(
        &self,
        account: Account,
        resource_id: &str,
    ) -> Result<Call<Result<(), ProviderError>>, PluginError> {
        let account = self.provider_account(account);
        let call = self
            .call_provider::<IdParams<'_>, _>((&account, resource_id), |v| &v.reclaim)
            .await?;
        if let Err(e) = &call.value {
            self.check_provider_error(e)?;
        }
        Ok(call)
    }

    /// `resources.list-bills`.
    pub async fn list_bills(
        &self,
        account: Account,
        period: Period,
    ) -> Result<Call<Result<Vec<BillLine>, ProviderError>>, PluginError> {
        let account = self.provider_account(account);
        let call = self
            .call_provider::<BillsParams<'_>, Vec<BillLine>>((&account, &period), |v| &v.list_bills)
            .await?;
        match &call.value {
            Ok(lines) => {
                let max = self.inner.results.max_bill_lines;
                if lines.len() > max {
                    return Err(
                        self.too_large(format!("bill-lines: {} lines > {max} lines", lines.len()))
                    );
                }
                for l in lines {
                    self.check_string("bill-line.resource-id", &l.resource_id)?;
                    self.check_string("bill-line.unit", &l.unit)?;
                    self.check_string("bill-line.currency", &l.currency)?;
                }
            }
            Err(e) => self.check_provider_error(e)?,
        }
        Ok(call)
    }

    /// `account.secrets` is replaced by what [`LoadedPlugin::pass_secrets`] lets through.
    fn provider_account(&self, mut account: Account) -> Account {
        account.secrets = self.pass_secrets(
            std::mem::take(&mut account.secrets),
            |s| &s.name,
            |name, value| Secret { name, value },
        );
        account
    }

    /// One call of a `resources` function: a fresh store and instance, the export found by
    /// the index checked at load, finished as networked calls are.
    async fn call_provider<P, T>(
        &self,
        params: P,
        export: fn(&ProviderV0_1_0) -> &ComponentExportIndex,
    ) -> Result<Call<Result<T, ProviderError>>, PluginError>
    where
        P: ComponentNamedList + Lower + Send + Sync,
        (Result<T, ProviderError>,): ComponentNamedList + Lift + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        let Pre::Provider(pre) = &self.inner.pre else {
            return Err(self.wrong_kind(PluginKind::Provider));
        };
        let mut session = Session::open(&self.inner.session)
            .await
            .map_err(|f| self.failed(f))?;
        let outcome = session
            .run(async |store| match pre {
                // SAFETY: `ProviderPre::new` checked every `resources` export as taking its
                // parameter tuple and returning its result, and callers pass the index
                // together with the parameters of that export.
                ProviderPre::V0_1_0(v) => unsafe {
                    call_export::<P, (Result<T, ProviderError>,)>(store, &v.pre, export(v), params)
                        .await
                }
                .map(|(value,)| value),
            })
            .await;
        self.finish_networked(session, outcome)
    }

    fn check_resource(&self, r: &Result<Resource, ProviderError>) -> Result<(), PluginError> {
        match r {
            Ok(res) => {
                self.check_string("resource.resource-id", &res.resource_id)?;
                self.check_string("resource.endpoint", &res.endpoint)
            }
            Err(e) => self.check_provider_error(e),
        }
    }

    fn check_provider_error(&self, e: &ProviderError) -> Result<(), PluginError> {
        match e {
            ProviderError::InvalidRequest(m)
            | ProviderError::InvalidConfig(m)
            | ProviderError::Unsupported(m)
            | ProviderError::NotFound(m)
            | ProviderError::UpstreamStatus((_, m))
            | ProviderError::UpstreamUnreachable(m)
            | ProviderError::BadResponse(m) => self.check_string("provider-error", m),
        }
    }
}
