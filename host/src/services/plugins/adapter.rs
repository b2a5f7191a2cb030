//! Subscriptions through plugins: the adapter that calls a publication's upstream (checked
//! against the operator's grants when the publication is made, not at its first call), and
//! the billing rule's `charge-usage`. Both are called in the sandbox and audited like every
//! plugin call.

use std::net::IpAddr;
use std::time::Instant;

use liutong_plugin_runtime::adapter::{
    AdapterError, Invocation, Outcome as WitOutcome, Publication as WitPublication, PublicationKind,
};
use liutong_plugin_runtime::billing::{BillingMethod, BillingType as WitBillingType, Usage};
use liutong_plugin_runtime::{Call, LoadedPlugin, PluginError, PluginKind};

use super::PluginHost;
use super::billing::{Outcome, input_digest, labelled, plugin_error_text};
use crate::domain::billing::{Charge, LineItem};
use crate::domain::money::Money;
use crate::domain::subscriptions::{BillingType, Kind, Unit, Usage as DomainUsage};
use crate::services::ServiceError;

/// The upstream's address as the sandbox's allow-list sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
}

/// Reads `http(s)://host[:port]/…`; anything else is refused with the reason.
pub fn upstream_of(endpoint: &str) -> Result<Upstream, String> {
    let url = url::Url::parse(endpoint).map_err(|e| format!("is not a URL: {e}"))?;
    let default_port = match url.scheme() {
        "http" => 80,
        "https" => 443,
        other => return Err(format!("must be http or https, not {other}")),
    };
    let host = url
        .host_str()
        .ok_or("has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Ok(Upstream {
        port: url.port().unwrap_or(default_port),
        host,
    })
}

/// What a failed invocation was: the upstream's fault (502/504 with its status) or the
/// adapter plugin's (502 naming it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeFailure {
    /// The upstream answered an error status, could not be reached or answered garbage.
    Upstream {
        status: Option<u16>,
        timed_out: bool,
        message: String,
    },
    /// The subscriber's input is not what the adapter takes.
    InvalidInput(String),
    /// The adapter plugin failed, is not usable, or refused its configuration.
    Plugin(String),
}

/// A successful invocation.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub output: String,
    pub usage: DomainUsage,
    pub plugin_version: String,
}

fn is_timeout(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("timeout") || m.contains("timed out")
}

impl PluginHost {
    /// The adapter plugin `adapter_id`, installed, enabled and loaded, as a publication needs
    /// it; and that it may reach `endpoint`: the manifest and the operator's grant must both
    /// allow the upstream's `host:port` (private addresses only by an explicit grant). The
    /// error says which grant to add.
    pub async fn check_adapter(
        &self,
        adapter_id: &str,
        endpoint: &str,
        field: &str,
    ) -> Result<(), ServiceError> {
        let upstream = upstream_of(endpoint).map_err(|m| ServiceError::invalid(field, m))?;
        let plugin = self
            .require(PluginKind::Adapter, adapter_id, "/adapter")
            .await?;
        let (host, port) = (upstream.host.as_str(), upstream.port);
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let hint = format!(
            "add it to the operator's configuration: [plugins.grants.{adapter_id}] http = \
             [\"{authority}\"]"
        );
        if !plugin
            .manifest()
            .capabilities
            .http
            .iter()
            .any(|p| p.matches(host, port))
        {
            return Err(ServiceError::invalid(
                field,
                format!(
                    "adapter plugin '{adapter_id}' does not request {authority} in its manifest; \
                     choose another adapter"
                ),
            ));
        }
        let granted = self
            .inner
            .grants
            .get(adapter_id)
            .map(|g| g.http.as_slice())
            .unwrap_or_default();
        let private = host
            .parse::<IpAddr>()
            .is_ok_and(liutong_plugin_runtime::is_private)
            || host == "localhost";
        let allowed = granted
            .iter()
            .any(|p| p.matches(host, port) && (!private || p.is_explicit()));
        if !allowed {
            return Err(ServiceError::invalid(
                field,
                format!(
                    "the operator has not granted adapter plugin '{adapter_id}' the upstream \
                     {authority}; {hint}"
                ),
            ));
        }
        Ok(())
    }

