//! Settlement's billing through plugins: the rule chosen for the publication (or the default
//! billing plugin), called in the sandbox, audited, and checked before any money moves.
//! With no billing plugin chosen anywhere, the native flat rule applies.

use std::time::Instant;

use liutong_plugin_runtime::billing::{BillingError as PluginBillingError, ResourceKind, Trade};
use liutong_plugin_runtime::{Call, LoadedPlugin, PluginError, PluginKind};
use sha2::{Digest, Sha256};

use super::{PluginHost, RegisteredPlugin, elapsed_secs};
use crate::domain::billing::{
    Billed, Billing, BillingError, BillingFuture, Charge, ChargeRequest, FlatBilling, LineItem,
};
use crate::domain::money::Money;
use crate::domain::plugins::PluginCallRecord;
use crate::domain::timefmt::now_millis;
use crate::metrics::{CallLabels, PluginLabels};

/// The `Billing` settlement uses: plugins when chosen, the native flat rule otherwise.
pub struct PluginBilling {
    host: PluginHost,
    native: FlatBilling,
}

impl PluginBilling {
    pub fn new(host: PluginHost, native: FlatBilling) -> Self {
        PluginBilling { host, native }
    }
}

/// What a call's outcome was, for the audit and the metrics.
pub struct Outcome<'a> {
    pub outcome: &'static str,
    pub error: Option<String>,
    pub fuel_used: Option<u64>,
    pub duration: std::time::Duration,
    pub operation: &'a str,
}

impl PluginHost {
    /// Records one call in the audit trail and the metrics.
    pub fn record_call(
        &self,
        plugin: &LoadedPlugin,
        caller: &str,
        subject: &str,
        input_digest: String,
        outcome: Outcome<'_>,
    ) {
        let kind = plugin.kind();
        let version = plugin.version().to_string();
        let metrics = self.metrics();
        metrics
            .plugin_calls
            .get_or_create(&CallLabels {
                plugin: plugin.id().to_owned(),
                version: version.clone(),
                kind: kind.as_str().to_owned(),
                operation: outcome.operation.to_owned(),
                outcome: outcome.outcome.to_owned(),
            })
            .inc();
        let labels = PluginLabels {
            plugin: plugin.id().to_owned(),
            kind: kind.as_str().to_owned(),
            operation: outcome.operation.to_owned(),
        };
        metrics
            .plugin_call_seconds
            .get_or_create(&labels)
            .observe(outcome.duration.as_secs_f64());
        if let Some(fuel) = outcome.fuel_used {
            metrics
                .plugin_fuel
                .get_or_create(&labels)
                .observe(fuel as f64);
        }
        self.audit().record(PluginCallRecord {
            id: crate::domain::new_id("pcall_"),
            at: now_millis(),
            plugin_id: plugin.id().to_owned(),
            version,
            component_sha256: plugin.component_sha256().to_owned(),
            kind,
            operation: outcome.operation.to_owned(),
            caller: caller.to_owned(),
            subject: subject.to_owned(),
            input_sha256: input_digest,
            outcome: outcome.outcome.to_owned(),
            error: outcome.error,
            fuel_used: outcome
                .fuel_used
                .map(|f| i64::try_from(f).unwrap_or(i64::MAX)),
            duration_us: i64::try_from(outcome.duration.as_micros()).unwrap_or(i64::MAX),
        });
    }

    /// Plugin `id` of `kind`, installed, enabled and loaded; else why not.
    pub fn pick_one(
        &self,
        registry: &super::Registry,
        kind: PluginKind,
        id: &str,
    ) -> Result<LoadedPlugin, String> {
        let plugin = self
            .pick(registry, kind, Some(id))?
            .ok_or_else(|| format!("{kind} plugin '{id}' is not installed"))?;
        if plugin.kind() != kind {
            return Err(format!(
                "plugin '{id}' is a {} plugin, not a {kind} plugin",
                plugin.kind()
            ));
        }
        Ok(plugin)
    }

    /// The plugin a kind's call goes to: `chosen` when given, else the kind's default.
    /// `Ok(None)`: nothing chosen and no default.
    pub fn pick(
        &self,
        registry: &super::Registry,
        kind: PluginKind,
        chosen: Option<&str>,
    ) -> Result<Option<LoadedPlugin>, String> {
        let Some(id) = chosen.or_else(|| registry.defaults.get(&kind).map(String::as_str)) else {
            return Ok(None);
        };
        let Some(RegisteredPlugin {
            enabled, loaded, ..
        }) = registry.plugins.get(id)
        else {
            return Err(format!("{kind} plugin '{id}' is not installed"));
        };
        if !enabled {
            return Err(format!("{kind} plugin '{id}' is disabled"));
        }
        loaded
            .as_ref()
            .map(|l| Some(l.clone()))
            .map_err(|reason| format!("{kind} plugin '{id}' is not loaded: {reason}"))
    }
}

