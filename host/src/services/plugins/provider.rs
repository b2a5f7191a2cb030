//! Compute orders through provider plugins: provision, describe, operate, reclaim and list
//! bills, each called in the sandbox and audited like every plugin call.

use std::time::Instant;

use liutong_plugin_runtime::provider::{
    Account, Action, BillLine, Period, ProviderError, ProvisionRequest, Resource, ResourceState,
    ResourceType as WitResourceType,
};
use liutong_plugin_runtime::{Call, LoadedPlugin, PluginError, PluginKind};

use super::PluginHost;
use super::billing::{Outcome, input_digest, labelled};
use crate::domain::compute::{Offering, ResourceAction, ResourceType};

/// What a provider call came to when it did not answer a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderFailure {
    /// The provider refused or failed: its status when it answered one, whether it could not
    /// be reached at all (worth retrying), and the plugin's message.
    Provider {
        status: Option<u16>,
        unreachable: bool,
        not_found: bool,
        unsupported: bool,
        message: String,
    },
    /// The plugin failed (trap, timeout, refused request, bad config) or is not usable.
    Plugin(String),
}

impl ProviderFailure {
    pub fn message(&self) -> &str {
        match self {
            ProviderFailure::Provider { message, .. } | ProviderFailure::Plugin(message) => message,
        }
    }
}

/// What the provider answered about a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    pub resource_id: String,
    pub state: &'static str,
    pub endpoint: serde_json::Value,
}

fn wit_type(t: ResourceType) -> WitResourceType {
    match t {
        ResourceType::CloudHost => WitResourceType::CloudHost,
        ResourceType::BareMetal => WitResourceType::BareMetal,
        ResourceType::FileService => WitResourceType::FileService,
        ResourceType::StorageService => WitResourceType::StorageService,
    }
}

fn state_name(s: ResourceState) -> &'static str {
    match s {
        ResourceState::Pending => "pending",
        ResourceState::Running => "running",
        ResourceState::Stopping => "stopping",
        ResourceState::Stopped => "stopped",
        ResourceState::Deleting => "deleting",
        ResourceState::Deleted => "deleted",
        ResourceState::Available => "available",
        ResourceState::Unknown => "unknown",
    }
}

fn info(r: Resource) -> ResourceInfo {
    // An endpoint that is not JSON is kept as text rather than lost.
    let endpoint = serde_json::from_str(&r.endpoint)
        .unwrap_or_else(|_| serde_json::Value::String(r.endpoint.clone()));
    ResourceInfo {
        resource_id: r.resource_id,
        state: state_name(r.state),
        endpoint,
    }
}

fn account(offering: &Offering) -> Account {
    Account {
        offering_id: offering.id.clone(),
        resource_type: wit_type(offering.resource_type),
        region: offering.region.clone(),
        config: offering.config.to_string(),
        secrets: Vec::new(),
    }
}

fn failure(name: &str, e: ProviderError) -> ProviderFailure {
    let provider =
        |status, unreachable, not_found, unsupported, message| ProviderFailure::Provider {
            status,
            unreachable,
            not_found,
            unsupported,
            message,
        };
    match e {
        ProviderError::InvalidRequest(m) => {
            provider(None, false, false, false, format!("invalid request: {m}"))
        }
        ProviderError::InvalidConfig(m) => {
            ProviderFailure::Plugin(format!("{name}: {}", labelled("invalid config", &m)))
        }
        ProviderError::Unsupported(m) => {
            provider(None, false, false, true, format!("not supported: {m}"))
        }
        ProviderError::NotFound(m) => provider(
            None,
            false,
            true,
            false,
            format!("not found at the provider: {m}"),
        ),
        ProviderError::UpstreamStatus((status, m)) => provider(
            Some(status),
            false,
            false,
            false,
            format!("the provider answered HTTP {status}: {m}"),
        ),
        ProviderError::UpstreamUnreachable(m) => provider(
            None,
            true,
            false,
            false,
            format!("the provider could not be reached: {m}"),
        ),
        ProviderError::BadResponse(m) => provider(
            None,
            false,
            false,
            false,
            format!("the provider's answer is not usable: {m}"),
        ),
    }
}

