//! The response envelope of the standard (`status`, `code`, `errorMsg`, `data`) and the stable
//! error codes. The HTTP status always equals `status`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::DomainError;
use crate::services::ServiceError;
use crate::store::StoreError;

/// Every error code a client can see. `docs/errors.md` documents each; a test keeps them in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    InsufficientFunds,
    PaymentRequired,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    InvalidState,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
    PluginFailed,
    UpstreamFailed,
    ServiceUnavailable,
    UpstreamTimeout,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::InsufficientFunds,
        ErrorCode::PaymentRequired,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::InvalidState,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Internal,
        ErrorCode::PluginFailed,
        ErrorCode::UpstreamFailed,
        ErrorCode::ServiceUnavailable,
        ErrorCode::UpstreamTimeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ErrorCode::PaymentRequired => "PAYMENT_REQUIRED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::PluginFailed => "PLUGIN_FAILED",
            ErrorCode::UpstreamFailed => "UPSTREAM_FAILED",
            ErrorCode::UpstreamTimeout => "UPSTREAM_TIMEOUT",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientFunds | ErrorCode::PaymentRequired => {
                StatusCode::PAYMENT_REQUIRED
            }
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict | ErrorCode::InvalidState => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::PluginFailed | ErrorCode::UpstreamFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// The standard's response envelope.
#[derive(Debug, Serialize)]
pub struct Envelope<T: Serialize> {
    pub status: u16,
    pub code: &'static str,
    #[serde(rename = "errorMsg")]
    pub error_msg: String,
    pub data: T,
}

/// A successful answer: HTTP 200, code "OK", empty errorMsg.
pub struct Data<T: Serialize>(pub T);

impl<T: Serialize> IntoResponse for Data<T> {
    fn into_response(self) -> Response {
        Json(Envelope {
            status: StatusCode::OK.as_u16(),
            code: "OK",
            error_msg: String::new(),
            data: self.0,
        })
        .into_response()
    }
}

/// An error answer. Build one from a `DomainError` or with a code and a client-safe message.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidArgument, message)
    }

    /// Hides the cause from the client and logs it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(
            ErrorCode::Internal,
            "internal error; the request id identifies it in the server log",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let code = match &e {
            DomainError::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            DomainError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            DomainError::Forbidden(_) => ErrorCode::Forbidden,
            DomainError::InsufficientFunds(_) => ErrorCode::InsufficientFunds,
            DomainError::PaymentRequired(_) => ErrorCode::PaymentRequired,
            DomainError::NotFound(_) => ErrorCode::NotFound,
            DomainError::Conflict(_) => ErrorCode::Conflict,
            DomainError::InvalidState(_) => ErrorCode::InvalidState,
            DomainError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            DomainError::Invariant(m) => return ApiError::internal(m),
        };
        // Rule refusals carry only their own message; `InvalidArgument` also names the field.
        let message = match e {
            DomainError::InvalidArgument { .. } => e.to_string(),
            DomainError::Unauthenticated(m)
            | DomainError::Forbidden(m)
            | DomainError::InsufficientFunds(m)
            | DomainError::PaymentRequired(m)
            | DomainError::NotFound(m)
            | DomainError::Conflict(m)
            | DomainError::InvalidState(m)
            | DomainError::TooLarge(m)
            | DomainError::Invariant(m) => m,
        };
        ApiError::new(code, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Refused(e) => e.into(),
            ServiceError::Unavailable(m) => ApiError::new(ErrorCode::ServiceUnavailable, m),
            ServiceError::PluginFailed(m) => {
                tracing::warn!(error = %m, "plugin call failed");
                ApiError::new(ErrorCode::PluginFailed, m)
            }
            ServiceError::Upstream { timed_out, message } => {
                tracing::warn!(error = %message, "upstream failed");
                let code = if timed_out {
                    ErrorCode::UpstreamTimeout
                } else {
                    ErrorCode::UpstreamFailed
                };
                ApiError::new(code, message)
            }
            ServiceError::Store(StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
            )) => {
                tracing::warn!("database unavailable: pool exhausted or closed");
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "the database is unavailable or overloaded; retry shortly",
                )
            }
            ServiceError::Store(e) => ApiError::internal(&e),
            ServiceError::Internal(m) => ApiError::internal(&m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut response = Json(Envelope {
            status: status.as_u16(),
            code: self.code.as_str(),
            error_msg: self.message,
            data: serde_json::Value::Null,
        })
        .into_response();
        *response.status_mut() = status;
        response
    }
}

pub type ApiResult<T> = Result<Data<T>, ApiError>;
