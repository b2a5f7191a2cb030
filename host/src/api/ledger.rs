//! Money: operator credits, balances and the ledger audit.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};

use super::error::{ApiResult, Data};
use super::extract::{Auth, Operator, ValidJson, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::ledger::{Balance, CreditReceipt, CreditRequest, LedgerAudit};

request_schemas! {
    CreditRequest => "admin.credit.json",
}

async fn credit(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(req): ValidJson<CreditRequest>,
) -> ApiResult<CreditReceipt> {
    Ok(Data(app.services.ledger.credit(&caller, &req).await?))
}

async fn balance(State(app): State<AppState>, Auth(caller): Auth) -> ApiResult<Balance> {
    Ok(Data(app.services.ledger.balance(&caller).await?))
}

async fn audit(State(app): State<AppState>, Operator(caller): Operator) -> ApiResult<LedgerAudit> {
    Ok(Data(app.services.ledger.audit(&caller).await?))
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
