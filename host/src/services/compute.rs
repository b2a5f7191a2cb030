//! Compute provider access, deep access (compute-provider-access §4): certified providers
//! publish offerings; users order them; a background worker provisions and reclaims each
//! order's resource through the offering's provider plugin, with retries and backoff, and
//! resumes after a restart (the order's client token makes provisioning idempotent). Money
//! is prepaid by the period (see `domain::compute`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use liutong_plugin_runtime::PluginKind;

use super::plugins::PluginHost;
use super::plugins::provider::{ProviderFailure, ResourceInfo};
use super::{ServiceError, ServiceResult, page_number};
use crate::config::ComputeConfig;
use crate::domain::compute::{
    ActionRequest, Offering, OfferingCreated, OfferingRequest, OfferingView, OfferingsPage, Order,
    OrderCreated, OrderEvent, OrderRequest, OrderState, OrderView, OrdersPage, OrdersQuery,
    PriceUnit, ResourceAction, is_retriable, merged_spec, period_price, periods_used,
};
use crate::domain::compute_billing::end_reserve;
use crate::domain::ledger::{
    AccountKind, COMPUTE_HOLDS_ACCOUNT, LedgerTransaction, Posting, TransactionKind,
};
use crate::domain::money::Money;
use crate::domain::notifications::backoff;
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::{Caller, DomainError, Role, new_id};
use crate::store::Store;
use crate::store::compute::{OrderStart, OrderUpdate};

mod billing;

/// Orders the worker moves at once (each mostly waits on its provider).
const IN_FLIGHT: usize = 64;

/// Active orders whose prepaid period is checked per round.
const BATCH: i64 = 32;

#[derive(Clone)]
pub struct Compute {
    store: Store,
    plugins: PluginHost,
    config: ComputeConfig,
    fee_bps: u32,
    /// The ledger's currency: bill lines in another are not charged.
    currency: String,
    wake: Arc<tokio::sync::Notify>,
    /// Held while bill lines are charged: two syncs of one server take turns there (each line
    /// is charged once either way; taking turns keeps their batches from waiting on each
    /// other's row locks).
    charging: Arc<tokio::sync::Mutex<()>>,
}

fn user(account: &str, amount: Money) -> Posting {
    Posting {
        account: account.to_owned(),
        kind: AccountKind::User,
        amount,
    }
}

fn system(account: &str, amount: Money) -> Posting {
    Posting {
        account: account.to_owned(),
        kind: AccountKind::System,
        amount,
    }
}

fn transaction(
    kind: TransactionKind,
    reference: &str,
    postings: Vec<Posting>,
) -> ServiceResult<LedgerTransaction> {
    let request = json!({"reference": reference, "kind": kind.as_str()}).to_string();
    Ok(LedgerTransaction::new(kind, reference, request, postings)?)
}

fn millis(d: u64) -> i64 {
    i64::try_from(d).unwrap_or(i64::MAX)
}

fn offering_view(o: Offering, provider: String) -> OfferingView {
    OfferingView {
        offering_id: o.id,
        provider,
        resource_type: o.resource_type,
        region: o.region,
        spec: o.spec,
        price: o.price.to_price(),
        price_unit: o.resource_type.price_unit(),
        plugin: o.plugin_id,
        code: o.code,
        billing: o.billing,
        created_at: to_rfc3339(from_millis(o.created_at)),
    }
}

pub fn order_view(o: Order) -> OrderView {
    OrderView {
        order_id: o.id,
        offering_id: o.offering_id,
        state: o.state,
        provider_resource_id: o.provider_resource_id,
        resource_state: o.resource_state,
        endpoint: o.endpoint,
        error: o.error,
        spec: o.spec,
        attempts: o.attempts,
        held: o.held.to_price(),
        charged: o.charged.to_price(),
        paid_periods: o.paid_periods,
        suspended: o.suspended_at.is_some(),
        created_at: to_rfc3339(from_millis(o.created_at)),
        active_at: o.active_at.map(|t| to_rfc3339(from_millis(t))),
        ended_at: o.ended_at.map(|t| to_rfc3339(from_millis(t))),
    }
}

