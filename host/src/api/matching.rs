//! Clause 7.3 a: keyword matching of published supply and demand. The annex has no endpoint for
//! it; `/queryMatchResults` follows the annex's style.

use axum::extract::State;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::error::{ApiError, Data};
use super::extract::{Auth, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::matching::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::domain::supply::ResourceRef;

#[derive(Debug, Deserialize)]
pub struct MatchParams {
    #[serde(rename = "demandID")]
    demand_id: Option<String>,
    #[serde(rename = "registrationID")]
    registration_id: Option<String>,
    #[serde(rename = "dataID")]
    data_id: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

request_schemas! {
    MatchParams => "queryMatchResults.json",
}

async fn query_match_results(
    State(app): State<AppState>,
    Auth(_caller): Auth,
    ValidQuery(p): ValidQuery<MatchParams>,
) -> Result<Response, ApiError> {
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "/limit: must be between 1 and {MAX_LIMIT}"
        )));
    }
    let offset = p.offset.unwrap_or(0);
    match (p.demand_id, p.registration_id) {
        (Some(demand_id), None) => {
            if p.data_id.is_some() {
                return Err(ApiError::invalid("/dataID: only goes with registrationID"));
            }
            let demand = app.demands.find(&demand_id).await?;
            let page = app
                .matcher
                .resources_for_demand(&demand, limit, offset)
                .await?;
            Ok(Data(page).into_response())
        }
        (None, Some(registration_id)) => {
            let resource = app
                .supply
                .find(&ResourceRef {
                    registration_id,
                    data_id: p.data_id,
                })
                .await?;
            let page = app
                .matcher
                .demands_for_resource(&resource, limit, offset)
                .await?;
            Ok(Data(page).into_response())
        }
        _ => Err(ApiError::invalid(
            "/: exactly one of demandID or registrationID is required",
        )),
    }
}

pub fn routes() -> Vec<Route> {
    vec![Route {
        doc: RouteDoc {
            method: Method::GET,
            path: "/queryMatchResults",
            summary: "Ranked matches of a published demand or resource",
            clause: "7.3 a",
            tag: "matching",
            auth: true,
            input: Input::Query("queryMatchResults.json"),
        },
        handler: get(query_match_results),
    }]
}
