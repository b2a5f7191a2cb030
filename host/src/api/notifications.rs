//! The notification outbox, for operators.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;

use super::error::{ApiResult, Data};
use super::extract::{Operator, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::services::notifications::{NoticesPage, NoticesQuery};

request_schemas! {
    NoticesQuery => "admin.notifications.json",
}

async fn list(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidQuery(q): ValidQuery<NoticesQuery>,
) -> ApiResult<NoticesPage> {
    Ok(Data(app.services.notifications.list(&caller, &q).await?))
}

pub fn routes() -> Vec<Route> {
    vec![Route {
        doc: RouteDoc {
            method: Method::GET,
            path: "/v1/admin/notifications",
            summary: "Notices of review outcomes: pending, sent, failed, with the last error \
                      (operators)",
            clause: "",
            tag: "provider",
            auth: true,
            input: Input::Query("admin.notifications.json"),
        },
        handler: get(list),
    }]
}
