//! A.2: the demander side.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::error::{ApiResult, Data};
use super::extract::{Auth, ValidJson, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::demand::{DemandAction, DemandRef, PublishedDemandView, RegisterDemand};

/// A.2.4 carries the same fields as A.2.2 but has its own schema.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct RevokeDemand(pub DemandAction);

request_schemas! {
    RegisterDemand => "registerDemand.json",
    DemandAction => "publishDemand.json",
    DemandRef => "queryPublishedDemand.json",
    RevokeDemand => "revokeDemand.json",
}

async fn register_demand(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<RegisterDemand>,
) -> ApiResult<Value> {
    let id = app.services.demands.register(&caller, req).await?;
    Ok(Data(json!({ "demandID": id })))
}

async fn publish_demand(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<DemandAction>,
) -> ApiResult<Value> {
    let status = app.services.demands.publish(&caller, &req).await?;
    Ok(Data(json!({ "publish_status": status.yes_no() })))
}

async fn query_published_demand(
    State(app): State<AppState>,
    Auth(_caller): Auth,
    ValidQuery(r): ValidQuery<DemandRef>,
) -> ApiResult<PublishedDemandView> {
    let demand = app.services.demands.query(&r).await?;
    Ok(Data(PublishedDemandView::from(&demand)))
}

async fn revoke_demand(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(RevokeDemand(req)): ValidJson<RevokeDemand>,
) -> ApiResult<Value> {
    let status = app.services.demands.revoke(&caller, &req).await?;
    Ok(Data(json!({ "publish_status": status.yes_no() })))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, clause, input| RouteDoc {
        method,
        path,
        summary,
        clause,
        tag: "demand",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/registerDemand",
                "Register a demand",
                "A.2.1",
                Input::Body("registerDemand.json"),
            ),
            handler: post(register_demand),
        },
        Route {
            doc: doc(
                Method::POST,
                "/publishDemand",
                "Publish a registered demand",
                "A.2.2",
                Input::Body("publishDemand.json"),
            ),
            handler: post(publish_demand),
        },
        Route {
            doc: doc(
                Method::GET,
                "/queryPublishedDemand",
                "Query a published demand",
                "A.2.3",
                Input::Query("queryPublishedDemand.json"),
            ),
            handler: get(query_published_demand),
        },
        Route {
            doc: doc(
                Method::POST,
                "/revokeDemand",
                "Revoke a demand",
                "A.2.4",
                Input::Body("revokeDemand.json"),
            ),
            handler: post(revoke_demand),
        },
    ]
}