impl Compute {
    pub fn new(
        store: Store,
        plugins: PluginHost,
        config: ComputeConfig,
        fee_bps: u32,
        currency: String,
    ) -> Self {
        Compute {
            store,
            plugins,
            config,
            fee_bps,
            currency,
            wake: Arc::new(tokio::sync::Notify::new()),
            charging: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The length of one prepaid period of `unit`, with the configured hour.
    fn period_ms(&self, unit: PriceUnit) -> i64 {
        let hour = millis(self.config.hour_ms);
        match unit {
            PriceUnit::Hour => hour,
            PriceUnit::GibMonth => hour.saturating_mul(PriceUnit::GibMonth.period_ms() / 3_600_000),
        }
    }

    /// `POST /v1/compute/offerings`: a certified provider enterprise publishes an offering
    /// served by one of the installed provider plugins.
    pub async fn create_offering(
        &self,
        caller: &Caller,
        req: OfferingRequest,
    ) -> ServiceResult<OfferingCreated> {
        caller.require_role(Role::Enterprise)?;
        if self
            .store
            .enterprise_id_of(&caller.account_id)
            .await?
            .is_none()
        {
            return Err(DomainError::InvalidState(
                "only a certified enterprise publishes compute offerings: submit \
                 POST /v1/provider/certification and wait for its approval"
                    .to_owned(),
            )
            .into());
        }
        let price = Money::from_price("/price", req.price)?;
        if req.region.trim().is_empty() {
            return Err(ServiceError::invalid("/region", "must not be empty"));
        }
        if !req.spec.is_object() {
            return Err(ServiceError::invalid("/spec", "must be a JSON object"));
        }
        if !req.config.is_object() {
            return Err(ServiceError::invalid("/config", "must be a JSON object"));
        }
        // The plugin must exist as a provider plugin now; the offering names it by id, so a
        // later version serves the offering's next orders.
        self.plugins
            .require(PluginKind::Provider, &req.plugin, "/plugin")
            .await?;
        if let Some(billing) = &req.billing {
            if !billing.config.is_object() {
                return Err(ServiceError::invalid(
                    "/billing/config",
                    "must be a JSON object",
                ));
            }
            self.plugins
                .require(PluginKind::Billing, &billing.plugin, "/billing/plugin")
                .await?;
        }
        let offering = Offering {
            id: new_id("cof_"),
            provider_account_id: caller.account_id.to_string(),
            resource_type: req.resource_type,
            region: req.region.trim().to_owned(),
            spec: req.spec,
            price,
            plugin_id: req.plugin,
            config: req.config,
            code: req.code,
            billing: req.billing,
            created_at: now_millis(),
        };
        self.store.insert_offering(&offering).await?;
        Ok(OfferingCreated {
            offering_id: offering.id,
        })
    }

    /// `GET /v1/compute/offerings`: every offering, newest first.
    pub async fn offerings(
        &self,
        _caller: &Caller,
        limit: Option<&str>,
        offset: Option<&str>,
    ) -> ServiceResult<OfferingsPage> {
        let limit = page_number("limit", limit, 100, (1, 1000))?;
        let offset = page_number("offset", offset, 0, (0, i64::MAX))?;
        let rows = self.store.offerings(None, limit, offset).await?;
        Ok(OfferingsPage {
            offerings: rows
                .into_iter()
                .map(|(o, provider)| offering_view(o, provider))
                .collect(),
        })
    }

    /// `POST /v1/compute/orders` with an `Idempotency-Key`: holds the first period on the
    /// caller's balance and queues the order for the worker. The same key answers the first
    /// order again.
    pub async fn create_order(
        &self,
        caller: &Caller,
        req: OrderRequest,
        idempotency_key: Option<String>,
    ) -> ServiceResult<OrderCreated> {
        let key = idempotency_key.ok_or_else(|| {
            ServiceError::invalid(
                "/Idempotency-Key",
                "ordering compute needs an Idempotency-Key header (a retried request must not \
                 order twice)",
            )
        })?;
        let offering = self
            .store
            .offering(&req.offering_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no offering {}", req.offering_id)))?;
        let spec = req.spec.unwrap_or_else(|| json!({}));
        if !spec.is_object() {
            return Err(ServiceError::invalid("/spec", "must be a JSON object"));
        }
        let spec = merged_spec(&offering.spec, &spec);
        let first = period_price(offering.resource_type, offering.price, &spec);
        let now = now_millis();
        let order = Order {
            id: new_id("cor_"),
            offering_id: offering.id.clone(),
            account_id: caller.account_id.to_string(),
            idempotency_key: key,
            // The provider's idempotency token: fixed now, sent on every attempt.
            client_token: uuid::Uuid::now_v7().to_string(),
            spec,
            state: OrderState::Requested,
            provider_resource_id: None,
            resource_state: None,
            endpoint: None,
            error: None,
            attempts: 0,
            next_attempt_at: now,
            held: first,
            charged: Money::ZERO,
            paid_periods: 1,
            suspended_at: None,
            created_at: now,
            updated_at: now,
            active_at: None,
            ended_at: None,
        };
        let hold = transaction(
            TransactionKind::Hold,
            &format!("{}:p1", order.id),
            if first.is_zero() {
                Vec::new()
            } else {
                vec![
                    user(caller.account_id.as_str(), -first),
                    system(COMPUTE_HOLDS_ACCOUNT, first),
                ]
            },
        )?;
        match self.store.start_order(&order, &hold).await? {
            OrderStart::Created => {
                self.wake.notify_one();
                Ok(OrderCreated {
                    order_id: order.id,
                    state: order.state,
                })
            }
            OrderStart::Repeated(first) => Ok(OrderCreated {
                order_id: first.id,
                state: first.state,
            }),
            OrderStart::InsufficientFunds => Err(DomainError::InsufficientFunds(format!(
                "the balance does not cover the first period of this order ({first}); nothing \
                 was ordered"
            ))
            .into()),
        }
    }

    async fn own_order(&self, caller: &Caller, id: &str) -> ServiceResult<Order> {
        let order = self
            .store
            .compute_order(id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no compute order {id}")))?;
        if order.account_id != caller.account_id.as_str() && caller.role != Role::Operator {
            // Someone else's order is not found, rather than told apart.
            return Err(ServiceError::not_found(format!("no compute order {id}")));
        }
        Ok(order)
    }

    /// `GET /v1/compute/orders/{orderId}`.
    pub async fn order(&self, caller: &Caller, id: &str) -> ServiceResult<OrderView> {
        Ok(order_view(self.own_order(caller, id).await?))
    }

    /// `GET /v1/compute/orders`: the caller's orders (an operator's: everyone's).
    pub async fn orders(&self, caller: &Caller, q: &OrdersQuery) -> ServiceResult<OrdersPage> {
        let state = match q.state.as_deref() {
            None => None,
            Some(s) => Some(OrderState::parse(s).ok_or_else(|| {
                ServiceError::invalid(
                    "/state",
                    "must be REQUESTED, PROVISIONING, ACTIVE, RECLAIMING, RECLAIMED or FAILED",
                )
            })?),
        };
        let limit = page_number("limit", q.limit.as_deref(), 100, (1, 1000))?;
        let offset = page_number("offset", q.offset.as_deref(), 0, (0, i64::MAX))?;
        let account = (caller.role != Role::Operator).then(|| caller.account_id.as_str());
        let orders = self
            .store
            .compute_orders(account, state, limit, offset)
            .await?;
        Ok(OrdersPage {
            orders: orders.into_iter().map(order_view).collect(),
        })
    }

    /// `POST /v1/compute/orders/{orderId}/actions`: start, stop, reboot or resize the active
    /// resource, through the provider plugin, now.
    pub async fn act(
        &self,
        caller: &Caller,
        id: &str,
        req: &ActionRequest,
    ) -> ServiceResult<OrderView> {
        let action = ResourceAction::from_request(req)?;
        let order = self.own_order(caller, id).await?;
        if order.state != OrderState::Active {
            return Err(ServiceError::invalid_state(format!(
                "only an ACTIVE order's resource is operated; this one is {}",
                order.state.as_str()
            )));
        }
        if order.suspended_at.is_some() && action == ResourceAction::Start {
            return Err(DomainError::PaymentRequired(
                "the resource was stopped because the balance does not cover its next period; \
                 top up the balance and it starts again"
                    .to_owned(),
            )
            .into());
        }
        let offering = self.offering_of(&order).await?;
        let resource_id = order.provider_resource_id.clone().unwrap_or_default();
        let info = self
            .plugins
            .operate_resource(&offering, &order.id, &resource_id, &action)
            .await
            .map_err(provider_error)?;
        self.store
            .set_resource_state(&order.id, info.state, &info.endpoint, now_millis())
            .await?;
        self.order(caller, id).await
    }

    /// `DELETE /v1/compute/orders/{orderId}`: reclaims the resource (the worker calls the
    /// provider). An order the worker has not taken yet ends at once, its hold returned.
    pub async fn reclaim(&self, caller: &Caller, id: &str) -> ServiceResult<OrderView> {
        let order = self.own_order(caller, id).await?;
        match order.state {
            OrderState::Requested => {
                let now = now_millis();
                let settle = self.settlement(&order, None)?;
                self.store
                    .update_order(
                        &OrderUpdate {
                            id: &order.id,
                            from: OrderState::Requested,
                            to: OrderState::Requested.on(OrderEvent::Reclaim)?,
                            provider_resource_id: None,
                            resource_state: None,
                            endpoint: None,
                            error: None,
                            attempts: order.attempts,
                            next_attempt_at: order.next_attempt_at,
                            now,
                        },
                        &settle.0,
                        Some(settle.1),
                    )
                    .await?;
            }
            OrderState::Active => {
                self.start_reclaim(&order).await?;
            }
            OrderState::Provisioning => {
                return Err(ServiceError::invalid_state(
                    "the order is being provisioned; reclaim it when it is ACTIVE",
                ));
            }
            OrderState::Reclaiming | OrderState::Reclaimed | OrderState::Failed => {}
        }
        self.order(caller, id).await
    }

    async fn start_reclaim(&self, order: &Order) -> ServiceResult<bool> {
        let moved = self
            .store
            .update_order(
                &OrderUpdate {
                    id: &order.id,
                    from: OrderState::Active,
                    to: OrderState::Active.on(OrderEvent::Reclaim)?,
                    provider_resource_id: None,
                    resource_state: None,
                    endpoint: None,
                    error: None,
                    attempts: 0,
                    next_attempt_at: now_millis(),
                    now: now_millis(),
                },
                &[],
                None,
            )
            .await?;
        self.wake.notify_one();
        Ok(moved)
    }

    async fn offering_of(&self, order: &Order) -> ServiceResult<Offering> {
        self.store
            .offering(&order.offering_id)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("order {} lost its offering", order.id)))
    }

    /// What ending `order` posts: its hold back to the user, except the reserve kept for the
    /// provider's bills still to come — what the periods it used (from ACTIVE to `ended`,
    /// none if it never was) come to, less what its bills charged already. The bills are the
    /// charge (`compute_billing`); the reserve is released when `bill_wait_ms` passes. With
    /// the amount released.
    fn settlement(
        &self,
        order: &Order,
        ended: Option<(i64, &Offering)>,
    ) -> ServiceResult<(Vec<LedgerTransaction>, Money)> {
        let used = match (ended, order.active_at) {
            (Some((at, offering)), Some(active_at)) => {
                let period = self.period_ms(offering.resource_type.price_unit());
                let used = periods_used(active_at, at, period).min(order.paid_periods.max(0));
                let per = period_price(offering.resource_type, offering.price, &order.spec);
                Money::from_minor(per.minor().saturating_mul(used))
            }
            _ => Money::ZERO,
        };
        let reserve = end_reserve(order.held, used, order.charged);
        let release = order.held - reserve;
        let mut out = Vec::new();
        if !release.is_zero() {
            out.push(transaction(
                TransactionKind::Release,
                &order.id,
                vec![
                    system(COMPUTE_HOLDS_ACCOUNT, -release),
                    user(&order.account_id, release),
                ],
            )?);
        }
        Ok((out, release))
    }

    /// The worker: keeps up to `IN_FLIGHT` orders moving at once, taking due orders whenever
    /// one finishes, a new order wakes it, or `poll_interval_ms` passes; checks the prepaid
    /// periods of active orders at most every `poll_interval_ms`. Until `shutdown` resolves;
    /// the steps in flight then finish (one cut short would be resumed by the next server).
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut steps = tokio::task::JoinSet::new();
        let mut prepaid_at: Option<tokio::time::Instant> = None;
        loop {
            let free = IN_FLIGHT.saturating_sub(steps.len());
            if free > 0 {
                let now = now_millis();
                let lease_until = now.saturating_add(millis(self.config.lease_ms));
                let limit = i64::try_from(free).unwrap_or(i64::MAX);
                let claimed = match OrderState::Requested.on(OrderEvent::Claim) {
                    Ok(to) => self
                        .store
                        .claim_due_orders(now, lease_until, limit, to)
                        .await
                        .map_err(ServiceError::from),
                    Err(e) => Err(ServiceError::from(e)),
                };
                match claimed {
                    Ok(due) => {
                        for order in due {
                            let this = self.clone();
                            steps.spawn(async move {
                                let id = order.id.clone();
                                if let Err(e) = this.step(order).await {
                                    tracing::warn!(order = %id, error = %e, "compute order step failed");
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming compute orders failed"),
                }
            }
            if prepaid_at.is_none_or(|t| t.elapsed() >= poll) {
                prepaid_at = Some(tokio::time::Instant::now());
                if let Err(e) = self.prepay().await {
                    tracing::warn!(error = %e, "compute prepaid check failed");
                }
            }
            tokio::select! {
                Some(_) = steps.join_next(), if !steps.is_empty() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {
                    while steps.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }

    /// One step of one order the worker owns.
    async fn step(&self, order: Order) -> ServiceResult<()> {
        let offering = self.offering_of(&order).await?;
        match order.state {
            // Claiming wrote PROVISIONING before the provider is called: after a crash the
            // order is resumed with the same token instead of being forgotten.
            OrderState::Requested | OrderState::Provisioning => {
                let result = self
                    .plugins
                    .provision(&offering, &order.id, &order.client_token, &order.spec)
                    .await;
                self.after_provision(&order, &offering, result).await
            }
            OrderState::Reclaiming => {
                let resource_id = order.provider_resource_id.clone().unwrap_or_default();
                let result = self
                    .plugins
                    .reclaim_resource(&offering, &order.id, &resource_id)
                    .await;
                self.after_reclaim(&order, &offering, result).await
            }
            _ => Ok(()),
        }
    }

    fn retry_at(&self, attempts: i64) -> i64 {
        let wait = backoff(
            u32::try_from(attempts).unwrap_or(u32::MAX),
            Duration::from_millis(self.config.retry_initial_ms),
            Duration::from_millis(self.config.retry_max_ms),
        );
        now_millis().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    }

    async fn after_provision(
        &self,
        order: &Order,
        offering: &Offering,
        result: Result<ResourceInfo, ProviderFailure>,
    ) -> ServiceResult<()> {
        let attempts = order.attempts + 1;
        let now = now_millis();
        let from = OrderState::Provisioning;
        match result {
            Ok(info) => {
                self.store
                    .update_order(
                        &OrderUpdate {
                            id: &order.id,
                            from,
                            to: from.on(OrderEvent::Provisioned)?,
                            provider_resource_id: Some(&info.resource_id),
                            resource_state: Some(info.state),
                            endpoint: Some(&info.endpoint),
                            error: None,
                            attempts,
                            next_attempt_at: now,
                            now,
                        },
                        &[],
                        None,
                    )
                    .await?;
                tracing::info!(order = %order.id, resource = %info.resource_id, "compute order active");
            }
            Err(failure) => {
                let retriable = match &failure {
                    ProviderFailure::Provider {
                        status,
                        unreachable,
                        ..
                    } => is_retriable(*status, *unreachable),
                    ProviderFailure::Plugin(_) => false,
                };
                let message = failure.message().to_owned();
                if retriable && attempts < i64::from(self.config.max_attempts) {
                    tracing::warn!(order = %order.id, attempts, error = %message, "provisioning failed; retrying");
                    self.store
                        .update_order(
                            &OrderUpdate {
                                id: &order.id,
                                from,
                                to: from,
                                provider_resource_id: None,
                                resource_state: None,
                                endpoint: None,
                                error: Some(&message),
                                attempts,
                                next_attempt_at: self.retry_at(attempts),
                                now,
                            },
                            &[],
                            None,
                        )
                        .await?;
                } else {
                    tracing::warn!(order = %order.id, attempts, error = %message, "provisioning failed");
                    let (ledger, released) = self.settlement(order, Some((now, offering)))?;
                    self.store
                        .update_order(
                            &OrderUpdate {
                                id: &order.id,
                                from,
                                to: from.on(OrderEvent::Failed)?,
                                provider_resource_id: None,
                                resource_state: None,
                                endpoint: None,
                                error: Some(&message),
                                attempts,
                                next_attempt_at: now,
                                now,
                            },
                            &ledger,
                            Some(released),
                        )
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn after_reclaim(
        &self,
        order: &Order,
        offering: &Offering,
        result: Result<(), ProviderFailure>,
    ) -> ServiceResult<()> {
        let attempts = order.attempts + 1;
        let now = now_millis();
        let from = OrderState::Reclaiming;
        match result {
            Ok(()) => {
                let (ledger, released) = self.settlement(order, Some((now, offering)))?;
                self.store
                    .update_order(
                        &OrderUpdate {
                            id: &order.id,
                            from,
                            to: from.on(OrderEvent::Reclaimed)?,
                            provider_resource_id: None,
                            resource_state: Some("deleted"),
                            endpoint: None,
                            error: None,
                            attempts,
                            next_attempt_at: now,
                            now,
                        },
                        &ledger,
                        Some(released),
                    )
                    .await?;
                tracing::info!(order = %order.id, %released, "compute order reclaimed");
            }
            Err(failure) => {
                // A resource is never given up: reclaiming retries until the provider
                // confirms, at most every `retry_max_ms`.
                let message = failure.message().to_owned();
                tracing::warn!(order = %order.id, attempts, error = %message, "reclaiming failed; retrying");
                self.store
                    .update_order(
                        &OrderUpdate {
                            id: &order.id,
                            from,
                            to: from,
                            provider_resource_id: None,
                            resource_state: None,
                            endpoint: None,
                            error: Some(&message),
                            attempts,
                            next_attempt_at: self.retry_at(attempts),
                            now,
                        },
                        &[],
                        None,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Prepaid periods: an active order whose next period has started holds it; when the
    /// balance does not cover it the resource is stopped, and reclaimed once
    /// `grace_period_ms` passes without the balance covering it.
    async fn prepay(&self) -> ServiceResult<()> {
        let now = now_millis();
        let hour = millis(self.config.hour_ms);
        let orders = self.store.orders_to_prepay(now, hour, BATCH).await?;
        for order in orders {
            let offering = self.offering_of(&order).await?;
            let period = self.period_ms(offering.resource_type.price_unit());
            let Some(active_at) = order.active_at else {
                continue;
            };
            let due = active_at.saturating_add(order.paid_periods.saturating_mul(period)) <= now;
            if !due && order.suspended_at.is_none() {
                continue;
            }
            let per = period_price(offering.resource_type, offering.price, &order.spec);
            let n = order.paid_periods + 1;
            let hold = transaction(
                TransactionKind::Hold,
                &format!("{}:p{n}", order.id),
                vec![
                    user(&order.account_id, -per),
                    system(COMPUTE_HOLDS_ACCOUNT, per),
                ],
            )?;
            let paid = per.is_zero()
                || self
                    .store
                    .prepay_period(&order.id, order.paid_periods, &hold, per, now)
                    .await?;
            let resource_id = order.provider_resource_id.clone().unwrap_or_default();
            if paid {
                if order.suspended_at.is_some() {
                    // Paid again within the grace period: the resource runs again.
                    let started = self
                        .plugins
                        .operate_resource(
                            &offering,
                            &order.id,
                            &resource_id,
                            &ResourceAction::Start,
                        )
                        .await;
                    if let Ok(info) = started {
                        self.store
                            .set_resource_state(&order.id, info.state, &info.endpoint, now)
                            .await?;
                    }
                }
                continue;
            }
            match order.suspended_at {
                None => {
                    if self.store.suspend_order(&order.id, now).await? {
                        tracing::info!(order = %order.id, "balance exhausted; stopping the resource");
                        match self
                            .plugins
                            .operate_resource(
                                &offering,
                                &order.id,
                                &resource_id,
                                &ResourceAction::Stop,
                            )
                            .await
                        {
                            Ok(info) => {
                                self.store
                                    .set_resource_state(&order.id, info.state, &info.endpoint, now)
                                    .await?;
                            }
                            // Resources that do not stop (files, buckets) wait out the grace.
                            Err(e) => {
                                tracing::info!(order = %order.id, error = %e.message(), "the resource was not stopped");
                            }
                        }
                    }
                }
                Some(since) if since.saturating_add(millis(self.config.grace_period_ms)) <= now => {
                    tracing::info!(order = %order.id, "grace period over; reclaiming");
                    self.start_reclaim(&order).await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A provider's answer to a user's request, as the API reports it.
fn provider_error(f: ProviderFailure) -> ServiceError {
    match f {
        ProviderFailure::Provider {
            unsupported: true,
            message,
            ..
        } => ServiceError::invalid_state(message),
        ProviderFailure::Provider {
            status, message, ..
        } => ServiceError::Upstream {
            timed_out: matches!(status, Some(504 | 408)),
            message,
        },
        ProviderFailure::Plugin(m) => ServiceError::PluginFailed(m),
    }
}
