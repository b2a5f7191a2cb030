//! Plugin management (operators): install signed packages, enable, disable, activate a
//! version, choose defaults and per-publication billing rules, call a plugin directly, and read
//! the audit trail of calls.

use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Method};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use super::delivery::{OCTET_STREAM, media_essence};
use super::error::{ApiError, ApiResult, Data, ErrorCode};
use super::extract::{Operator, ValidJson, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::plugins::{
    Activate, CallRequest, CallView, CallsPage, CallsQuery, Installed, PluginRef,
    ResourceRuleRequest, SetDefault,
};
use crate::services::plugins::MAX_PACKAGE_BYTES;

/// The billing and policy rules share one shape; one type each so each has its own schema.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct BillingRuleBody(pub ResourceRuleRequest);

#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct PolicyRuleBody(pub ResourceRuleRequest);

request_schemas! {
    PluginRef => "admin.plugins.ref.json",
    Activate => "admin.plugins.activate.json",
    SetDefault => "admin.plugins.default.json",
    BillingRuleBody => "admin.billingRule.json",
    PolicyRuleBody => "admin.policyRule.json",
    CallRequest => "admin.plugins.call.json",
    CallsQuery => "admin.pluginCalls.json",
}

async fn install(
    State(app): State<AppState>,
    Operator(caller): Operator,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Installed> {
    // Operators only (checked by the extractor), and only packages: refused before a byte is
    // read.
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
    Ok(Data(app.services.plugins.install(&caller, &bytes).await?))
}

async fn list(State(app): State<AppState>, Operator(caller): Operator) -> ApiResult<Value> {
    let plugins = app.services.plugins.list(&caller).await?;
    Ok(Data(json!({ "plugins": plugins })))
}

async fn enable(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(req): ValidJson<PluginRef>,
) -> ApiResult<Value> {
    app.services
        .plugins
        .set_enabled(&caller, &req.plugin, true)
        .await?;
    Ok(Data(json!({ "plugin": req.plugin, "enabled": true })))
}

async fn disable(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(req): ValidJson<PluginRef>,
) -> ApiResult<Value> {
    app.services
        .plugins
        .set_enabled(&caller, &req.plugin, false)
        .await?;
    Ok(Data(json!({ "plugin": req.plugin, "enabled": false })))
}

async fn activate(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(req): ValidJson<Activate>,
) -> ApiResult<Value> {
    app.services
        .plugins
        .activate(&caller, &req.plugin, &req.version)
        .await?;
    Ok(Data(
        json!({ "plugin": req.plugin, "activeVersion": req.version }),
    ))
}

async fn set_default(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(req): ValidJson<SetDefault>,
) -> ApiResult<Value> {
    app.services
        .plugins
        .set_default(&caller, req.kind, &req.plugin)
        .await?;
    Ok(Data(json!({ "kind": req.kind, "plugin": req.plugin })))
}

async fn set_billing_rule(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(BillingRuleBody(req)): ValidJson<BillingRuleBody>,
) -> ApiResult<Value> {
    Ok(Data(
        app.services.plugins.set_billing_rule(&caller, req).await?,
    ))
}

async fn set_policy_rule(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(PolicyRuleBody(req)): ValidJson<PolicyRuleBody>,
) -> ApiResult<Value> {
    Ok(Data(
        app.services.plugins.set_policy_rule(&caller, req).await?,
    ))
}

async fn call(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(req): ValidJson<CallRequest>,
) -> ApiResult<CallView> {
    Ok(Data(
        app.services.plugins.call_directly(&caller, req).await?,
    ))
}

async fn calls(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidQuery(q): ValidQuery<CallsQuery>,
) -> ApiResult<CallsPage> {
    Ok(Data(app.services.plugins.calls(&caller, q).await?))
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
                Method::PUT,
                "/v1/admin/policy-rules",
                "Choose the policy plugin and its configuration for one controlled publication",
                Input::Body("admin.policyRule.json"),
            ),
            handler: put(set_policy_rule),
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
