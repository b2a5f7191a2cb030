//! The operator's public keys: what anyone needs to verify liutong's signed documents and to
//! seal a delivery key for it.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;

use super::error::{ApiResult, Data};
use super::{AppState, Input, Route, RouteDoc};
use crate::services::keys::PublicKeys;

async fn keys(State(app): State<AppState>) -> ApiResult<PublicKeys> {
    Ok(Data(app.services.keys.public()))
}

pub fn routes() -> Vec<Route> {
    vec![Route {
        doc: RouteDoc {
            method: Method::GET,
            path: "/v1/keys",
            summary: "Public signing keys and the escrow recipient",
            clause: "",
            tag: "keys",
            auth: false,
            input: Input::None,
        },
        handler: get(keys),
    }]
}
