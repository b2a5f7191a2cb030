//! An OpenAI-compatible front for subscribed models, where programs already are: any OpenAI
//! client pointed at `/openai/v1` with an API key (or a token) as its key calls the caller's
//! subscriptions, `model` being the publication's `publishId`. Calls are metered and charged
//! exactly as `POST /v1/model/delivery` (the same service method), `Idempotency-Key` included.
//!
//! These routes answer in OpenAI's shapes — the upstream's completion as it is, errors as
//! `{"error": {"message", "type", "code"}}` — not in the standard's envelope, so they live
//! outside the route catalog (and the OpenAPI document of the standard's interface);
//! docs/api.md documents them.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use super::extract::presented_token;
use super::subscriptions::call_context;
use crate::domain::Caller;

pub const CHAT_PATH: &str = "/openai/v1/chat/completions";
pub const MODELS_PATH: &str = "/openai/v1/models";

/// An error in OpenAI's shape, with the same status and code as the envelope would carry.
struct OpenAiError(ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError(e)
    }
}

impl From<crate::services::ServiceError> for OpenAiError {
    fn from(e: crate::services::ServiceError) -> Self {
        OpenAiError(e.into())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let kind = match self.0.code {
            ErrorCode::Unauthenticated => "authentication_error",
            ErrorCode::Forbidden => "permission_error",
            ErrorCode::InsufficientFunds | ErrorCode::PaymentRequired => "insufficient_quota",
            ErrorCode::NotFound => "not_found_error",
            ErrorCode::InvalidArgument
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::Conflict
            | ErrorCode::InvalidState
            | ErrorCode::MethodNotAllowed => "invalid_request_error",
            _ => "api_error",
        };
        let status = self.0.code.status();
        let body = json!({"error": {"message": self.0.message, "type": kind,
                                    "code": self.0.code.as_str(), "param": null}});
        (status, Json(body)).into_response()
    }
}

async fn caller(app: &AppState, headers: &HeaderMap) -> Result<Caller, OpenAiError> {
    let token = presented_token(headers)?;
    Ok(app.services.accounts.authenticate(token.trim()).await?)
}

async fn chat_completions(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, OpenAiError> {
    let caller = caller(&app, &headers).await?;
    let body = body.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request body exceeds the limit of {} bytes",
                app.max_json_body
            ),
        )
    })?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
    let ctx = call_context(&headers)?;
    let delivered = app
        .services
        .subscriptions
        .openai_chat(&caller, request, ctx)
        .await?;
    Ok(Json(delivered.output))
}

async fn models(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Value>, OpenAiError> {
    let caller = caller(&app, &headers).await?;
    Ok(Json(
        app.services.subscriptions.openai_models(&caller).await?,
    ))
}

/// The front's routes, merged into the server's router beside the catalog.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(CHAT_PATH, post(chat_completions))
        .route(MODELS_PATH, get(models))
}
