//! Plugin management (operators): install signed packages, enable, disable, activate a
//! version, choose defaults and per-publication billing rules, call a plugin directly, and read
//! the audit trail of calls.

use std::time::Instant;

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method};
use axum::routing::{get, post, put};
use liutong_plugin_runtime::{Call, PluginKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::delivery::{OCTET_STREAM, media_essence};
use super::error::{ApiError, ApiResult, Data, ErrorCode};
use super::extract::{Auth, ValidJson, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::{DomainError, Role};
use crate::plugins::billing::{Outcome, input_digest};
use crate::plugins::{Installed, MAX_PACKAGE_BYTES, PluginView};
use crate::store::plugins::{PluginCallFilter, PluginCallRow};

#[derive(Deserialize)]
struct PluginRef {
    plugin: String,
}

#[derive(Deserialize)]
struct Activate {
    plugin: String,
    version: String,
}

#[derive(Deserialize)]
struct SetDefault {
    kind: String,
    plugin: String,
}

#[derive(Deserialize)]
struct BillingRule {
    #[serde(rename = "registrationID")]
    registration_id: String,
    #[serde(rename = "dataID")]
    data_id: Option<String>,
    plugin: String,
    #[serde(default)]
    config: Option<Value>,
}

#[derive(Deserialize)]
struct CallRequest {
    plugin: String,
    operation: String,
    input: Value,
}

#[derive(Deserialize)]
struct CallsQuery {
    plugin: Option<String>,
    outcome: Option<String>,
    limit: Option<String>,
    offset: Option<String>,
}

request_schemas! {
    PluginRef => "admin.plugins.ref.json",
    Activate => "admin.plugins.activate.json",
    SetDefault => "admin.plugins.default.json",
    BillingRule => "admin.billingRule.json",
    CallRequest => "admin.plugins.call.json",
    CallsQuery => "admin.pluginCalls.json",
}

async fn install(
    State(app): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Installed> {
    // Refuse before reading a byte: only operators upload, and only packages.
    caller.require_role(Role::Operator)?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid"))
        .unwrap_or_default();
    if media_essence(content_type) != OCTET_STREAM {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {OCTET_STREAM} (the .ltpkg file), not '{content_type}'"),
        ));
    }
    let bytes = to_bytes(body, MAX_PACKAGE_BYTES).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a plugin package may have at most {MAX_PACKAGE_BYTES} bytes"),
        )
    })?;
    Ok(Data(app.plugins.install(&caller, &bytes).await?))
}

async fn list(State(app): State<AppState>, Auth(caller): Auth) -> ApiResult<Value> {
    let plugins: Vec<PluginView> = app.plugins.list(&caller).await?;
    Ok(Data(json!({ "plugins": plugins })))
}

async fn enable(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<PluginRef>,
) -> ApiResult<Value> {
    app.plugins.set_enabled(&caller, &req.plugin, true).await?;
    Ok(Data(json!({ "plugin": req.plugin, "enabled": true })))
}

async fn disable(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<PluginRef>,
) -> ApiResult<Value> {
    app.plugins.set_enabled(&caller, &req.plugin, false).await?;
    Ok(Data(json!({ "plugin": req.plugin, "enabled": false })))
}

async fn activate(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<Activate>,
) -> ApiResult<Value> {
    app.plugins
        .activate(&caller, &req.plugin, &req.version)
        .await?;
    Ok(Data(
        json!({ "plugin": req.plugin, "activeVersion": req.version }),
    ))
}

async fn set_default(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<SetDefault>,
) -> ApiResult<Value> {
    app.plugins
        .set_default(&caller, &req.kind, &req.plugin)
        .await?;
    Ok(Data(json!({ "kind": req.kind, "plugin": req.plugin })))
}

async fn set_billing_rule(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<BillingRule>,
) -> ApiResult<Value> {
    let config = req.config.unwrap_or_else(|| json!({}));
    app.plugins
        .set_billing_rule(
            &caller,
            &req.registration_id,
            req.data_id.as_deref(),
            &req.plugin,
            &config,
        )
        .await?;
    Ok(Data(json!({
        "registrationID": req.registration_id,
        "dataID": req.data_id,
        "plugin": req.plugin,
        "config": config,
    })))
}

