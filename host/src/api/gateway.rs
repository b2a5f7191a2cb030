//! The platform side of the identifier gateway (compute-provider-access §3).

use axum::extract::{FromRequestParts, Path, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::routing::get;

use super::error::{ApiError, ApiResult, Data};
use super::extract::Auth;
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::gateway::FieldsDocument;
use crate::domain::identifiers::ParsedCode;

/// The `{code}` of a path.
pub struct CodePath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CodePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(code) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("/code: {e}")))?;
        Ok(CodePath(code))
    }
}

async fn fields(State(app): State<AppState>, Auth(caller): Auth) -> ApiResult<FieldsDocument> {
    Ok(Data(app.services.gateway.fields(&caller)))
}

async fn parse(
    State(app): State<AppState>,
    Auth(caller): Auth,
    CodePath(code): CodePath,
) -> ApiResult<ParsedCode> {
    Ok(Data(app.services.gateway.parse(&caller, &code)?))
}

pub fn routes() -> Vec<Route> {
    let doc = |path, summary| RouteDoc {
        method: Method::GET,
        path,
        summary,
        clause: "",
        tag: "gateway",
        auth: true,
        input: Input::None,
    };
    vec![
        Route {
            doc: doc(
                "/v1/gateway/fields",
                "The standard identifier fields: names, types, units, required, a JSON Schema",
            ),
            handler: get(fields),
        },
        Route {
            doc: doc(
                "/v1/gateway/codes/{code}",
                "Parse a 16-digit identifier code and check its check digit",
            ),
            handler: get(parse),
        },
    ]
}
