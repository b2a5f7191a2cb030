//! Accounts and tokens (compute-provider access §1; the standard's `X-Auth-Token`).

use super::error::{ApiResult, Data};
use super::extract::{ValidJson, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::accounts::{IssuedToken, RegisterAccount, Registered, TokenRequest};
use axum::extract::State;
use axum::http::Method;
use axum::routing::post;

request_schemas! {
    RegisterAccount => "account.register.json",
    TokenRequest => "account.token.json",
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
    ]
}