fn input_field<T: serde::de::DeserializeOwned>(
    input: &Value,
    name: &str,
) -> Result<T, DomainError> {
    let value = input
        .get(name)
        .ok_or_else(|| DomainError::invalid(&format!("/input/{name}"), "is required"))?;
    serde_json::from_value(value.clone())
        .map_err(|e| DomainError::invalid(&format!("/input/{name}"), e.to_string()))
}

/// What a direct call answers: the plugin's own result (its value or its typed error), what
/// it cost, and which version ran.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallView {
    plugin: String,
    version: String,
    result: Value,
    fuel_used: Option<u64>,
    duration_us: u64,
}

async fn call(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<CallRequest>,
) -> ApiResult<CallView> {
    caller.require_role(Role::Operator)?;
    let registry = app.plugins.refresh(false).await?;
    let plugin = app
        .plugins
        .pick(&registry, kind_of(&req.operation), Some(&req.plugin))
        .map_err(DomainError::NotFound)?
        .ok_or_else(|| DomainError::NotFound(format!("no plugin '{}'", req.plugin)))?;
    let wanted = kind_of(&req.operation);
    if plugin.kind().as_str() != wanted {
        return Err(DomainError::invalid(
            "/operation",
            format!(
                "plugin '{}' is a {} plugin; '{}' is an operation of {wanted} plugins",
                req.plugin,
                plugin.kind(),
                req.operation
            ),
        )
        .into());
    }
    let started = Instant::now();
    // Each arm: the digest of the input, then the call as (result JSON, outcome, fuel).
    let (digest, result) = match req.operation.as_str() {
        "charge-trade" => {
            let trade: liutong_plugin_runtime::billing::Trade = input_field(&req.input, "trade")?;
            let digest = input_digest(&trade);
            (digest, plugin.charge_trade(trade).await.map(to_json))
        }
        "charge-usage" => {
            let usage: liutong_plugin_runtime::billing::Usage = input_field(&req.input, "usage")?;
            let digest = input_digest(&usage);
            (digest, plugin.charge_usage(usage).await.map(to_json))
        }
        "evaluate" => {
            let policy: liutong_plugin_runtime::policy::UsagePolicy =
                input_field(&req.input, "policy")?;
            let request: liutong_plugin_runtime::policy::AccessRequest =
                input_field(&req.input, "request")?;
            let digest = input_digest(&(&policy, &request));
            (digest, plugin.evaluate(policy, request).await.map(to_json))
        }
        _ => {
            let publication: liutong_plugin_runtime::adapter::Publication =
                input_field(&req.input, "publication")?;
            let invocation: liutong_plugin_runtime::adapter::Invocation =
                input_field(&req.input, "invocation")?;
            let digest = input_digest(&(&publication, &invocation));
            (
                digest,
                plugin.invoke(publication, invocation).await.map(to_json),
            )
        }
    };
    let record = |outcome: &'static str, error: Option<String>, fuel: Option<u64>| {
        app.plugins.record_call(
            &plugin,
            &caller.username,
            "admin call",
            digest.clone(),
            Outcome {
                outcome,
                error,
                fuel_used: fuel,
                duration: started.elapsed(),
                operation: &req.operation,
            },
        )
    };
    match result {
        Ok((value, rejected, fuel_used, duration)) => {
            let outcome = if rejected { "rejected" } else { "ok" };
            let error = rejected.then(|| value.to_string());
            record(outcome, error, fuel_used);
            Ok(Data(CallView {
                plugin: plugin.id().to_owned(),
                version: plugin.version().to_string(),
                result: value,
                fuel_used,
                duration_us: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            }))
        }
        Err(e) => {
            record("failed", Some(e.kind.to_string()), None);
            Err(DomainError::PluginFailed(e.to_string()).into())
        }
    }
}

fn kind_of(operation: &str) -> &'static str {
    match operation {
        "charge-trade" | "charge-usage" => PluginKind::Billing.as_str(),
        "evaluate" => PluginKind::Policy.as_str(),
        _ => PluginKind::Adapter.as_str(),
    }
}

