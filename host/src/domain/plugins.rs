//! Plugins as the marketplace records them: installed versions, which version of a plugin id
//! is active, per-publication rules, and the audit trail of calls. (The sandbox and the plugin
//! kinds themselves are the `liutong-plugin-runtime` crate's.)

use liutong_plugin_runtime::PluginKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::timefmt::{from_millis, to_rfc3339};

/// One installed version, without its package bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledVersion {
    pub plugin_id: String,
    pub version: String,
    pub kind: PluginKind,
    pub wit_version: String,
    pub component_sha256: String,
    pub publisher: String,
    pub key_id: String,
    pub description: String,
    pub manifest: String,
    pub installed_by: String,
    pub installed_at: i64,
}

/// A plugin id: its kind, active version and whether it serves calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledPlugin {
    pub plugin_id: String,
    pub kind: PluginKind,
    pub active_version: String,
    pub enabled: bool,
    pub updated_at: i64,
}

/// The plugin chosen for one resource, with its configuration: a billing rule
/// (`resource_billing`), or the policy plugin of controlled data (`resource_policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRule {
    pub resource_id: String,
    pub plugin_id: String,
    /// JSON object text.
    pub config: String,
}

/// One plugin call, as audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCallRecord {
    pub id: String,
    pub at: i64,
    pub plugin_id: String,
    pub version: String,
    pub component_sha256: String,
    pub kind: PluginKind,
    pub operation: String,
    pub caller: String,
    pub subject: String,
    pub input_sha256: String,
    /// `ok`, `rejected` or `failed`.
    pub outcome: String,
    pub error: Option<String>,
    pub fuel_used: Option<i64>,
    pub duration_us: i64,
}

/// Which audited calls to list.
#[derive(Debug, Clone, Default)]
pub struct PluginCallFilter {
    pub plugin_id: Option<String>,
    pub outcome: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// What `GET /v1/admin/plugins` shows of one plugin.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginView {
    pub id: String,
    pub kind: PluginKind,
    pub active_version: String,
    pub enabled: bool,
    pub default: bool,
    /// `loaded`, or why the active version could not be loaded on this server.
    pub status: String,
    pub versions: Vec<PluginVersionView>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginVersionView {
    pub version: String,
    pub wit: String,
    pub description: String,
    pub component_sha256: String,
    pub publisher: String,
    pub key_id: String,
    pub installed_by: String,
    pub installed_at: String,
    pub limits: LimitsView,
    pub capabilities: CapabilitiesView,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
    pub fuel: Option<u64>,
    pub memory_bytes: usize,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapabilitiesView {
    pub http: Vec<String>,
    pub secrets: Vec<String>,
}

/// The answer to an upload.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Installed {
    pub id: String,
    pub version: String,
    pub kind: PluginKind,
    pub component_sha256: String,
    /// False when exactly this package was installed already (nothing changed).
    pub installed: bool,
    pub active: bool,
    pub compile_ms: u64,
    pub cache_hit: bool,
}

/// `POST /v1/admin/plugins/enable` and `/disable` request.
#[derive(Debug, Deserialize)]
pub struct PluginRef {
    pub plugin: String,
}

/// `POST /v1/admin/plugins/activate` request.
#[derive(Debug, Deserialize)]
pub struct Activate {
    pub plugin: String,
    pub version: String,
}

/// `PUT /v1/admin/plugins/default` request.
#[derive(Debug, Deserialize)]
pub struct SetDefault {
    pub kind: PluginKind,
    pub plugin: String,
}

/// `PUT /v1/admin/billing-rules` and `PUT /v1/admin/policy-rules` request.
#[derive(Debug, Deserialize)]
pub struct ResourceRuleRequest {
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    #[serde(rename = "dataID")]
    pub data_id: Option<String>,
    pub plugin: String,
    #[serde(default)]
    pub config: Option<Value>,
}

/// The operations a plugin can be called with directly, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Operation {
    #[serde(rename = "charge-trade")]
    ChargeTrade,
    #[serde(rename = "charge-usage")]
    ChargeUsage,
    #[serde(rename = "evaluate")]
    Evaluate,
    #[serde(rename = "invoke")]
    Invoke,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ChargeTrade => "charge-trade",
            Operation::ChargeUsage => "charge-usage",
            Operation::Evaluate => "evaluate",
            Operation::Invoke => "invoke",
        }
    }

    /// The kind of plugin that has this operation.
    pub fn kind(self) -> PluginKind {
        match self {
            Operation::ChargeTrade | Operation::ChargeUsage => PluginKind::Billing,
            Operation::Evaluate => PluginKind::Policy,
            Operation::Invoke => PluginKind::Adapter,
        }
    }
}

/// `POST /v1/admin/plugins/call` request.
#[derive(Debug, Deserialize)]
pub struct CallRequest {
    pub plugin: String,
    pub operation: Operation,
    pub input: Value,
}

/// What a direct call answers: the plugin's own result (its value or its typed error), what
/// it cost, and which version ran.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallView {
    pub plugin: String,
    pub version: String,
    pub result: Value,
    pub fuel_used: Option<u64>,
    pub duration_us: u64,
}

/// `GET /v1/admin/plugin-calls` query.
#[derive(Debug, Deserialize)]
pub struct CallsQuery {
    pub plugin: Option<String>,
    pub outcome: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// One audited call as `GET /v1/admin/plugin-calls` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecordView {
    pub id: String,
    pub at: String,
    pub plugin: String,
    pub version: String,
    pub component_sha256: String,
    pub kind: PluginKind,
    pub operation: String,
    pub caller: String,
    pub subject: String,
    pub input_sha256: String,
    pub outcome: String,
    pub error: Option<String>,
    pub fuel_used: Option<i64>,
    pub duration_us: i64,
}

impl From<PluginCallRecord> for CallRecordView {
    fn from(r: PluginCallRecord) -> Self {
        CallRecordView {
            id: r.id,
            at: to_rfc3339(from_millis(r.at)),
            plugin: r.plugin_id,
            version: r.version,
            component_sha256: r.component_sha256,
            kind: r.kind,
            operation: r.operation,
            caller: r.caller,
            subject: r.subject,
            input_sha256: r.input_sha256,
            outcome: r.outcome,
            error: r.error,
            fuel_used: r.fuel_used,
            duration_us: r.duration_us,
        }
    }
}

/// A page of the audit trail.
#[derive(Debug, Serialize)]
pub struct CallsPage {
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub calls: Vec<CallRecordView>,
}
