//! A.1: the provider side.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::error::{ApiResult, Data};
use super::extract::{Auth, DataSpace, ValidJson, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::supply::{
    PublishData, PublishDatasets, PublishedDataView, RegisterData, ResourceRef,
};

/// A.1.5 takes the same reference as A.1.4, in a body instead of the query string.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct RevokeRef(pub ResourceRef);

request_schemas! {
    RegisterData => "registerData.json",
    PublishData => "publishData.json",
    PublishDatasets => "publishDatasets.json",
    ResourceRef => "queryPublishedData.json",
    RevokeRef => "revokePublishedData.json",
}

async fn register_data(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<RegisterData>,
) -> ApiResult<Value> {
    let id = app.services.supply.register(&caller, req).await?;
    Ok(Data(json!({ "registrationID": id })))
}

async fn publish_data(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<PublishData>,
) -> ApiResult<Value> {
    let status = app.services.supply.publish(&caller, req).await?;
    Ok(Data(json!({ "publish_status": status.yes_no() })))
}

async fn publish_datasets(
    State(app): State<AppState>,
    DataSpace(caller): DataSpace,
    ValidJson(req): ValidJson<PublishDatasets>,
) -> ApiResult<Value> {
    let status = app.services.supply.publish_controlled(&caller, req).await?;
    Ok(Data(json!({ "publish_status": status.yes_no() })))
}

async fn query_published_data(
    State(app): State<AppState>,
    Auth(_caller): Auth,
    ValidQuery(r): ValidQuery<ResourceRef>,
) -> ApiResult<PublishedDataView> {
    let resource = app.services.supply.query(&r).await?;
    Ok(Data(PublishedDataView::from(&resource)))
}

async fn revoke_published_data(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(RevokeRef(r)): ValidJson<RevokeRef>,
) -> ApiResult<Value> {
    let status = app.services.supply.revoke(&caller, &r).await?;
    Ok(Data(json!({ "publish_status": status.yes_no() })))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, clause, input| RouteDoc {
        method,
        path,
        summary,
        clause,
        tag: "supply",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/registerData",
                "Register a data resource",
                "A.1.1",
                Input::Body("registerData.json"),
            ),
            handler: post(register_data),
        },
        Route {
            doc: doc(
                Method::POST,
                "/publishData",
                "Publish a registered data resource",
                "A.1.2",
                Input::Body("publishData.json"),
            ),
            handler: post(publish_data),
        },
        Route {
            doc: doc(
                Method::POST,
                "/publishDatasets",
                "Publish controlled data of a trusted data space",
                "A.1.3",
                Input::Body("publishDatasets.json"),
            ),
            handler: post(publish_datasets),
        },
        Route {
            doc: doc(
                Method::GET,
                "/queryPublishedData",
                "Query a published data resource",
                "A.1.4",
                Input::Query("queryPublishedData.json"),
            ),
            handler: get(query_published_data),
        },
        Route {
            doc: doc(
                Method::POST,
                "/revokePublishedData",
                "Revoke a publication",
                "A.1.5",
                Input::Body("revokePublishedData.json"),
            ),
            handler: post(revoke_published_data),
        },
    ]
}
