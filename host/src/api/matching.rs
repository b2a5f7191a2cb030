//! Clause 7.3 a: keyword matching of published supply and demand. The annex has no endpoint for
//! it; `/queryMatchResults` follows the annex's style.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;

use super::error::{ApiResult, Data};
use super::extract::{Auth, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::matching::{MatchQuery, Matches};

request_schemas! {
    MatchQuery => "queryMatchResults.json",
}

async fn query_match_results(
    State(app): State<AppState>,
    Auth(_caller): Auth,
    ValidQuery(q): ValidQuery<MatchQuery>,
) -> ApiResult<Matches> {
    Ok(Data(app.services.matching.query(q).await?))
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
