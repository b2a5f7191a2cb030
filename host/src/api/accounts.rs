//! Accounts and tokens (compute-provider access §1; the standard's `X-Auth-Token`).

use super::error::{ApiError, ApiResult, Data};
use super::extract::{Auth, ValidJson, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::accounts::{
    ApiKeyRequest, ApiKeyView, IssuedToken, NewApiKey, RegisterAccount, Registered, TokenRequest,
};
use axum::extract::{Path, State};
use axum::http::Method;
use axum::routing::{delete, get, post};

request_schemas! {
    RegisterAccount => "account.register.json",
    TokenRequest => "account.token.json",
    ApiKeyRequest => "account.apiKeys.json",
}

async fn create_api_key(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<ApiKeyRequest>,
) -> ApiResult<NewApiKey> {
    Ok(Data(
        app.services.accounts.create_api_key(&caller, &req).await?,
    ))
}

async fn list_api_keys(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<serde_json::Value> {
    let keys: Vec<ApiKeyView> = app.services.accounts.api_keys(&caller).await?;
    Ok(Data(serde_json::json!({ "apiKeys": keys })))
}

async fn delete_api_key(
    State(app): State<AppState>,
    Auth(caller): Auth,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult<serde_json::Value> {
    let Path(key_id) = path.map_err(|e| ApiError::invalid(format!("/keyId: {e}")))?;
    app.services
        .accounts
        .delete_api_key(&caller, &key_id)
        .await?;
    Ok(Data(
        serde_json::json!({ "keyId": key_id, "deleted": true }),
    ))
}

async fn register(
    State(app): State<AppState>,
    ValidJson(req): ValidJson<RegisterAccount>,
) -> ApiResult<Registered> {
    Ok(Data(app.services.accounts.register_enterprise(&req).await?))
}

async fn token(
    State(app): State<AppState>,
    ValidJson(req): ValidJson<TokenRequest>,
) -> ApiResult<IssuedToken> {
    Ok(Data(
        app.services
            .accounts
            .issue_token(&req.username, &req.password)
            .await?,
    ))
}

pub fn routes() -> Vec<Route> {
    vec![
        Route {
            doc: RouteDoc {
                method: Method::POST,
                path: "/v1/account/register",
                summary: "Register an enterprise account",
                clause: "",
                tag: "accounts",
                auth: false,
                input: Input::Body("account.register.json"),
            },
            handler: post(register),
        },
        Route {
            doc: RouteDoc {
                method: Method::POST,
                path: "/v1/account/token",
                summary: "Exchange username and password for an X-Auth-Token",
                clause: "",
                tag: "accounts",
                auth: false,
                input: Input::Body("account.token.json"),
            },
            handler: post(token),
        },
        Route {
            doc: RouteDoc {
                method: Method::POST,
                path: "/v1/account/apiKeys",
                summary: "Create a long-lived API key for programs (shown once, stored hashed)",
                clause: "",
                tag: "accounts",
                auth: true,
                input: Input::Body("account.apiKeys.json"),
            },
            handler: post(create_api_key),
        },
        Route {
            doc: RouteDoc {
                method: Method::GET,
                path: "/v1/account/apiKeys",
                summary: "The caller's API keys (names and prefixes, never the keys)",
                clause: "",
                tag: "accounts",
                auth: true,
                input: Input::None,
            },
            handler: get(list_api_keys),
        },
        Route {
            doc: RouteDoc {
                method: Method::DELETE,
                path: "/v1/account/apiKeys/{keyId}",
                summary: "Delete one of the caller's API keys",
                clause: "",
                tag: "accounts",
                auth: true,
                input: Input::None,
            },
            handler: delete(delete_api_key),
        },
    ]
}
