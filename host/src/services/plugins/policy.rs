//! Access decisions through policy plugins: the plugin chosen for the publication (or the
//! default policy plugin), called in the sandbox with the policy and its current counters,
//! audited, and its verdict checked. Anything but a well-formed verdict is a denial, never an
//! allowance.

use std::time::Instant;

use liutong_plugin_runtime::policy::{
    AccessRequest as WitRequest, PolicyError, Principal, UsagePolicy, UseScene as WitScene,
};
use liutong_plugin_runtime::{Call, PluginError, PluginKind};
use serde_json::Value;

use super::PluginHost;
use super::billing::{Outcome, input_digest};
use crate::domain::policy::{AccessRequest, CounterChange, Policy, check_verdict};

/// The plugin that decided: id and version.
pub type PluginVersion = (String, String);

/// What the policy plugin made of an access.
#[derive(Debug, Clone, PartialEq)]
pub enum Evaluation {
    /// A well-formed verdict; `decrements` `(scene, uses)` are checked against the counters
    /// the plugin was given and sorted in lock order.
    Verdict {
        plugin: PluginVersion,
        allowed: bool,
        reasons: Vec<String>,
        decrements: Vec<(String, i64)>,
    },
    /// No verdict: no plugin could be called, or it failed, refused or answered garbage. The
    /// access is denied for `reason`.
    Failed {
        plugin: Option<PluginVersion>,
        reason: String,
    },
}

/// The JSON text of a standard `json` field; `None` for absent or `null`.
fn json_text(value: &Option<Value>) -> Option<String> {
    value
        .as_ref()
        .filter(|v| !v.is_null())
        .map(Value::to_string)
}

/// The policy as the WIT describes it, with its counters as read.
fn usage_policy(policy: &Policy, config: String) -> UsagePolicy {
    UsagePolicy {
        policy_id: policy.id.to_string(),
        policy_name: policy.name.clone(),
        data_id: policy.data_id.clone(),
        rel_users: policy
            .rel_users
            .iter()
            .map(|u| Principal {
                user_id: u.user_id.clone(),
                user_name: u.user_name.clone(),
                is_group: u.is_group == 1,
            })
            .collect(),
        start_ms: Some(policy.starts_at),
        // The WIT's end is inclusive; a policy's endDate, like a license's, is exclusive.
        end_ms: Some(policy.ends_at - 1),
        use_scenes: policy
            .use_scenes
            .iter()
            .map(|s| {
                let counter = policy.counters.iter().find(|c| c.scene == s.use_sence);
                WitScene {
                    scene: s.use_sence.clone(),
                    view_rows_range: json_text(&s.view_rows_range),
                    view_page_range: json_text(&s.view_page_range),
                    counts: counter.map(|c| c.counts),
                    remaining_counts: counter.map(|c| c.remaining),
                    env_hard: json_text(&s.env_hard),
                    visit_area: json_text(&s.visit_area),
                    ai_frame: json_text(&s.ai_frame),
                    env_soft: json_text(&s.env_soft),
                    cp_center: json_text(&s.cp_center),
                }
            })
            .collect(),
        config,
    }
}

fn access_request(request: &AccessRequest, at_ms: i64) -> WitRequest {
    WitRequest {
        user_id: request.user_id.clone(),
        groups: request.groups.clone(),
        scene: request.use_sence.clone(),
        uses: request.uses,
        at_ms,
        view_rows: json_text(&request.view_rows),
        view_pages: json_text(&request.view_pages),
        env_hard: json_text(&request.env_hard),
        visit_area: json_text(&request.visit_area),
        ai_frame: json_text(&request.ai_frame),
        env_soft: json_text(&request.env_soft),
        cp_center: json_text(&request.cp_center),
    }
}

impl PluginHost {
    /// Asks the policy plugin of `policy`'s publication (else the default policy plugin)
    /// whether `request` at `at_ms` is allowed. `caller` is recorded in the audit trail.
    pub async fn evaluate_policy(
        &self,
        policy: &Policy,
        request: &AccessRequest,
        at_ms: i64,
        caller: &str,
    ) -> Evaluation {
        let failed =
            |plugin: Option<PluginVersion>, reason: String| Evaluation::Failed { plugin, reason };
        let registry = match self.refresh(false).await {
            Ok(r) => r,
            Err(e) => return failed(None, format!("plugin: the plugins are unavailable: {e}")),
        };
        let assigned = registry.policy_rules.get(&policy.resource_id);
        let plugin = match self.pick(
            &registry,
            PluginKind::Policy,
            assigned.map(|(id, _)| id.as_str()),
        ) {
            Ok(Some(p)) => p,
            Ok(None) => {
                return failed(
                    None,
                    format!(
                        "plugin: no policy plugin is chosen for dataID '{}' and there is no \
                         default policy plugin",
                        policy.data_id
                    ),
                );
            }
            Err(message) => return failed(None, format!("plugin: {message}")),
        };
        let who = (plugin.id().to_owned(), plugin.version().to_string());
        let name = format!("policy plugin {}@{}", who.0, who.1);
        let config = assigned.map_or_else(|| "{}".to_owned(), |(_, c)| c.clone());
        let usage = usage_policy(policy, config);
        let wit_request = access_request(request, at_ms);
        let digest = input_digest(&(&usage, &wit_request));
        let started = Instant::now();
        let result = plugin.evaluate(usage, wit_request).await;
        let record = |outcome: &'static str, error: Option<String>, fuel: Option<u64>| {
            self.record_call(
                &plugin,
                caller,
                policy.id.as_str(),
                digest.clone(),
                Outcome {
                    outcome,
                    error,
                    fuel_used: fuel,
                    duration: started.elapsed(),
                    operation: "evaluate",
                },
            )
        };
        match result {
            Ok(Call {
                value: Ok(verdict),
                fuel_used,
                ..
            }) => {
                let changes: Vec<CounterChange> = verdict
                    .counter_changes
                    .iter()
                    .map(|c| CounterChange {
                        scene: c.scene.clone(),
                        before: c.remaining_before,
                        after: c.remaining_after,
                    })
                    .collect();
                match check_verdict(&policy.counters, verdict.allowed, &changes) {
                    Ok(decrements) => {
                        record("ok", None, fuel_used);
                        let mut reasons = verdict.reasons;
                        if !verdict.allowed && reasons.is_empty() {
                            reasons.push(format!("{name} denied the access without a reason"));
                        }
                        Evaluation::Verdict {
                            plugin: who,
                            allowed: verdict.allowed,
                            reasons,
                            decrements,
                        }
                    }
                    Err(problem) => {
                        let reason =
                            format!("plugin: {name} returned a malformed verdict: {problem}");
                        record("failed", Some(reason.clone()), fuel_used);
                        failed(Some(who), reason)
                    }
                }
            }
            Ok(Call {
                value: Err(e),
                fuel_used,
                ..
            }) => {
                let reason = match e {
                    PolicyError::InvalidPolicy(m) => format!("invalid-policy: {m}"),
                    PolicyError::InvalidRequest(m) => format!("invalid-request: {m}"),
                };
                record("rejected", Some(reason.clone()), fuel_used);
                failed(Some(who), reason)
            }
            Err(PluginError { kind, .. }) => {
                record("failed", Some(kind.to_string()), None);
                failed(Some(who), format!("plugin: {name} {kind}"))
            }
        }
    }
}
