//! A.3.7: controlled data delivered as usage policies, and the decision point a trusted data
//! space asks for every use of it.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::routing::{get, post};

use super::error::{ApiError, ApiResult, Data};
use super::extract::{Auth, DataSpace, ValidJson, ValidQuery, request_schemas};
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

/// The `{policyId}` of a path.
pub struct PolicyIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PolicyIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("/policyId: {e}")))?;
        Ok(PolicyIdPath(id))
    }
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
    PolicyIdPath(id): PolicyIdPath,
    ValidJson(req): ValidJson<AccessRequest>,
) -> ApiResult<AccessView> {
    Ok(Data(app.services.policies.access(&caller, &id, req).await?))
}

async fn get_policy(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PolicyIdPath(id): PolicyIdPath,
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
    PolicyIdPath(id): PolicyIdPath,
) -> ApiResult<PolicyView> {
    Ok(Data(app.services.policies.revoke(&caller, &id).await?))
}

async fn decisions(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PolicyIdPath(id): PolicyIdPath,
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
