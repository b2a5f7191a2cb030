//! A.4 and A.5: model and application subscriptions — publish, subscribe, call through the
//! publication's adapter plugin, settle both sides — and the reads around them (orders, their
//! usage, what is subscribable).

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use super::error::{ApiError, ApiResult, Data};
use super::extract::{Auth, PathParam, ValidJson, ValidQuery, param, request_schemas};
use super::{AppState, Input, REQUEST_ID_HEADER, Route, RouteDoc};
use crate::domain::subscriptions::{
    AppDelivery, AppProviderSettlement, AppPublish, AppSubscribe, AppUserSettlement, Delivered,
    Kind, ModelDelivery, ModelProviderSettlement, ModelPublish, ModelSubscribe,
    ModelUserSettlement, OrderView, Published, Settled, Subscribed,
};
use crate::services::subscriptions::CallContext;

/// `GET /v1/orders/{orderId}/usage` query.
#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// `GET /v1/publications` query.
#[derive(Debug, Deserialize)]
pub struct PublicationsQuery {
    pub kind: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

request_schemas! {
    ModelPublish => "model.publish.json",
    ModelSubscribe => "model.subscribe.json",
    ModelDelivery => "model.delivery.json",
    ModelUserSettlement => "model.userSettlement.json",
    ModelProviderSettlement => "model.providerSettlement.json",
    AppPublish => "application.publish.json",
    AppSubscribe => "application.subscribe.json",
    AppDelivery => "application.delivery.json",
    AppUserSettlement => "application.userSettlement.json",
    AppProviderSettlement => "application.providerSettlement.json",
    UsageQuery => "orders.usage.json",
    PublicationsQuery => "publications.list.json",
}

/// The header that makes a delivery idempotent.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The idempotency key and request id of a call.
pub fn call_context(headers: &HeaderMap) -> Result<CallContext, ApiError> {
    let idempotency_key = match headers.get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => {
            let key = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| {
                    !k.is_empty()
                        && k.len() <= MAX_IDEMPOTENCY_KEY
                        && k.bytes().all(|b| b.is_ascii_graphic())
                })
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "the {IDEMPOTENCY_HEADER} header must be 1-{MAX_IDEMPOTENCY_KEY} \
                         printable ASCII characters"
                    ))
                })?;
            Some(key.to_owned())
        }
    };
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(CallContext {
        idempotency_key,
        request_id,
    })
}

async fn model_publish(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<ModelPublish>,
) -> ApiResult<Published> {
    Ok(Data(
        app.services
            .subscriptions
            .publish(&caller, req.into())
            .await?,
    ))
}

async fn model_subscribe(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<ModelSubscribe>,
) -> ApiResult<Subscribed> {
    Ok(Data(
        app.services
            .subscriptions
            .subscribe(&caller, Kind::Model, req.into())
            .await?,
    ))
}

async fn model_delivery(
    State(app): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ValidJson(req): ValidJson<ModelDelivery>,
) -> ApiResult<Delivered> {
    let ctx = call_context(&headers)?;
    Ok(Data(
        app.services
            .subscriptions
            .deliver(&caller, req.into(), ctx)
            .await?,
    ))
}

async fn model_user_settlement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<ModelUserSettlement>,
) -> ApiResult<Settled> {
    Ok(Data(
        app.services
            .subscriptions
            .user_settlement(
                &caller,
                Kind::Model,
                &req.subscriber_id,
                &req.order_id,
                &req.payment_proof,
            )
            .await?,
    ))
}

async fn model_provider_settlement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<ModelProviderSettlement>,
) -> ApiResult<Settled> {
    Ok(Data(
        app.services
            .subscriptions
            .provider_settlement(
                &caller,
                Kind::Model,
                &req.publisher_id,
                "publisherId",
                &req.order_id,
                &req.credit_info,
            )
            .await?,
    ))
}

async fn app_publish(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<AppPublish>,
) -> ApiResult<Published> {
    Ok(Data(
        app.services
            .subscriptions
            .publish(&caller, req.into())
            .await?,
    ))
}

async fn app_subscribe(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<AppSubscribe>,
) -> ApiResult<Subscribed> {
    Ok(Data(
        app.services
            .subscriptions
            .subscribe(&caller, Kind::Application, req.into())
            .await?,
    ))
}

async fn app_delivery(
    State(app): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ValidJson(req): ValidJson<AppDelivery>,
) -> ApiResult<Delivered> {
    let ctx = call_context(&headers)?;
    Ok(Data(
        app.services
            .subscriptions
            .deliver(&caller, req.into(), ctx)
            .await?,
    ))
}