/// A call's value as JSON: `{"ok": …}` or `{"err": …}` (the plugin's typed error), whether it
/// was an error, and its cost.
fn to_json<T: Serialize, E: Serialize>(
    call: Call<Result<T, E>>,
) -> (Value, bool, Option<u64>, std::time::Duration) {
    let (value, rejected) = match &call.value {
        Ok(v) => (json!({ "ok": v }), false),
        Err(e) => (json!({ "err": e }), true),
    };
    (value, rejected, call.fuel_used, call.duration)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CallRecordView {
    id: String,
    at: String,
    plugin: String,
    version: String,
    component_sha256: String,
    kind: String,
    operation: String,
    caller: String,
    subject: String,
    input_sha256: String,
    outcome: String,
    error: Option<String>,
    fuel_used: Option<i64>,
    duration_us: i64,
}

impl From<PluginCallRow> for CallRecordView {
    fn from(r: PluginCallRow) -> Self {
        CallRecordView {
            id: r.id,
            at: crate::domain::timefmt::to_rfc3339(crate::domain::timefmt::from_millis(r.at)),
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

fn query_number(
    field: &str,
    value: Option<&str>,
    default: i64,
    max: i64,
) -> Result<i64, DomainError> {
    let Some(text) = value else {
        return Ok(default);
    };
    let n: i64 = text
        .parse()
        .map_err(|_| DomainError::invalid(&format!("/{field}"), "must be a whole number"))?;
    if n > max {
        return Err(DomainError::invalid(
            &format!("/{field}"),
            format!("must be at most {max}"),
        ));
    }
    Ok(n)
}

async fn calls(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(q): ValidQuery<CallsQuery>,
) -> ApiResult<Value> {
    caller.require_role(Role::Operator)?;
    let limit = query_number("limit", q.limit.as_deref(), 50, 500)?;
    if limit == 0 {
        return Err(DomainError::invalid("/limit", "must be at least 1").into());
    }
    let offset = query_number("offset", q.offset.as_deref(), 0, i64::from(i32::MAX))?;
    // Calls are written in the background; make sure this reader sees every one made so far.
    app.plugins.audit().flush().await;
    let (rows, total) = app
        .store
        .plugin_calls(&PluginCallFilter {
            plugin_id: q.plugin,
            outcome: q.outcome,
            limit,
            offset,
        })
        .await
        .map_err(DomainError::from)?;
    let calls: Vec<CallRecordView> = rows.into_iter().map(Into::into).collect();
    Ok(Data(json!({
        "total": total,
        "limit": limit,
        "offset": offset,
        "calls": calls,
    })))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, input| RouteDoc {
        method,
        path,
        summary,
        clause: "",
        tag: "plugins",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/plugins",
                "Install a signed plugin package (.ltpkg); its version becomes active for new calls",
                Input::Binary,
            ),
            handler: post(install).layer(axum::extract::DefaultBodyLimit::disable()),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/admin/plugins",
                "Installed plugins, their versions, limits, capabilities and load status",
                Input::None,
            ),
            handler: get(list),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/plugins/enable",
                "Let a plugin serve calls again",
                Input::Body("admin.plugins.ref.json"),
            ),
            handler: post(enable),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/plugins/disable",
                "Stop a plugin from serving new calls",
                Input::Body("admin.plugins.ref.json"),
            ),
            handler: post(disable),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/plugins/activate",
                "Make an installed version the active one (roll forward or back)",
                Input::Body("admin.plugins.activate.json"),
            ),
            handler: post(activate),
        },
        Route {
            doc: doc(
                Method::PUT,
                "/v1/admin/plugins/default",
                "Choose the default plugin of a kind",
                Input::Body("admin.plugins.default.json"),
            ),
            handler: put(set_default),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/plugins/call",
                "Call a plugin directly (a dry run, audited)",
                Input::Body("admin.plugins.call.json"),
            ),
            handler: post(call),
        },
        Route {
            doc: doc(
                Method::PUT,
                "/v1/admin/billing-rules",
                "Choose the billing plugin and its configuration for one publication",
                Input::Body("admin.billingRule.json"),
            ),
            handler: put(set_billing_rule),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/admin/plugin-calls",
                "The audit trail of plugin calls, newest first",
                Input::Query("admin.pluginCalls.json"),
            ),
            handler: get(calls),
        },
    ]
}
