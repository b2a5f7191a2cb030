//! The operator's public keys: what anyone needs to verify liutong's signed documents and to
//! seal a delivery key for it.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use serde::Serialize;

use super::error::{ApiResult, Data};
use super::{AppState, Input, Route, RouteDoc};
use crate::crypto::keyring::PublicSigningKey;

#[derive(Serialize)]
struct Keys {
    #[serde(rename = "signingKeys")]
    signing_keys: Vec<PublicSigningKey>,
    #[serde(rename = "escrowRecipient")]
    escrow_recipient: String,
}

async fn keys(State(app): State<AppState>) -> ApiResult<Keys> {
    Ok(Data(Keys {
        signing_keys: app.keys.public_signing_keys(),
        escrow_recipient: app.keys.escrow_recipient().to_owned(),
    }))
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
