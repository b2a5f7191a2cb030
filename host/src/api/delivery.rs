//! Delivery (A.3.5, A.3.6) and its prerequisites: the provider's data file and delivery key,
//! the buyer's own delivery key.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Data, ErrorCode};
use super::extract::{Auth, ValidJson, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::delivery::{
    AccountDeliveryKey, DataRef, Deliver, DeliveryMode, DepositDeliveryKey, DepositView, UploadView,
};
use crate::domain::trading::ConfirmRef;
use crate::services::delivery::Content;

/// A.3.6 has its own schema for the same `confirmID` query.
#[derive(Debug, serde::Deserialize)]
#[serde(transparent)]
pub struct DeliverResultQuery(pub ConfirmRef);

request_schemas! {
    AccountDeliveryKey => "account.deliveryKey.json",
    DepositDeliveryKey => "data.deliveryKey.json",
    DataRef => "data.ref.json",
    Deliver => "deliver.json",
    DeliverResultQuery => "queryDeliverResult.json",
}

/// Response headers of a streamed delivery.
pub const DELIVERY_PROOF_HEADER: &str = "x-delivery-proof";
pub const DELIVERY_ID_HEADER: &str = "x-delivery-id";
pub const CONTENT_SHA256_HEADER: &str = "x-content-sha256";
pub const OCTET_STREAM: &str = "application/octet-stream";

pub fn media_essence(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether the client asked for the raw bytes: `Accept` lists `application/octet-stream`
/// (without `q=0`).
pub fn wants_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let refused = parts.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "q=0" || p == "q=0.0" || p == "q=0.00" || p == "q=0.000"
            });
            essence == OCTET_STREAM && !refused
        })
}

async fn set_account_key(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<AccountDeliveryKey>,
) -> ApiResult<Value> {
    let recipient = app.services.delivery.set_account_key(&caller, &req).await?;
    Ok(Data(json!({ "publicKey": recipient })))
}

async fn deposit_key(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(data): ValidQuery<DataRef>,
    ValidJson(req): ValidJson<DepositDeliveryKey>,
) -> ApiResult<DepositView> {
    Ok(Data(
        app.services
            .delivery
            .deposit_key(&caller, &data, &req)
            .await?,
    ))
}

/// Streams the request body to storage: any size, constant memory, not subject to the JSON
/// body limit.
async fn upload_file(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(data): ValidQuery<DataRef>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<UploadView> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid"))
        .unwrap_or_default();
    if media_essence(content_type) != OCTET_STREAM {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {OCTET_STREAM}, not '{content_type}'"),
        ));
    }
    let stream = body
        .into_data_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other))
        .boxed();
    Ok(Data(
        app.services.delivery.upload(&caller, &data, stream).await?,
    ))
}

async fn deliver(
    State(app): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ValidJson(req): ValidJson<Deliver>,
) -> Result<Response, ApiError> {
    let mode = if wants_octet_stream(&headers) {
        DeliveryMode::Stream
    } else {
        DeliveryMode::Json
    };
    let delivered = app.services.delivery.deliver(&caller, &req, mode).await?;
    let b64 = base64::engine::general_purpose::STANDARD;
    match delivered.content {
        Content::Bytes(bytes) => Ok(Data(json!({
            "data_file": b64.encode(bytes),
            "delivery_proof": delivered.proof,
        }))
        .into_response()),
        Content::Stream { size, stream } => {
            let header = |v: String| HeaderValue::from_str(&v).map_err(|e| ApiError::internal(&e));
            let proof = &delivered.proof;
            let mut response = Response::new(Body::from_stream(stream));
            *response.status_mut() = StatusCode::OK;
            let h = response.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
            h.insert(CONTENT_LENGTH, header(size.to_string())?);
            h.insert(
                DELIVERY_PROOF_HEADER,
                header(b64.encode(proof.to_string()))?,
            );
            h.insert(
                DELIVERY_ID_HEADER,
                header(proof["deliveryID"].as_str().unwrap_or_default().to_owned())?,
            );
            h.insert(
                CONTENT_SHA256_HEADER,
                header(proof["sha256"].as_str().unwrap_or_default().to_owned())?,
            );
            Ok(response)
        }
    }
}

async fn query_deliver_result(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(DeliverResultQuery(r)): ValidQuery<DeliverResultQuery>,
) -> ApiResult<Value> {
    let proofs = app.services.delivery.query(&caller, &r.confirm_id).await?;
    Ok(Data(
        json!({ "confirmID": r.confirm_id, "delivery_proof": proofs }),
    ))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, clause, input| RouteDoc {
        method,
        path,
        summary,
        clause,
        tag: "delivery",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::PUT,
                "/v1/account/deliveryKey",
                "Set the caller's age recipient for delivery keys",
                "",
                Input::Body("account.deliveryKey.json"),
            ),
            handler: put(set_account_key),
        },
        Route {
            doc: doc(
                Method::PUT,
                "/v1/data/deliveryKey",
                "Deposit a resource's delivery identity, sealed to the escrow recipient",
                "",
                Input::QueryAndBody {
                    query: "data.ref.json",
                    body: "data.deliveryKey.json",
                },
            ),
            handler: put(deposit_key),
        },
        Route {
            doc: doc(
                Method::PUT,
                "/v1/data/file",
                "Upload a resource's encrypted data file (streamed, any size)",
                "",
                Input::QueryAndBinary("data.ref.json"),
            ),
            // The upload is streamed to storage, so the JSON body limit does not apply.
            handler: put(upload_file).layer(axum::extract::DefaultBodyLimit::disable()),
        },
        Route {
            doc: doc(
                Method::POST,
                "/deliver",
                "Deliver licensed data with a signed delivery proof",
                "A.3.5",
                Input::Body("deliver.json"),
            ),
            handler: post(deliver),
        },
        Route {
            doc: doc(
                Method::GET,
                "/queryDeliverResult",
                "Delivery proofs of a confirmation",
                "A.3.6",
                Input::Query("queryDeliverResult.json"),
            ),
            handler: get(query_deliver_result),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(ACCEPT, HeaderValue::from_str(v).expect("header"));
            wants_octet_stream(&h)
        };
        assert!(with("application/octet-stream"));
        assert!(with("application/json, application/octet-stream;q=0.5"));
        assert!(with("Application/Octet-Stream"));
        assert!(!with("application/json"));
        assert!(!with("*/*"));
        assert!(!with("application/octet-stream;q=0"));
        assert!(!wants_octet_stream(&HeaderMap::new()));
    }
}
