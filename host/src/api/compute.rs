//! Compute provider access, deep access (compute-provider-access §4): offerings of certified
//! providers, and orders whose resources liutong provisions, operates and reclaims through
//! the offering's provider plugin.

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::routing::{get, post};
use serde::Deserialize;

use super::error::{ApiResult, Data};
use super::extract::{
    Auth, Enterprise, Operator, PathParam, ValidJson, ValidQuery, param, request_schemas,
};
use super::subscriptions::call_context;
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::compute::{
    ActionRequest, OfferingCreated, OfferingRequest, OfferingsPage, OrderCreated, OrderRequest,
    OrderView, OrdersPage, OrdersQuery,
};
use crate::domain::compute_billing::{
    BillSyncReport, BillSyncRequest, Reconciliation, ReconciliationQuery,
};

/// `GET /v1/compute/offerings` query.
#[derive(Debug, Deserialize)]
pub struct OfferingsQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
}

request_schemas! {
    OfferingRequest => "compute.offering.json",
    OfferingsQuery => "compute.offerings.json",
    OrderRequest => "compute.order.json",
    OrdersQuery => "compute.orders.json",
    ActionRequest => "compute.action.json",
    BillSyncRequest => "admin.computeBillSync.json",
    ReconciliationQuery => "admin.computeReconciliation.json",
}

async fn create_offering(
    State(app): State<AppState>,
    Enterprise(caller): Enterprise,
    ValidJson(req): ValidJson<OfferingRequest>,
) -> ApiResult<OfferingCreated> {
    Ok(Data(
        app.services.compute.create_offering(&caller, req).await?,
    ))
}

async fn offerings(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(q): ValidQuery<OfferingsQuery>,
) -> ApiResult<OfferingsPage> {
    Ok(Data(
        app.services
            .compute
            .offerings(&caller, q.limit.as_deref(), q.offset.as_deref())
            .await?,
    ))
}

async fn create_order(
    State(app): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    ValidJson(req): ValidJson<OrderRequest>,
) -> ApiResult<OrderCreated> {
    let context = call_context(&headers)?;
    Ok(Data(
        app.services
            .compute
            .create_order(&caller, req, context.idempotency_key)
            .await?,
    ))
}

async fn orders(
    State(app): State<AppState>,
    Auth(caller): Auth,
    ValidQuery(q): ValidQuery<OrdersQuery>,
) -> ApiResult<OrdersPage> {
    Ok(Data(app.services.compute.orders(&caller, &q).await?))
}

async fn order(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::OrderId>,
) -> ApiResult<OrderView> {
    Ok(Data(app.services.compute.order(&caller, &id).await?))
}

async fn act(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::OrderId>,
    ValidJson(req): ValidJson<ActionRequest>,
) -> ApiResult<OrderView> {
    Ok(Data(app.services.compute.act(&caller, &id, &req).await?))
}

async fn reclaim(
    State(app): State<AppState>,
    Auth(caller): Auth,
    PathParam(id, _): PathParam<param::OrderId>,
) -> ApiResult<OrderView> {
    Ok(Data(app.services.compute.reclaim(&caller, &id).await?))
}

async fn bill_sync(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidJson(req): ValidJson<BillSyncRequest>,
) -> ApiResult<BillSyncReport> {
    Ok(Data(app.services.compute.sync_bills(&caller, req).await?))
}

async fn reconciliation(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidQuery(q): ValidQuery<ReconciliationQuery>,
) -> ApiResult<Reconciliation> {
    Ok(Data(
        app.services.compute.reconciliation(&caller, &q).await?,
    ))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, input| RouteDoc {
        method,
        path,
        summary,
        clause: "",
        tag: "compute",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/v1/compute/offerings",
                "A certified provider publishes a compute offering served by a provider plugin",
                Input::Body("compute.offering.json"),
            ),
            handler: post(create_offering),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/compute/offerings",
                "Compute offerings, newest first",
                Input::Query("compute.offerings.json"),
            ),
            handler: get(offerings),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/compute/orders",
                "Order an offering (Idempotency-Key): the first period is held, the resource provisioned in the background",
                Input::Body("compute.order.json"),
            ),
            handler: post(create_order),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/compute/orders",
                "The caller's compute orders (an operator's: all), newest first",
                Input::Query("compute.orders.json"),
            ),
            handler: get(orders),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/compute/orders/{orderId}",
                "A compute order: state, provider resource id, endpoint, money held and charged",
                Input::None,
            ),
            handler: get(order),
        },
        Route {
            doc: doc(
                Method::DELETE,
                "/v1/compute/orders/{orderId}",
                "Reclaim the order's resource (the worker asks the provider; REQUESTED orders end at once)",
                Input::None,
            ),
            handler: axum::routing::delete(reclaim),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/compute/orders/{orderId}/actions",
                "Start, stop, reboot or resize the order's active resource",
                Input::Body("compute.action.json"),
            ),
            handler: post(act),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/compute/bill-sync",
                "Synchronise the compute providers' bills now: list, store once, match to orders, charge through the offering's billing rule",
                Input::Body("admin.computeBillSync.json"),
            ),
            handler: post(bill_sync),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/admin/compute/reconciliation",
                "Compute bills against the platform's metering: lines without an order, orders without lines, amounts beyond the tolerance",
                Input::Query("admin.computeReconciliation.json"),
            ),
            handler: get(reconciliation),
        },
    ]
}
