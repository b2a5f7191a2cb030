//! The response envelope of the standard (`status`, `code`, `errorMsg`, `data`) and the stable
//! error codes. The HTTP status always equals `status`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::DomainError;
use crate::store::StoreError;

/// Every error code a client can see. `docs/errors.md` documents each; a test keeps them in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    InsufficientFunds,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    InvalidState,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
    PluginFailed,
    ServiceUnavailable,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::InsufficientFunds,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::InvalidState,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Internal,
        ErrorCode::PluginFailed,
        ErrorCode::ServiceUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::InsufficientFunds => "INSUFFICIENT_FUNDS",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::PluginFailed => "PLUGIN_FAILED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientFunds => StatusCode::PAYMENT_REQUIRED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict | ErrorCode::InvalidState => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::PluginFailed => StatusCode::BAD_GATEWAY,
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
        match e {
            DomainError::InvalidArgument { .. } => {
                ApiError::new(ErrorCode::InvalidArgument, e.to_string())
            }
            DomainError::Unauthenticated(m) => ApiError::new(ErrorCode::Unauthenticated, m),
            DomainError::Forbidden(m) => ApiError::new(ErrorCode::Forbidden, m),
            DomainError::InsufficientFunds(m) => ApiError::new(ErrorCode::InsufficientFunds, m),
            DomainError::NotFound(m) => ApiError::new(ErrorCode::NotFound, m),
            DomainError::Conflict(m) => ApiError::new(ErrorCode::Conflict, m),
            DomainError::InvalidState(m) => ApiError::new(ErrorCode::InvalidState, m),
            DomainError::TooLarge(m) => ApiError::new(ErrorCode::PayloadTooLarge, m),
            DomainError::Unavailable(m) => ApiError::new(ErrorCode::ServiceUnavailable, m),
            DomainError::PluginFailed(m) => {
                tracing::warn!(error = %m, "plugin call failed");
                ApiError::new(ErrorCode::PluginFailed, m)
            }
            DomainError::Store(StoreError::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
            )) => {
                tracing::warn!("database unavailable: pool exhausted or closed");
                ApiError::new(
                    ErrorCode::ServiceUnavailable,
                    "the database is unavailable or overloaded; retry shortly",
                )
            }
            DomainError::Store(e) => ApiError::internal(&e),
            DomainError::Internal(m) => ApiError::internal(&m),
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