impl PluginHost {
    /// One audited call of a provider plugin: `operation` names it in the audit, `subject`
    /// is the order (or offering) it is for.
    async fn provider_call<T, F>(
        &self,
        offering: &Offering,
        operation: &'static str,
        subject: &str,
        call: F,
    ) -> Result<T, ProviderFailure>
    where
        F: AsyncFnOnce(
            &LoadedPlugin,
            Account,
        ) -> Result<Call<Result<T, ProviderError>>, PluginError>,
    {
        let registry = self
            .refresh(false)
            .await
            .map_err(|e| ProviderFailure::Plugin(format!("the plugins are unavailable: {e}")))?;
        let plugin = self
            .pick_one(&registry, PluginKind::Provider, &offering.plugin_id)
            .map_err(ProviderFailure::Plugin)?;
        let name = format!("provider plugin {}@{}", plugin.id(), plugin.version());
        let digest = input_digest(&(&offering.id, operation, subject));
        let started = Instant::now();
        let result = call(&plugin, account(offering)).await;
        let record = |outcome: &'static str, error: Option<String>| {
            self.record_call(
                &plugin,
                "compute",
                subject,
                digest.clone(),
                Outcome {
                    outcome,
                    error,
                    fuel_used: None,
                    duration: started.elapsed(),
                    operation,
                },
            )
        };
        match result {
            Ok(Call { value: Ok(v), .. }) => {
                record("ok", None);
                Ok(v)
            }
            Ok(Call { value: Err(e), .. }) => {
                let f = failure(&name, e);
                record("rejected", Some(f.message().to_owned()));
                Err(f)
            }
            Err(PluginError { kind, .. }) => {
                record("failed", Some(kind.to_string()));
                Err(ProviderFailure::Plugin(format!("{name} {kind}")))
            }
        }
    }

    /// `provision`, idempotent on `client_token`.
    pub async fn provision(
        &self,
        offering: &Offering,
        order_id: &str,
        client_token: &str,
        spec: &serde_json::Value,
    ) -> Result<ResourceInfo, ProviderFailure> {
        let request = ProvisionRequest {
            client_token: client_token.to_owned(),
            order_id: order_id.to_owned(),
            spec: spec.to_string(),
        };
        self.provider_call(offering, "provision", order_id, async |p, a| {
            p.provision(a, request).await
        })
        .await
        .map(info)
    }

    pub async fn describe_resource(
        &self,
        offering: &Offering,
        order_id: &str,
        resource_id: &str,
    ) -> Result<ResourceInfo, ProviderFailure> {
        self.provider_call(offering, "describe", order_id, async |p, a| {
            p.describe(a, resource_id).await
        })
        .await
        .map(info)
    }

    pub async fn operate_resource(
        &self,
        offering: &Offering,
        order_id: &str,
        resource_id: &str,
        action: &ResourceAction,
    ) -> Result<ResourceInfo, ProviderFailure> {
        let action = match action {
            ResourceAction::Start => Action::Start,
            ResourceAction::Stop => Action::Stop,
            ResourceAction::Reboot => Action::Reboot,
            ResourceAction::Resize(size) => Action::Resize(size.clone()),
        };
        self.provider_call(offering, "operate", order_id, async |p, a| {
            p.operate(a, resource_id, action).await
        })
        .await
        .map(info)
    }

    /// `reclaim`: a resource that is gone already counts as reclaimed.
    pub async fn reclaim_resource(
        &self,
        offering: &Offering,
        order_id: &str,
        resource_id: &str,
    ) -> Result<(), ProviderFailure> {
        match self
            .provider_call(offering, "reclaim", order_id, async |p, a| {
                p.reclaim(a, resource_id).await
            })
            .await
        {
            Err(ProviderFailure::Provider {
                not_found: true, ..
            }) => Ok(()),
            other => other,
        }
    }

    /// `list-bills` of the account an offering names, for `[start, end)` (`YYYY-MM-DD`).
    pub async fn list_bills(
        &self,
        offering: &Offering,
        start: &str,
        end: &str,
    ) -> Result<Vec<BillLine>, ProviderFailure> {
        let period = Period {
            start: start.to_owned(),
            end: end.to_owned(),
        };
        self.provider_call(offering, "list-bills", &offering.id, async |p, a| {
            p.list_bills(a, period).await
        })
        .await
    }
}
