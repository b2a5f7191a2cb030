//! HTTP: one module per section of the standard. Each module lists its routes with their
//! documentation (`Route`), so the router, the OpenAPI document and the docs checks come from
//! one catalog.

pub mod accounts;
pub mod compute;
pub mod delivery;
pub mod demand;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod identifiers;
pub mod keys;
pub mod ledger;
pub mod matching;
pub mod notifications;
pub mod openai;
pub mod openapi;
pub mod ops;
pub mod plugins;
pub mod policies;
pub mod provider;
pub mod subscriptions;
pub mod supply;
pub mod trading;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::schema::Schemas;
use crate::services::Services;
use error::{ApiError, ErrorCode};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Everything a handler may use: the services, and what the HTTP layer itself needs to read
/// requests.
#[derive(Clone)]
pub struct AppState {
    pub services: Arc<Services>,
    pub schemas: Schemas,
    /// The largest JSON body read (`max_json_body`).
    pub max_json_body: usize,
}

/// Where a request's input comes from, for the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    None,
    Body(&'static str),
    Query(&'static str),
    /// Query parameters and a JSON body, each with its schema.
    QueryAndBody {
        query: &'static str,
        body: &'static str,
    },
    /// Query parameters and a raw `application/octet-stream` body.
    QueryAndBinary(&'static str),
    /// A raw `application/octet-stream` body.
    Binary,
    /// A `multipart/form-data` body: a JSON part `info` with this schema, then `document` file
    /// parts.
    Multipart(&'static str),
}

/// The documentation of one endpoint.
#[derive(Debug, Clone)]
pub struct RouteDoc {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    /// The clause of T/AI 123.12 it implements, or "" for liutong's own endpoints.
    pub clause: &'static str,
    pub tag: &'static str,
    pub auth: bool,
    pub input: Input,
}

pub struct Route {
    pub doc: RouteDoc,
    pub handler: MethodRouter<AppState>,
}

/// Every endpoint of the server.
pub fn catalog() -> Vec<Route> {
    let mut routes = Vec::new();
    routes.extend(ops::routes());
    routes.extend(accounts::routes());
    routes.extend(supply::routes());
    routes.extend(demand::routes());
    routes.extend(matching::routes());
    routes.extend(trading::routes());
    routes.extend(delivery::routes());
    routes.extend(ledger::routes());
    routes.extend(keys::routes());
    routes.extend(plugins::routes());
    routes.extend(policies::routes());
    routes.extend(provider::routes());
    routes.extend(identifiers::routes());
    routes.extend(notifications::routes());
    routes.extend(gateway::routes());
    routes.extend(subscriptions::routes());
    routes.extend(compute::routes());
    routes
}

pub fn router(state: AppState) -> Router {
    let routes = catalog();
    let docs: Vec<RouteDoc> = routes.iter().map(|r| r.doc.clone()).collect();
    let openapi = Arc::new(openapi::document(&docs, &state.schemas));
    let mut router = Router::new();
    for route in routes {
        router = router.route(route.doc.path, route.handler);
    }
    let router = router
        .merge(openai::router())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = Arc::clone(&openapi);
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_json_body))
        .with_state(state);
    with_middleware(router)
}

/// The layers around every route: panic containment, request ids and request logging.
pub fn with_middleware(router: Router) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    router
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let id = req
                        .headers()
                        .get(REQUEST_ID_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!(
                        "request",
                        request_id = %id,
                        method = %req.method(),
                        path = %req.uri().path(),
                        account = tracing::field::Empty,
                    )
                })
                .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::info!(
                        status = res.status().as_u16(),
                        latency_ms = latency.as_secs_f64() * 1000.0,
                        "response"
                    );
                }),
        )
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no endpoint at {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// A panic is logged with its message; the client sees only the envelope.
fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    ApiError::internal(&format!("handler panicked: {message}")).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_an_envelope_without_its_message() {
        let app = with_middleware(Router::new().route(
            "/boom",
            axum::routing::get(|| async {
                if true {
                    panic!("secret detail");
                }
                "unreachable"
            }),
        ));
        let response = app
            .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().contains_key(REQUEST_ID_HEADER));
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(body["status"], 500);
        assert_eq!(body["code"], "INTERNAL");
        assert!(body["data"].is_null());
        assert!(
            !body["errorMsg"]
                .as_str()
                .unwrap_or_default()
                .contains("secret")
        );
    }
}
