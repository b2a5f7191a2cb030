//! Operations endpoints: liveness and readiness.

use axum::extract::State;
use axum::http::Method;
use axum::routing::get;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Data, ErrorCode};
use super::{AppState, Input, Route, RouteDoc};
use crate::services::ops::Readiness;

/// The process is up and serving.
async fn healthz() -> ApiResult<Value> {
    Ok(Data(json!({ "healthy": true })))
}

/// The database answers.
async fn readyz(State(app): State<AppState>) -> ApiResult<Readiness> {
    Ok(Data(app.services.ops.readiness().await?))
}

/// Prometheus text exposition (no envelope: scrapers read this format). Off when
/// `metrics = false`.
async fn metrics(State(app): State<AppState>) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let Some(text) = app.services.ops.metrics_text()? else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "metrics are turned off (metrics = false)",
        ));
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

pub fn routes() -> Vec<Route> {
    let doc = |path, summary| RouteDoc {
        method: Method::GET,
        path,
        summary,
        clause: "",
        tag: "operations",
        auth: false,
        input: Input::None,
    };
    vec![
        Route {
            doc: doc("/healthz", "Liveness: the process is up"),
            handler: get(healthz),
        },
        Route {
            doc: doc("/readyz", "Readiness: the database is reachable"),
            handler: get(readyz),
        },
        Route {
            doc: doc(
                "/metrics",
                "Prometheus metrics (text format, no envelope): plugin call counters and latency",
            ),
            handler: get(metrics),
        },
    ]
}
