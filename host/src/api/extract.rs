//! Extractors that turn a request into validated input, or into the standard's error envelope.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::AppState;
use super::error::{ApiError, ErrorCode};
use crate::domain::{Caller, Role};
use crate::schema::Schemas;

pub const AUTH_HEADER: &str = "X-Auth-Token";

/// Names the schema file (in `schemas/`) that validates a request type.
pub trait RequestSchema {
    const FILE: &'static str;
}

/// Implements `RequestSchema` for request types: `schema!(Type => "file.json", …)`.
macro_rules! request_schemas {
    ($($ty:ty => $file:literal),* $(,)?) => {
        $(impl $crate::api::extract::RequestSchema for $ty {
            const FILE: &'static str = $file;
        })*
    };
}
pub(crate) use request_schemas;

fn validate(schemas: &Schemas, file: &str, value: &Value) -> Result<(), ApiError> {
    let violations = schemas.validate(file, value);
    if violations.is_empty() {
        return Ok(());
    }
    let detail: Vec<String> = violations.iter().map(ToString::to_string).collect();
    Err(ApiError::invalid(format!(
        "request does not match its schema: {}",
        detail.join("; ")
    )))
}

/// A JSON body checked against its schema, then deserialised.
///
/// A missing Content-Type counts as JSON (the standard's default); any other type is refused.
pub struct ValidJson<T>(pub T);

pub fn is_json_content_type(value: Option<&str>) -> bool {
    let Some(value) = value else { return true };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T, S> FromRequest<S> for ValidJson<T>
where
    T: DeserializeOwned + RequestSchema,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
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
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
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
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::invalid(format!("malformed JSON: {e}")))?;
        validate(&app.schemas, T::FILE, &value)?;
        serde_json::from_value(value)
            .map(ValidJson)
            .map_err(|e| ApiError::invalid(format!("request body: {e}")))
    }
}

/// Query-string parameters checked against their schema (every value a string), then
/// deserialised.
pub struct ValidQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ValidQuery<T>
where
    T: DeserializeOwned + RequestSchema,
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::invalid(format!("malformed query string: {e}")))?;
        let mut object = Map::new();
        for (key, value) in pairs {
            if object.insert(key.clone(), Value::String(value)).is_some() {
                return Err(ApiError::invalid(format!(
                    "/{key}: query parameter given more than once"
                )));
            }
        }
        let app = AppState::from_ref(state);
        validate(&app.schemas, T::FILE, &Value::Object(object))?;
        serde_urlencoded::from_str(query)
            .map(ValidQuery)
            .map_err(|e| ApiError::invalid(format!("query string: {e}")))
    }
}

/// Names the `{param}` a [`PathParam`] reads, so that a bad path's error points at it
/// (`/orderId: …`) as a body's errors point at their field.
pub trait PathParamName {
    const NAME: &'static str;
}

/// The one `{param}` of a route's path, named by the marker `P` (one of [`param`]).
pub struct PathParam<P>(pub String, pub PhantomData<P>);

impl<P: PathParamName, S: Send + Sync> FromRequestParts<S> for PathParam<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("/{}: {e}", P::NAME)))?;
        Ok(PathParam(value, PhantomData))
    }
}

/// The route parameters read with [`PathParam`], as the routes spell them.
pub mod param {
    macro_rules! path_param_names {
        ($($marker:ident => $name:literal),* $(,)?) => {
            $(#[doc = concat!("The `{", $name, "}` of a path.")]
            pub struct $marker;

            impl super::PathParamName for $marker {
                const NAME: &'static str = $name;
            })*
        };
    }

    path_param_names! {
        OrderId => "orderId",
        PolicyId => "policyId",
        Code => "code",
    }
}

/// The token or API key a request presents: `X-Auth-Token`, else `Authorization: Bearer`.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    let unknown = || ApiError::new(ErrorCode::Unauthenticated, "X-Auth-Token is unknown");
    if let Some(value) = headers.get(AUTH_HEADER) {
        return value.to_str().map_err(|_| unknown());
    }
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| unknown())?;
        return match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token),
            _ => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "Authorization must be 'Bearer <token or API key>'",
            )),
        };
    }
    Err(ApiError::new(
        ErrorCode::Unauthenticated,
        "X-Auth-Token (or Authorization: Bearer) is required; get a token from \
         POST /v1/account/token or an API key from POST /v1/account/apiKeys",
    ))
}

/// The account behind `X-Auth-Token` (or `Authorization: Bearer`, which also takes API keys);
/// every endpoint but registration and login needs one.
pub struct Auth(pub Caller);

impl<S> FromRequestParts<S> for Auth
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = presented_token(&parts.headers)?;
        let app = AppState::from_ref(state);
        let caller = app.services.accounts.authenticate(token.trim()).await?;
        tracing::Span::current().record("account", caller.username.as_str());
        Ok(Auth(caller))
    }
}

/// Extractors of an authenticated caller with one role. They refuse anyone else (403) before
/// anything else of the request is read: who may call is decided before what they sent is
/// validated.
macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        pub struct $name(pub Caller);

        impl<S> FromRequestParts<S> for $name
        where
            S: Send + Sync,
            AppState: FromRef<S>,
        {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &S,
            ) -> Result<Self, Self::Rejection> {
                let Auth(caller) = Auth::from_request_parts(parts, state).await?;
                caller
                    .require_role($role)
                    .map_err(|e| ApiError::new(ErrorCode::Forbidden, e.to_string()))?;
                Ok($name(caller))
            }
        }
    };
}

role_extractor!(
    /// An authenticated operator.
    Operator,
    Role::Operator
);
role_extractor!(
    /// An authenticated enterprise account (compute providers and marketplace members).
    Enterprise,
    Role::Enterprise
);
role_extractor!(
    /// An authenticated trusted data space.
    DataSpace,
    Role::DataSpace
);

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::{PathParam, is_json_content_type, param};

    /// A path segment that is not UTF-8 once decoded is refused as invalid input that names
    /// the parameter, as the standard's envelope.
    #[tokio::test]
    async fn a_bad_path_parameter_is_named_in_the_error() {
        let app = Router::new().route(
            "/orders/{orderId}",
            get(|PathParam(id, _): PathParam<param::OrderId>| async move { id }),
        );
        let response = app
            .oneshot(Request::get("/orders/%FF").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(envelope["code"], "INVALID_ARGUMENT");
        let message = envelope["errorMsg"].as_str().unwrap();
        assert!(message.starts_with("/orderId: "), "{message}");
    }

    #[test]
    fn json_content_types() {
        for ok in [
            None,
            Some("application/json"),
            Some("application/json; charset=utf-8"),
            Some("Application/JSON"),
            Some("application/problem+json"),
        ] {
            assert!(is_json_content_type(ok), "{ok:?}");
        }
        for bad in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("+json"),
            Some("text/x+json"),
        ] {
            assert!(!is_json_content_type(bad), "{bad:?}");
        }
    }
}
