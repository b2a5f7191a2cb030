//! The platform side of the identifier gateway (compute-provider-access §3).

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{get, post, put};

use super::error::{ApiError, ApiResult, Data, ErrorCode};
use super::extract::{
    Auth, Enterprise, Operator, PathParam, ValidJson, ValidQuery, is_json_content_type, param,
    request_schemas,
};
use super::{AppState, Input, Route, RouteDoc};
use crate::crypto::batch::{KEY_ID_HEADER, SIGNATURE_HEADER};
use crate::domain::gateway::{
    ActivationView, BatchOutcome, FieldsDocument, GatewayKeyRequest, GatewayKeyView,
    IdentifiersPage, IdentifiersQuery, Statistics, StatisticsQuery,
};
use crate::domain::identifiers::ParsedCode;
use crate::services::gateway::SignedBatch;

request_schemas! {
    GatewayKeyRequest => "provider.gatewayKey.json",
    IdentifiersQuery => "gateway.identifiers.query.json",
    StatisticsQuery => "gateway.statistics.query.json",
}

/// The exact bytes of a JSON body: the batch signature covers them, so they are kept as sent.
pub struct RawJson(pub Bytes);

impl<S> FromRequest<S> for RawJson
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("invalid"));
        if !is_json_content_type(content_type) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "Content-Type must be application/json, not '{}'",
                    content_type.unwrap_or_default()
                ),
            ));
        }
        let app = AppState::from_ref(state);
        Bytes::from_request(req, state)
            .await
            .map(RawJson)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "request body exceeds the limit of {} bytes",
                            app.max_json_body
                        ),
                    )
                } else {
                    ApiError::invalid(format!("could not read the request body: {rejection}"))
                }
            })
    }
}

async fn fields(State(app): State<AppState>, Auth(caller): Auth) -> ApiResult<FieldsDocument> {
    Ok(Data(app.services.gateway.fields(&caller)))
}

async fn parse(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(code, _): PathParam<param::Code>,
) -> ApiResult<ParsedCode> {
    Ok(Data(app.services.gateway.parse(&caller, &code)?))
}

async fn register_key(
    State(app): State<AppState>,
    Enterprise(caller): Enterprise,
    ValidJson(req): ValidJson<GatewayKeyRequest>,
) -> ApiResult<GatewayKeyView> {
    Ok(Data(app.services.gateway.register_key(&caller, req).await?))
}

async fn ingest(
    State(app): State<AppState>,
    headers: HeaderMap,
    RawJson(body): RawJson,
) -> ApiResult<BatchOutcome> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = SignedBatch {
        key_id: header(KEY_ID_HEADER),
        signature: header(SIGNATURE_HEADER),
        body: &body,
    };
    Ok(Data(app.services.gateway.ingest(signed).await?))
}

async fn identifiers(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(q): ValidQuery<IdentifiersQuery>,
) -> ApiResult<IdentifiersPage> {
    Ok(Data(app.services.gateway.identifiers(&caller, &q).await?))
}

async fn statistics(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(StatisticsQuery(q)): ValidQuery<StatisticsQuery>,
) -> ApiResult<Statistics> {
    Ok(Data(app.services.gateway.statistics(&caller, &q).await?))
}

async fn deactivate(
    State(app): State<AppState>,
    Operator(caller): Operator,
    PathParam(code, _): PathParam<param::Code>,
) -> ApiResult<ActivationView> {
    Ok(Data(
        app.services
            .gateway
            .set_active(&caller, &code, true)
            .await?,
    ))
}

async fn reactivate(
    State(app): State<AppState>,
    Operator(caller): Operator,
    PathParam(code, _): PathParam<param::Code>,
) -> ApiResult<ActivationView> {
    Ok(Data(
        app.services
            .gateway
            .set_active(&caller, &code, false)
            .await?,
    ))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, auth, input| RouteDoc {
        method,
        path,
        summary,
        clause: "",
        tag: "gateway",
        auth,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::GET,
                "/v1/gateway/fields",
                "The standard identifier fields: names, types, units, required, a JSON Schema",
                true,
                Input::None,
            ),
            handler: get(fields),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/gateway/codes/{code}",
                "Parse a 16-digit identifier code and check its check digit",
                true,
                Input::None,
            ),
            handler: get(parse),
        },
        Route {
            doc: doc(
                Method::PUT,
                "/v1/provider/gateway-key",
                "Register the Ed25519 key the enterprise's gateway signs batches with (retires the previous one)",
                true,
                Input::Body("provider.gatewayKey.json"),
            ),
            handler: put(register_key),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/gateway/identifiers",
                "Report a batch of up to 500 identifiers, signed with the enterprise's gateway key (X-Gateway-Key-Id, X-Gateway-Signature)",
                false,
                Input::Body("gateway.batch.json"),
            ),
            handler: post(ingest),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/gateway/identifiers",
                "Current identifiers, filtered by enterprise, region, type, class, status, state and observed time (operators: all; enterprises: their own)",
                true,
                Input::Query("gateway.identifiers.query.json"),
            ),
            handler: get(identifiers),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/gateway/statistics",
                "Counts and capacity sums of identifiers grouped by province, city, type, class or status",
                true,
                Input::Query("gateway.statistics.query.json"),
            ),
            handler: get(statistics),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/gateway/identifiers/{code}/deactivate",
                "Deactivate an identifier: its reports are refused until reactivated (operators)",
                true,
                Input::None,
            ),
            handler: post(deactivate),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/gateway/identifiers/{code}/reactivate",
                "Reactivate a deactivated identifier (operators)",
                true,
                Input::None,
            ),
            handler: post(reactivate),
        },
    ]
}