    /// The time limit of an adapter, in milliseconds (the bound of a `duration` hold).
    pub async fn adapter_timeout_ms(&self, adapter_id: &str) -> Result<u64, ServiceError> {
        let registry = self.refresh(false).await?;
        let plugin = self
            .pick_one(&registry, PluginKind::Adapter, adapter_id)
            .map_err(ServiceError::PluginFailed)?;
        Ok(u64::try_from(plugin.limits().timeout.as_millis()).unwrap_or(u64::MAX))
    }

    /// Calls adapter `adapter_id` for one invocation of a publication, audited.
    #[allow(clippy::too_many_arguments)]
    pub async fn invoke_adapter(
        &self,
        adapter_id: &str,
        publish_id: &str,
        kind: Kind,
        endpoint: &str,
        config: &str,
        input: &str,
        caller: &str,
        request_id: &str,
    ) -> Result<Invoked, InvokeFailure> {
        let registry = self
            .refresh(false)
            .await
            .map_err(|e| InvokeFailure::Plugin(format!("the plugins are unavailable: {e}")))?;
        let plugin: LoadedPlugin = self
            .pick_one(&registry, PluginKind::Adapter, adapter_id)
            .map_err(InvokeFailure::Plugin)?;
        let name = format!("adapter plugin {}@{}", plugin.id(), plugin.version());
        let publication = WitPublication {
            publish_id: publish_id.to_owned(),
            kind: match kind {
                Kind::Model => PublicationKind::Model,
                Kind::Application => PublicationKind::Application,
            },
            endpoint: endpoint.to_owned(),
            config: config.to_owned(),
            secrets: Vec::new(),
        };
        let invocation = Invocation {
            input: input.to_owned(),
            caller: caller.to_owned(),
            request_id: request_id.to_owned(),
        };
        let digest = input_digest(&(&publication.publish_id, &invocation));
        let started = Instant::now();
        let result = plugin.invoke(publication, invocation).await;
        let record = |outcome: &'static str, error: Option<String>, fuel: Option<u64>| {
            self.record_call(
                &plugin,
                caller,
                publish_id,
                digest.clone(),
                Outcome {
                    outcome,
                    error,
                    fuel_used: fuel,
                    duration: started.elapsed(),
                    operation: "invoke",
                },
            )
        };
        match result {
            Ok(Call {
                value: Ok(WitOutcome { output, usage }),
                fuel_used,
                ..
            }) => {
                if let Err(e) = serde_json::from_str::<serde_json::Value>(&output) {
                    let message = format!("{name} returned an output that is not JSON: {e}");
                    record("failed", Some(message.clone()), fuel_used);
                    return Err(InvokeFailure::Plugin(message));
                }
                record("ok", None, fuel_used);
                Ok(Invoked {
                    output,
                    usage: DomainUsage {
                        calls: usage.calls,
                        input_tokens: usage.input_tokens,
                        output_tokens: usage.output_tokens,
                        duration_ms: usage.duration_ms,
                    },
                    plugin_version: plugin.version().to_string(),
                })
            }
            Ok(Call {
                value: Err(e),
                fuel_used,
                ..
            }) => {
                let failure = match e {
                    AdapterError::InvalidInput(m) => InvokeFailure::InvalidInput(m),
                    AdapterError::InvalidConfig(m) => {
                        InvokeFailure::Plugin(format!("{name}: {}", labelled("invalid config", &m)))
                    }
                    AdapterError::UpstreamStatus((status, body)) => InvokeFailure::Upstream {
                        status: Some(status),
                        timed_out: status == 504 || status == 408,
                        message: format!("the upstream answered HTTP {status}: {body}"),
                    },
                    AdapterError::UpstreamUnreachable(m) => InvokeFailure::Upstream {
                        status: None,
                        timed_out: is_timeout(&m),
                        message: format!("the upstream could not be reached: {m}"),
                    },
                    AdapterError::BadResponse(m) => InvokeFailure::Upstream {
                        status: None,
                        timed_out: false,
                        message: format!("the upstream's answer is not usable: {m}"),
                    },
                };
                record("rejected", Some(format!("{failure:?}")), fuel_used);
                Err(failure)
            }
            Err(PluginError { kind, .. }) => {
                record("failed", Some(kind.to_string()), None);
                Err(InvokeFailure::Plugin(format!("{name} {kind}")))
            }
        }
    }

    /// Prices usage with billing plugin `plugin_id` (`charge-usage`), audited and checked.
    /// Returns the charge and the rule (`plugin per-token@0.1.0`).
    #[allow(clippy::too_many_arguments)]
    pub async fn charge_usage(
        &self,
        plugin_id: &str,
        config: &str,
        order_id: &str,
        buyer: &str,
        seller: &str,
        resource_id: &str,
        billing_type: BillingType,
        unit: Unit,
        usage: &DomainUsage,
        period: (i64, i64),
        price: Money,
        currency: &str,
    ) -> Result<(Charge, String), ServiceError> {
        let registry = self.refresh(false).await?;
        let plugin = self
            .pick_one(&registry, PluginKind::Billing, plugin_id)
            .map_err(ServiceError::Unavailable)?;
        let rule = format!("plugin {}@{}", plugin.id(), plugin.version());
        let wit = Usage {
            order_id: order_id.to_owned(),
            buyer: buyer.to_owned(),
            seller: seller.to_owned(),
            resource_id: resource_id.to_owned(),
            billing_type: match billing_type {
                BillingType::FixedTerm => WitBillingType::FixedTerm,
                BillingType::Metered => WitBillingType::Metered,
            },
            billing_method: match unit {
                Unit::Calls => BillingMethod::Calls,
                Unit::Tokens => BillingMethod::Tokens,
                Unit::Duration => BillingMethod::Duration,
            },
            calls: usage.calls,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            duration_seconds: usage.duration_ms.div_ceil(1000),
            period_start_ms: period.0,
            period_end_ms: period.1,
            price: price.minor(),
            currency: currency.to_owned(),
            config: config.to_owned(),
        };
        let digest = input_digest(&wit);
        let started = Instant::now();
        let result = plugin.charge_usage(wit).await;
        let record = |outcome: &'static str, error: Option<String>, fuel: Option<u64>| {
            self.record_call(
                &plugin,
                buyer,
                order_id,
                digest.clone(),
                Outcome {
                    outcome,
                    error,
                    fuel_used: fuel,
                    duration: started.elapsed(),
                    operation: "charge-usage",
                },
            )
        };
        match result {
            Ok(Call {
                value: Ok(c),
                fuel_used,
                ..
            }) => {
                let charge = Charge {
                    amount: Money::from_minor(c.amount),
                    platform_fee: Money::from_minor(c.platform_fee),
                    provider_share: Money::from_minor(c.provider_share),
                    line_items: c
                        .line_items
                        .into_iter()
                        .map(|item| LineItem {
                            description: item.description,
                            amount: Money::from_minor(item.amount),
                        })
                        .collect(),
                };
                if let Err(e) = charge.check(&rule) {
                    record("failed", Some(e.to_string()), fuel_used);
                    return Err(ServiceError::PluginFailed(e.to_string()));
                }
                record("ok", None, fuel_used);
                Ok((charge, rule))
            }
            Ok(Call {
                value: Err(e),
                fuel_used,
                ..
            }) => {
                let message = plugin_error_text(&e);
                record("rejected", Some(message.clone()), fuel_used);
                Err(ServiceError::PluginFailed(format!(
                    "billing rule '{rule}' failed: {message}"
                )))
            }
            Err(PluginError { kind, .. }) => {
                record("failed", Some(kind.to_string()), None);
                Err(ServiceError::PluginFailed(format!(
                    "billing rule '{rule}' failed: {kind}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_read_with_their_ports() {
        assert_eq!(
            upstream_of("http://127.0.0.1:8080/v1").expect("url"),
            Upstream {
                host: "127.0.0.1".into(),
                port: 8080
            }
        );
        assert_eq!(
            upstream_of("https://API.example.com/x").expect("url").port,
            443
        );
        assert!(upstream_of("ftp://example.com/").is_err());
        assert!(upstream_of("not a url").is_err());
    }
}