async fn app_user_settlement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(req): ValidQuery<AppUserSettlement>,
) -> ApiResult<Settled> {
    let proof: Value = serde_json::from_str(&req.payment_proof)
        .map_err(|e| ApiError::invalid(format!("/paymentProof: is not JSON: {e}")))?;
    Ok(Data(
        app.services
            .subscriptions
            .user_settlement(
                &caller,
                Kind::Application,
                &req.subscriber_id,
                &req.order_id,
                &proof,
            )
            .await?,
    ))
}

async fn app_provider_settlement(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidJson(req): ValidJson<AppProviderSettlement>,
) -> ApiResult<Settled> {
    Ok(Data(
        app.services
            .subscriptions
            .provider_settlement(
                &caller,
                Kind::Application,
                &req.subscriber_id,
                "subscriberId",
                &req.order_id,
                &req.credit_info,
            )
            .await?,
    ))
}

async fn order(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::OrderId>,
) -> ApiResult<OrderView> {
    Ok(Data(
        app.services.subscriptions.order_view(&caller, &id).await?,
    ))
}

async fn order_usage(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::OrderId>,
    ValidQuery(q): ValidQuery<UsageQuery>,
) -> ApiResult<Value> {
    Ok(Data(
        app.services
            .subscriptions
            .usage(&caller, &id, q.limit.as_deref(), q.offset.as_deref())
            .await?,
    ))
}

async fn publications(
    State(app): State<AppState>,
    Auth(_caller): Auth,
    ValidQuery(q): ValidQuery<PublicationsQuery>,
) -> ApiResult<Value> {
    Ok(Data(
        app.services
            .subscriptions
            .publications(q.kind.as_deref(), q.limit.as_deref(), q.offset.as_deref())
            .await?,
    ))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, clause, input| RouteDoc {
        method,
        path,
        summary,
        clause,
        tag: "subscriptions",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/v1/model/publish",
                "Publish a registered model for subscription (its adapter must be granted the api)",
                "A.4.1",
                Input::Body("model.publish.json"),
            ),
            handler: post(model_publish),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/model/subscribe",
                "Subscribe to a published model: an order and its signed license",
                "A.4.2",
                Input::Body("model.subscribe.json"),
            ),
            handler: post(model_subscribe),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/model/delivery",
                "Call a subscribed model through its adapter, metered and paid exactly once (Idempotency-Key)",
                "A.4.3",
                Input::Body("model.delivery.json"),
            ),
            handler: post(model_delivery),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/model/userSettlement",
                "Subscriber settlement: pay the next fixed term, or close the metered usage into a signed statement",
                "A.4.4",
                Input::Body("model.userSettlement.json"),
            ),
            handler: post(model_user_settlement),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/model/providerSettlement",
                "Provider settlement: credit the publisher's share of everything paid and not yet paid out",
                "A.4.5",
                Input::Body("model.providerSettlement.json"),
            ),
            handler: post(model_provider_settlement),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/application/publish",
                "Publish a registered application for subscription (its adapter must be granted the url)",
                "A.5.1",
                Input::Body("application.publish.json"),
            ),
            handler: post(app_publish),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/application/subscribe",
                "Subscribe to a published application: an order and its signed license",
                "A.5.2",
                Input::Body("application.subscribe.json"),
            ),
            handler: post(app_subscribe),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/application/delivery",
                "Call a subscribed application through its adapter, metered and paid exactly once (Idempotency-Key)",
                "A.5.3",
                Input::Body("application.delivery.json"),
            ),
            handler: post(app_delivery),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/application/userSettlement",
                "Subscriber settlement (query parameters, as the standard says)",
                "A.5.4",
                Input::Query("application.userSettlement.json"),
            ),
            handler: get(app_user_settlement),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/application/providerSettlement",
                "Provider settlement (the standard names the publisher subscriberId)",
                "A.5.5",
                Input::Body("application.providerSettlement.json"),
            ),
            handler: post(app_provider_settlement),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/orders/{orderId}",
                "A subscription order: status, term, usage and money so far, license",
                "",
                Input::None,
            ),
            handler: get(order),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/orders/{orderId}/usage",
                "The usage records of an order (one per call or paid term), newest first",
                "",
                Input::Query("orders.usage.json"),
            ),
            handler: get(order_usage),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/publications",
                "What is subscribable: published models and applications, newest first",
                "",
                Input::Query("publications.list.json"),
            ),
            handler: get(publications),
        },
    ]
}
