//! A.3.7: controlled data delivered as usage policies, and the decision point a trusted data
//! space asks for every use of it.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};

use super::error::{ApiResult, Data};
use super::extract::{Auth, DataSpace, PathParam, ValidJson, ValidQuery, param, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::policy::{
    AccessRequest, AccessView, DecisionsPage, DecisionsQuery, DeliverDatasets, PoliciesPage,
    PoliciesQuery, PolicyCreated, PolicyView,
};

request_schemas! {
    DeliverDatasets => "deliverDatasets.json",
    AccessRequest => "policies.access.json",
    PoliciesQuery => "policies.list.json",
    DecisionsQuery => "policies.decisions.json",
}

async fn deliver_datasets(
    State(app): State<AppState>,
    DataSpace(caller): DataSpace,
    ValidJson(req): ValidJson<DeliverDatasets>,
) -> ApiResult<PolicyCreated> {
    Ok(Data(app.services.policies.deliver(&caller, req).await?))
}

async fn access(
    State(app): State<AppState>,
    DataSpace(caller): DataSpace,
    PathParam(id, _): PathParam<param::PolicyId>,
    ValidJson(req): ValidJson<AccessRequest>,
) -> ApiResult<AccessView> {
    Ok(Data(app.services.policies.access(&caller, &id, req).await?))
}

async fn get_policy(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::PolicyId>,
) -> ApiResult<PolicyView> {
    Ok(Data(app.services.policies.get(&caller, &id).await?))
}

async fn list(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(q): ValidQuery<PoliciesQuery>,
) -> ApiResult<PoliciesPage> {
    Ok(Data(app.services.policies.list(&caller, q).await?))
}

async fn revoke(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::PolicyId>,
) -> ApiResult<PolicyView> {
    Ok(Data(app.services.policies.revoke(&caller, &id).await?))
}

async fn decisions(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::PolicyId>,
    ValidQuery(q): ValidQuery<DecisionsQuery>,
) -> ApiResult<DecisionsPage> {
    Ok(Data(
        app.services.policies.decisions(&caller, &id, q).await?,
    ))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, clause, input| RouteDoc {
        method,
        path,
        summary,
        clause,
        tag: "policies",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/deliverDatasets",
                "Deliver controlled data: set up a usage policy for a buyer's license",
                "A.3.7",
                Input::Body("deliverDatasets.json"),
            ),
            handler: post(deliver_datasets),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/policies/{policyId}/access",
                "Decide one use of controlled data under a policy (ALLOW or DENY), counting it exactly",
                "",
                Input::Body("policies.access.json"),
            ),
            handler: post(access),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/policies/{policyId}",
                "A usage policy: status, terms and counters",
                "",
                Input::None,
            ),
            handler: get(get_policy),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/policies",
                "The usage policies of a controlled dataID the caller may see",
                "",
                Input::Query("policies.list.json"),
            ),
            handler: get(list),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/policies/{policyId}/revoke",
                "End a usage policy at once",
                "",
                Input::None,
            ),
            handler: post(revoke),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/policies/{policyId}/decisions",
                "The decision log of a usage policy, newest first",
                "",
                Input::Query("policies.decisions.json"),
            ),
            handler: get(decisions),
        },
    ]
}
