//! Accounts and tokens (compute-provider access §1; the standard's `X-Auth-Token`).

use axum::extract::State;
use axum::http::Method;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use super::error::{ApiResult, Data};
use super::extract::{ValidJson, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::Role;
use crate::domain::timefmt::{from_millis, to_rfc3339};

#[derive(Debug, Deserialize)]
pub struct RegisterAccount {
    pub username: String,
    pub password: String,
    pub phone: String,
}

#[derive(Debug, Deserialize)]
pub struct TokenRequest {
    pub username: String,
    pub password: String,
}

request_schemas! {
    RegisterAccount => "account.register.json",
    TokenRequest => "account.token.json",
}

#[derive(Serialize)]
struct Registered {
    #[serde(rename = "userId")]
    user_id: String,
}

#[derive(Serialize)]
struct Token {
    token: String,
    #[serde(rename = "expiresAt")]
    expires_at: String,
}

/// Self-registration creates enterprise accounts; operator and data-space accounts are created
/// by an operator with `liutong account create`.
async fn register(
    State(app): State<AppState>,
    ValidJson(req): ValidJson<RegisterAccount>,
) -> ApiResult<Registered> {
    let user_id = app
        .accounts
        .register(
            &req.username,
            &req.password,
            Some(&req.phone),
            Role::Enterprise,
        )
        .await?;
    Ok(Data(Registered { user_id }))
}

async fn token(
    State(app): State<AppState>,
    ValidJson(req): ValidJson<TokenRequest>,
) -> ApiResult<Token> {
    let issued = app
        .accounts
        .issue_token(&req.username, &req.password)
        .await?;
    Ok(Data(Token {
        token: issued.token,
        expires_at: to_rfc3339(from_millis(issued.expires_at_ms)),
    }))
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
    ]
}