/// SHA-256 of a value's debug form: enough to tell inputs apart in the audit without storing
/// them.
pub fn input_digest(value: &impl std::fmt::Debug) -> String {
    hex::encode(Sha256::digest(format!("{value:?}").as_bytes()))
}

fn resource_kind(request: &ChargeRequest<'_>) -> ResourceKind {
    if request.controlled {
        return ResourceKind::ControlledData;
    }
    match request.data_type.trim().to_ascii_lowercase().as_str() {
        "model" => ResourceKind::Model,
        "application" | "app" => ResourceKind::Application,
        _ => ResourceKind::Dataset,
    }
}

/// The plugin's own error, prefixed with its case unless the plugin already said it (the SDK's
/// helpers do).
pub(crate) fn plugin_error_text(e: &PluginBillingError) -> String {
    match e {
        PluginBillingError::InvalidConfig(m) => labelled("invalid config", m),
        PluginBillingError::InvalidInput(m) => labelled("invalid input", m),
        PluginBillingError::Unsupported(m) => labelled("unsupported", m),
    }
}

/// A plugin's error message under the label of its case (`invalid config: …`), once: the
/// SDK's own messages start with the label already.
pub(crate) fn labelled(case: &str, message: &str) -> String {
    if message.starts_with(case) {
        message.to_owned()
    } else {
        format!("{case}: {message}")
    }
}

impl Billing for PluginBilling {
    fn charge<'a>(&'a self, request: &'a ChargeRequest<'a>) -> BillingFuture<'a> {
        Box::pin(async move {
            let registry =
                self.host
                    .refresh(false)
                    .await
                    .map_err(|e| BillingError::Unavailable {
                        rule: "plugins".into(),
                        message: e.to_string(),
                    })?;
            let assigned = registry.billing_rules.get(request.resource_id);
            let plugin = self
                .host
                .pick(
                    &registry,
                    PluginKind::Billing,
                    assigned.map(|(id, _)| id.as_str()),
                )
                .map_err(|message| BillingError::Unavailable {
                    rule: assigned.map_or("default billing".into(), |(id, _)| id.clone()),
                    message,
                })?;
            let Some(plugin) = plugin else {
                return self.native.charge(request).await;
            };
            let rule = format!("plugin {}@{}", plugin.id(), plugin.version());
            let config = assigned.map_or_else(
                || self.host.default_billing_config().to_owned(),
                |(_, c)| c.clone(),
            );
            let trade = Trade {
                confirm_id: request.confirm_id.to_owned(),
                buyer: request.buyer.to_owned(),
                seller: request.seller.to_owned(),
                resource_id: request.registration_id.to_owned(),
                data_id: request.data_id.to_owned(),
                resource_kind: resource_kind(request),
                data_type: request.data_type.to_owned(),
                free: request.free,
                price: request.list_price.minor(),
                currency: request.currency.to_owned(),
                at_ms: request.at_ms,
                config,
            };
            let digest = input_digest(&trade);
            let started = Instant::now();
            let result = plugin.charge_trade(trade).await;
            let record = |outcome: &'static str, error: Option<String>, fuel: Option<u64>| {
                self.host.record_call(
                    &plugin,
                    request.buyer,
                    request.confirm_id,
                    digest.clone(),
                    Outcome {
                        outcome,
                        error,
                        fuel_used: fuel,
                        duration: started.elapsed(),
                        operation: "charge-trade",
                    },
                )
            };
            let charge = match result {
                Ok(Call {
                    value: Ok(charge),
                    fuel_used,
                    ..
                }) => {
                    let charge = Charge {
                        amount: Money::from_minor(charge.amount),
                        platform_fee: Money::from_minor(charge.platform_fee),
                        provider_share: Money::from_minor(charge.provider_share),
                        line_items: charge
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
                        return Err(e);
                    }
                    record("ok", None, fuel_used);
                    charge
                }
                Ok(Call {
                    value: Err(e),
                    fuel_used,
                    ..
                }) => {
                    let message = plugin_error_text(&e);
                    record("rejected", Some(message.clone()), fuel_used);
                    return Err(BillingError::Failed { rule, message });
                }
                Err(PluginError { kind, .. }) => {
                    record("failed", Some(kind.to_string()), None);
                    return Err(BillingError::Failed {
                        rule,
                        message: kind.to_string(),
                    });
                }
            };
            tracing::debug!(%rule, seconds = elapsed_secs(started), "charged by plugin");
            Ok(Billed { charge, rule })
        })
    }
}
