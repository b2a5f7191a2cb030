//! A.3: confirmation, settlement and licenses.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::error::{ApiResult, Data};
use super::extract::{Auth, ValidJson, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::trading::{
    ConfirmDemand, ConfirmRef, ConfirmationView, SettlementView, UpdateLicenses,
};

/// A.3.2 and A.3.4 take `confirmID` in the query string, A.3.3 in the body; one type each so
/// each request has its own schema.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct SettlementQuery(pub ConfirmRef);

#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct SettleBody(pub ConfirmRef);

request_schemas! {
    ConfirmDemand => "confirmDemand.json",
    ConfirmRef => "queryDemandForSettlement.json",
    SettleBody => "settlement.json",
    SettlementQuery => "querySettlement.json",
    UpdateLicenses => "updateLicenses.json",
}

async fn confirm_demand(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<ConfirmDemand>,
) -> ApiResult<ConfirmationView> {
    Ok(Data(app.services.trading.confirm(&caller, &req).await?))
}

async fn query_demand_for_settlement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(r): ValidQuery<ConfirmRef>,
) -> ApiResult<ConfirmationView> {
    Ok(Data(
        app.services
            .trading
            .query_confirmation(&caller, &r.confirm_id)
            .await?,
    ))
}

async fn settlement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(SettleBody(r)): ValidJson<SettleBody>,
) -> ApiResult<SettlementView> {
    Ok(Data(
        app.services.trading.settle(&caller, &r.confirm_id).await?,
    ))
}

async fn query_settlement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(SettlementQuery(r)): ValidQuery<SettlementQuery>,
) -> ApiResult<SettlementView> {
    Ok(Data(
        app.services
            .trading
            .query_settlement(&caller, &r.confirm_id)
            .await?,
    ))
}

async fn update_licenses(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<UpdateLicenses>,
) -> ApiResult<Value> {
    let licenses = app.services.trading.update_licenses(&caller, &req).await?;
    Ok(Data(json!({ "licenses": licenses })))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, clause, input| RouteDoc {
        method,
        path,
        summary,
        clause,
        tag: "trading",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/confirmDemand",
                "Confirm a resource for a demand (binds and locks it)",
                "A.3.1",
                Input::Body("confirmDemand.json"),
            ),
            handler: post(confirm_demand),
        },
        Route {
            doc: doc(
                Method::GET,
                "/queryDemandForSettlement",
                "Query a confirmation",
                "A.3.2",
                Input::Query("queryDemandForSettlement.json"),
            ),
            handler: get(query_demand_for_settlement),
        },
        Route {
            doc: doc(
                Method::POST,
                "/settlement",
                "Settle a confirmation: pay, get the license and the delivery key",
                "A.3.3",
                Input::Body("settlement.json"),
            ),
            handler: post(settlement),
        },
        Route {
            doc: doc(
                Method::GET,
                "/querySettlement",
                "Query a settlement",
                "A.3.4",
                Input::Query("querySettlement.json"),
            ),
            handler: get(query_settlement),
        },
        Route {
            doc: doc(
                Method::POST,
                "/updateLicenses",
                "Re-issue every live license of a resource",
                "A.3.8",
                Input::Body("updateLicenses.json"),
            ),
            handler: post(update_licenses),
        },
    ]
}
