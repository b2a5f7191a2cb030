//! The operator's direct plugin calls (a dry run, audited) and the audit trail of calls.

use std::time::Instant;

use liutong_plugin_runtime::Call;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::billing::{Outcome, input_digest};
use super::{PluginHost, unknown_plugin};
use crate::domain::plugins::{
    CallRequest, CallView, CallsPage, CallsQuery, Operation, PluginCallFilter,
};
use crate::domain::{Caller, Role};
use crate::services::{ServiceError, page_number};

/// Audit pages hold at most this many calls; 50 when not asked.
const MAX_CALLS_PAGE: i64 = 500;
const DEFAULT_CALLS_PAGE: i64 = 50;

/// A call's value as JSON (`{"ok": …}` or `{"err": …}`, the plugin's typed error), whether
/// the plugin refused, and its cost.
struct Answer {
    value: Value,
    rejected: bool,
    fuel_used: Option<u64>,
    duration: std::time::Duration,
}

fn answer<T: Serialize, E: Serialize>(call: Call<Result<T, E>>) -> Answer {
    let (value, rejected) = match &call.value {
        Ok(v) => (json!({ "ok": v }), false),
        Err(e) => (json!({ "err": e }), true),
    };
    Answer {
        value,
        rejected,
        fuel_used: call.fuel_used,
        duration: call.duration,
    }
}

/// One named argument of the call's `input`.
fn argument<T: DeserializeOwned>(input: &Value, name: &str) -> Result<T, ServiceError> {
    let value = input
        .get(name)
        .ok_or_else(|| ServiceError::invalid(&format!("/input/{name}"), "is required"))?;
    serde_json::from_value(value.clone())
        .map_err(|e| ServiceError::invalid(&format!("/input/{name}"), e.to_string()))
}

impl PluginHost {
    /// Calls a plugin's active version directly with the operator's input (operators). Nothing
    /// but the audit record is written.
    pub async fn call_directly(
        &self,
        caller: &Caller,
        req: CallRequest,
    ) -> Result<CallView, ServiceError> {
        caller.require_role(Role::Operator)?;
        let wanted = req.operation.kind();
        let registry = self.refresh(false).await?;
        let plugin = self
            .pick(&registry, wanted, Some(&req.plugin))
            .map_err(ServiceError::not_found)?
            .ok_or_else(|| unknown_plugin(&req.plugin))?;
        if plugin.kind() != wanted {
            return Err(ServiceError::invalid(
                "/operation",
                format!(
                    "plugin '{}' is a {} plugin; '{}' is an operation of {wanted} plugins",
                    req.plugin,
                    plugin.kind(),
                    req.operation.as_str()
                ),
            ));
        }
        let started = Instant::now();
        let input = &req.input;
        let (digest, result) = match req.operation {
            Operation::ChargeTrade => {
                let trade: liutong_plugin_runtime::billing::Trade = argument(input, "trade")?;
                (
                    input_digest(&trade),
                    plugin.charge_trade(trade).await.map(answer),
                )
            }
            Operation::ChargeUsage => {
                let usage: liutong_plugin_runtime::billing::Usage = argument(input, "usage")?;
                (
                    input_digest(&usage),
                    plugin.charge_usage(usage).await.map(answer),
                )
            }
            Operation::Evaluate => {
                let policy: liutong_plugin_runtime::policy::UsagePolicy =
                    argument(input, "policy")?;
                let request: liutong_plugin_runtime::policy::AccessRequest =
                    argument(input, "request")?;
                let digest = input_digest(&(&policy, &request));
                (digest, plugin.evaluate(policy, request).await.map(answer))
            }
            Operation::Invoke => {
                let publication: liutong_plugin_runtime::adapter::Publication =
                    argument(input, "publication")?;
                let invocation: liutong_plugin_runtime::adapter::Invocation =
                    argument(input, "invocation")?;
                let digest = input_digest(&(&publication, &invocation));
                (
                    digest,
                    plugin.invoke(publication, invocation).await.map(answer),
                )
            }
        };
        let record = |outcome: &'static str, error: Option<String>, fuel_used: Option<u64>| {
            self.record_call(
                &plugin,
                &caller.username,
                "admin call",
                digest.clone(),
                Outcome {
                    outcome,
                    error,
                    fuel_used,
                    duration: started.elapsed(),
                    operation: req.operation.as_str(),
                },
            )
        };
        match result {
            Ok(answer) => {
                let outcome = if answer.rejected { "rejected" } else { "ok" };
                record(
                    outcome,
                    answer.rejected.then(|| answer.value.to_string()),
                    answer.fuel_used,
                );
                Ok(CallView {
                    plugin: plugin.id().to_owned(),
                    version: plugin.version().to_string(),
                    result: answer.value,
                    fuel_used: answer.fuel_used,
                    duration_us: u64::try_from(answer.duration.as_micros()).unwrap_or(u64::MAX),
                })
            }
            Err(e) => {
                record("failed", Some(e.kind.to_string()), None);
                Err(ServiceError::PluginFailed(e.to_string()))
            }
        }
    }

    /// The audit trail of plugin calls, newest first (operators).
    pub async fn calls(&self, caller: &Caller, q: CallsQuery) -> Result<CallsPage, ServiceError> {
        caller.require_role(Role::Operator)?;
        let limit = page_number(
            "limit",
            q.limit.as_deref(),
            DEFAULT_CALLS_PAGE,
            (1, MAX_CALLS_PAGE),
        )?;
        let offset = page_number("offset", q.offset.as_deref(), 0, (0, i64::from(i32::MAX)))?;
        // Calls are written in the background; make sure this reader sees every one made so far.
        self.audit().flush().await;
        let (rows, total) = self
            .inner
            .store
            .plugin_calls(&PluginCallFilter {
                plugin_id: q.plugin,
                outcome: q.outcome,
                limit,
                offset,
            })
            .await?;
        Ok(CallsPage {
            total,
            limit,
            offset,
            calls: rows.into_iter().map(Into::into).collect(),
        })
    }
}
