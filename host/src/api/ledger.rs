//! Money: operator credits, balances and the ledger audit.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use serde::Serialize;

use super::error::{ApiResult, Data};
use super::extract::{Auth, ValidJson, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::ledger::{CreditReceipt, CreditRequest, LedgerAudit};
use crate::domain::money::minor_to_price;

request_schemas! {
    CreditRequest => "admin.credit.json",
}

#[derive(Serialize)]
struct Balance {
    balance: f64,
    currency: String,
}

async fn credit(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<CreditRequest>,
) -> ApiResult<CreditReceipt> {
    Ok(Data(app.ledger.credit(&caller, &req).await?))
}

async fn balance(State(app): State<AppState>, Auth(caller): Auth) -> ApiResult<Balance> {
    let minor = app.ledger.balance(&caller).await?;
    Ok(Data(Balance {
        balance: minor_to_price(minor),
        currency: app.config.currency.clone(),
    }))
}

async fn audit(State(app): State<AppState>, Auth(caller): Auth) -> ApiResult<LedgerAudit> {
    Ok(Data(app.ledger.audit(&caller).await?))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, input| RouteDoc {
        method,
        path,
        summary,
        clause: "",
        tag: "ledger",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/accounts/credit",
                "Credit an account (operators; idempotent by reference)",
                Input::Body("admin.credit.json"),
            ),
            handler: post(credit),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/account/balance",
                "The caller's balance",
                Input::None,
            ),
            handler: get(balance),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/admin/ledger/audit",
                "Check the ledger's invariants (operators)",
                Input::None,
            ),
            handler: get(audit),
        },
    ]
}
