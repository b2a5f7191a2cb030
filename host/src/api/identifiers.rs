//! Compute resource identifier codes (compute-provider-access §2): applications of certified
//! enterprises, their review, the catalogs.

use axum::extract::State;
use axum::http::Method;
use axum::routing::{get, post};

use super::error::{ApiResult, Data};
use super::extract::{Enterprise, Operator, ValidJson, ValidQuery, request_schemas};
use super::provider::Ids;
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::identifiers::{
    ApplicationCreated, ApplicationDecision, ApplicationsOfEnterprise, ApplicationsPage,
    ApplicationsQuery, Catalog, IdentifierRequest,
};
use crate::domain::provider::{RejectRequest, ReviewStatus};

request_schemas! {
    IdentifierRequest => "provider.identifiers.json",
    ApplicationsQuery => "admin.identifierApplications.json",
}

async fn catalog(
    State(app): State<AppState>,
    Enterprise(caller): Enterprise,
) -> ApiResult<&'static Catalog> {
    Ok(Data(app.services.identifiers.catalog(&caller)?))
}

async fn apply(
    State(app): State<AppState>,
    Enterprise(caller): Enterprise,
    ValidJson(req): ValidJson<IdentifierRequest>,
) -> ApiResult<ApplicationCreated> {
    Ok(Data(app.services.identifiers.apply(&caller, req).await?))
}

async fn mine(
    State(app): State<AppState>,
    Enterprise(caller): Enterprise,
) -> ApiResult<ApplicationsOfEnterprise> {
    Ok(Data(app.services.identifiers.mine(&caller).await?))
}

async fn list(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidQuery(q): ValidQuery<ApplicationsQuery>,
) -> ApiResult<ApplicationsPage> {
    Ok(Data(app.services.identifiers.list(&caller, &q).await?))
}

async fn approve(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ids: Ids,
) -> ApiResult<ApplicationDecision> {
    Ok(Data(
        app.services
            .identifiers
            .review(&caller, ids.get(0), ReviewStatus::Approved, None)
            .await?,
    ))
}

async fn reject(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ids: Ids,
    ValidJson(req): ValidJson<RejectRequest>,
) -> ApiResult<ApplicationDecision> {
    Ok(Data(
        app.services
            .identifiers
            .review(
                &caller,
                ids.get(0),
                ReviewStatus::Rejected,
                Some(req.reason.trim()),
            )
            .await?,
    ))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, input| RouteDoc {
        method,
        path,
        summary,
        clause: "",
        tag: "provider",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::GET,
                "/v1/provider/identifiers/catalog",
                "GB/T 2260 provinces and cities, GB/T 4754 industries, zones, the code layout",
                Input::None,
            ),
            handler: get(catalog),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/provider/identifiers",
                "Apply for a 16-digit identifier code (certified enterprises)",
                Input::Body("provider.identifiers.json"),
            ),
            handler: post(apply),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/provider/identifiers",
                "The caller's identifier applications and codes",
                Input::None,
            ),
            handler: get(mine),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/admin/identifier-applications",
                "Identifier applications for review (operators)",
                Input::Query("admin.identifierApplications.json"),
            ),
            handler: get(list),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/identifier-applications/{applicationId}/approve",
                "Approve an application; issues its 16-digit code (operators)",
                Input::None,
            ),
            handler: post(approve),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/identifier-applications/{applicationId}/reject",
                "Reject an application with a reason (operators)",
                Input::Body("admin.review.reject.json"),
            ),
            handler: post(reject),
        },
    ]
}
