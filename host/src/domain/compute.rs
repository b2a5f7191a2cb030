//! Compute provider access, deep access (compute-provider-access §4): offerings of compute
//! resources by certified providers, and orders that a background worker provisions,
//! operates and reclaims through the offering's provider plugin.
//!
//! An order's lifecycle ([`OrderState`]):
//!
//! ```text
//! REQUESTED ──claim──▶ PROVISIONING ──provisioned──▶ ACTIVE ──reclaim──▶ RECLAIMING ──reclaimed──▶ RECLAIMED
//!     │                    │   ▲ (retry, resume after a restart)
//!     │ reclaim            │   └───────┘
//!     ▼                    ▼ failed
//!  RECLAIMED             FAILED
//! ```
//!
//! Money is prepaid per period (an hour; a GiB-month for storage services): ordering holds
//! the first period, and an active order holds each further period when it starts. When the
//! balance cannot cover the next period the resource is stopped; it is reclaimed when the
//! grace period passes without the balance covering it. The charge is the provider's bill
//! (`compute_billing`): at the end the hold is released except a reserve for the bills still
//! to come.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DomainError;
use super::compute_billing::OfferingBilling;
use super::money::Money;

/// A compute resource type (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    CloudHost,
    BareMetal,
    FileService,
    StorageService,
}

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [
        ResourceType::CloudHost,
        ResourceType::BareMetal,
        ResourceType::FileService,
        ResourceType::StorageService,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::CloudHost => "cloud_host",
            ResourceType::BareMetal => "bare_metal",
            ResourceType::FileService => "file_service",
            ResourceType::StorageService => "storage_service",
        }
    }

    pub fn parse(s: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// What the price is per: storage by the GiB-month, everything else by the hour.
    pub fn price_unit(self) -> PriceUnit {
        match self {
            ResourceType::StorageService => PriceUnit::GibMonth,
            _ => PriceUnit::Hour,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceUnit {
    Hour,
    GibMonth,
}

impl PriceUnit {
    /// The length of one prepaid period, in milliseconds (a month counts 30 days).
    pub fn period_ms(self) -> i64 {
        match self {
            PriceUnit::Hour => 3_600_000,
            PriceUnit::GibMonth => 30 * 86_400_000,
        }
    }
}

/// The lifecycle of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OrderState {
    Requested,
    Provisioning,
    Active,
    Reclaiming,
    Reclaimed,
    Failed,
}

/// What moves an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// The worker takes a requested order: the provider is about to be called.
    Claim,
    /// The provider answered the resource.
    Provisioned,
    /// The provider refused, a plugin failed, or the retries ran out.
    Failed,
    /// The user (or the balance running out) asks for the resource back.
    Reclaim,
    /// The provider confirmed the resource is gone.
    Reclaimed,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Requested => "REQUESTED",
            OrderState::Provisioning => "PROVISIONING",
            OrderState::Active => "ACTIVE",
            OrderState::Reclaiming => "RECLAIMING",
            OrderState::Reclaimed => "RECLAIMED",
            OrderState::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<OrderState> {
        [
            OrderState::Requested,
            OrderState::Provisioning,
            OrderState::Active,
            OrderState::Reclaiming,
            OrderState::Reclaimed,
            OrderState::Failed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Nothing happens to the order any more.
    pub fn is_final(self) -> bool {
        matches!(self, OrderState::Reclaimed | OrderState::Failed)
    }

    /// The worker has something to do for an order in this state.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            OrderState::Requested | OrderState::Provisioning | OrderState::Reclaiming
        )
    }

    /// The state after `event`, or why it cannot happen now. A requested order that is
    /// reclaimed before the worker took it never reached the provider: it ends at once.
    pub fn on(self, event: OrderEvent) -> Result<OrderState, DomainError> {
        use OrderEvent as E;
        use OrderState as S;
        let next = match (self, event) {
            (S::Requested, E::Claim) => S::Provisioning,
            // Resuming after a restart: the same client token is sent again.
            (S::Provisioning, E::Claim) => S::Provisioning,
            (S::Provisioning, E::Provisioned) => S::Active,
            (S::Requested | S::Provisioning, E::Failed) => S::Failed,
            (S::Requested, E::Reclaim) => S::Reclaimed,
            (S::Active, E::Reclaim) => S::Reclaiming,
            (S::Reclaiming, E::Reclaim) => S::Reclaiming,
            (S::Reclaiming, E::Reclaimed) => S::Reclaimed,
            (state, event) => {
                return Err(DomainError::InvalidState(format!(
                    "an order in state {} cannot be {}",
                    state.as_str(),
                    match event {
                        E::Claim => "provisioned",
                        E::Provisioned => "marked active",
                        E::Failed => "marked failed",
                        E::Reclaim => "reclaimed",
                        E::Reclaimed => "marked reclaimed",
                    }
                )));
            }
        };
        Ok(next)
    }
}

/// An operation on an active resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceAction {
    Start,
    Stop,
    Reboot,
    /// A new size, as the offering's spec names sizes (e.g. an instance type).
    Resize(String),
}

impl ResourceAction {
    /// `{action: "start"|"stop"|"reboot"|"resize", size?}`.
    pub fn from_request(r: &ActionRequest) -> Result<ResourceAction, DomainError> {
        match (r.action.as_str(), r.size.as_deref()) {
            ("start", None) => Ok(ResourceAction::Start),
            ("stop", None) => Ok(ResourceAction::Stop),
            ("reboot", None) => Ok(ResourceAction::Reboot),
            ("resize", Some(size)) if !size.trim().is_empty() => {
                Ok(ResourceAction::Resize(size.trim().to_owned()))
            }
            ("resize", _) => Err(DomainError::invalid("/size", "resize needs a size")),
            ("start" | "stop" | "reboot", Some(_)) => {
                Err(DomainError::invalid("/size", "only resize takes a size"))
            }
            (other, _) => Err(DomainError::invalid(
                "/action",
                format!("'{other}' is not start, stop, reboot or resize"),
            )),
        }
    }
}

/// Whether a failed provider call is worth repeating: the provider could not be reached or
/// answered a server-side or throttling status. Anything else (a refused request, a bad
/// config, a plugin that traps) fails the same way again.
pub fn is_retriable(upstream_status: Option<u16>, unreachable: bool) -> bool {
    unreachable || matches!(upstream_status, Some(s) if s >= 500 || s == 429 || s == 408)
}

/// The spec an order provisions: the offering's, with the order's keys over it.
pub fn merged_spec(offering: &Value, order: &Value) -> Value {
    let mut merged = offering.clone();
    if let (Some(m), Some(o)) = (merged.as_object_mut(), order.as_object()) {
        for (k, v) in o {
            m.insert(k.clone(), v.clone());
        }
    }
    merged
}

/// The price of one prepaid period of an order: the offering's price, times the size in GiB
/// (`spec.sizeGiB`, at least 1) for storage services.
pub fn period_price(resource_type: ResourceType, price: Money, spec: &Value) -> Money {
    match resource_type.price_unit() {
        PriceUnit::Hour => price,
        PriceUnit::GibMonth => {
            let gib = spec
                .get("sizeGiB")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .max(1);
            Money::from_minor(price.minor().saturating_mul(gib))
        }
    }
}

/// How many periods an order has used from `active_at` to `until` (a started period counts).
pub fn periods_used(active_at: i64, until: i64, period_ms: i64) -> i64 {
    if until <= active_at || period_ms <= 0 {
        return if until >= active_at { 1 } else { 0 };
    }
    ((until - active_at) + period_ms - 1) / period_ms
}

/// `POST /v1/compute/offerings`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferingRequest {
    pub resource_type: ResourceType,
    pub region: String,
    pub spec: Value,
    /// Yuan per hour (per GiB-month for storage services).
    pub price: f64,
    pub plugin: String,
    pub config: Value,
    #[serde(default)]
    pub code: Option<String>,
    /// The billing rule that prices the provider's bill lines (the native rule when absent).
    #[serde(default)]
    pub billing: Option<OfferingBilling>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferingCreated {
    pub offering_id: String,
}

/// An offering, as stored.
#[derive(Debug, Clone)]
pub struct Offering {
    pub id: String,
    pub provider_account_id: String,
    pub resource_type: ResourceType,
    pub region: String,
    pub spec: Value,
    pub price: Money,
    pub plugin_id: String,
    pub config: Value,
    pub code: Option<String>,
    pub billing: Option<OfferingBilling>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferingView {
    pub offering_id: String,
    pub provider: String,
    pub resource_type: ResourceType,
    pub region: String,
    pub spec: Value,
    pub price: f64,
    pub price_unit: PriceUnit,
    pub plugin: String,
    pub code: Option<String>,
    pub billing: Option<OfferingBilling>,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OfferingsPage {
    pub offerings: Vec<OfferingView>,
}

/// `POST /v1/compute/orders`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRequest {
    pub offering_id: String,
    #[serde(default)]
    pub spec: Option<Value>,
}

/// `POST /v1/compute/orders/{orderId}/actions`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionRequest {
    pub action: String,
    #[serde(default)]
    pub size: Option<String>,
}

/// `GET /v1/compute/orders` query.
#[derive(Debug, Clone, Deserialize)]
pub struct OrdersQuery {
    pub state: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// An order, as stored.
#[derive(Debug, Clone)]
pub struct Order {
    pub id: String,
    pub offering_id: String,
    pub account_id: String,
    pub idempotency_key: String,
    pub client_token: String,
    pub spec: Value,
    pub state: OrderState,
    pub provider_resource_id: Option<String>,
    pub resource_state: Option<String>,
    pub endpoint: Option<Value>,
    pub error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub held: Money,
    pub charged: Money,
    pub paid_periods: i64,
    pub suspended_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub active_at: Option<i64>,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub offering_id: String,
    pub state: OrderState,
    pub provider_resource_id: Option<String>,
    /// The provider's own state of the resource (running, stopped, available…).
    pub resource_state: Option<String>,
    /// How to reach the resource, as the provider describes it.
    pub endpoint: Option<Value>,
    pub error: Option<String>,
    pub spec: Value,
    pub attempts: i64,
    pub held: f64,
    pub charged: f64,
    pub paid_periods: i64,
    /// Stopped because the balance ran out: reclaimed after the grace period.
    pub suspended: bool,
    pub created_at: String,
    pub active_at: Option<String>,
    pub ended_at: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    pub order_id: String,
    pub state: OrderState,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrdersPage {
    pub orders: Vec<OrderView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EVENTS: [OrderEvent; 5] = [
        OrderEvent::Claim,
        OrderEvent::Provisioned,
        OrderEvent::Failed,
        OrderEvent::Reclaim,
        OrderEvent::Reclaimed,
    ];

    #[test]
    fn the_happy_path() {
        let mut s = OrderState::Requested;
        for e in [
            OrderEvent::Claim,
            OrderEvent::Provisioned,
            OrderEvent::Reclaim,
            OrderEvent::Reclaimed,
        ] {
            s = s.on(e).unwrap();
        }
        assert_eq!(s, OrderState::Reclaimed);
        assert!(OrderState::Active.on(OrderEvent::Claim).is_err());
        assert_eq!(
            OrderState::Requested.on(OrderEvent::Reclaim).unwrap(),
            OrderState::Reclaimed
        );
    }

    #[test]
    fn actions_and_prices() {
        let r = |a: &str, s: Option<&str>| ActionRequest {
            action: a.into(),
            size: s.map(Into::into),
        };
        assert_eq!(
            ResourceAction::from_request(&r("resize", Some("t3.large"))).unwrap(),
            ResourceAction::Resize("t3.large".into())
        );
        assert!(ResourceAction::from_request(&r("resize", None)).is_err());
        assert!(ResourceAction::from_request(&r("stop", Some("x"))).is_err());
        assert!(ResourceAction::from_request(&r("explode", None)).is_err());
        let spec = serde_json::json!({"sizeGiB": 10});
        assert_eq!(
            period_price(ResourceType::StorageService, Money::from_minor(3), &spec),
            Money::from_minor(30)
        );
        assert_eq!(
            period_price(ResourceType::CloudHost, Money::from_minor(3), &spec),
            Money::from_minor(3)
        );
        assert_eq!(periods_used(0, 1, 3_600_000), 1);
        assert_eq!(periods_used(0, 3_600_000, 3_600_000), 1);
        assert_eq!(periods_used(0, 3_600_001, 3_600_000), 2);
        assert_eq!(periods_used(5, 5, 3_600_000), 1);
        assert!(is_retriable(None, true));
        assert!(is_retriable(Some(503), false));
        assert!(!is_retriable(Some(400), false));
        assert_eq!(
            merged_spec(
                &serde_json::json!({"a": 1, "b": 2}),
                &serde_json::json!({"b": 3})
            ),
            serde_json::json!({"a": 1, "b": 3})
        );
    }

    proptest! {
        /// Whatever happens, in any order: a final state never changes, ACTIVE is reached
        /// only from PROVISIONING, RECLAIMED only from RECLAIMING or an untouched REQUESTED,
        /// and a resource the provider made (ACTIVE) is never FAILED afterwards — so it is
        /// never forgotten unreclaimed.
        #[test]
        fn the_lifecycle_holds_its_invariants(events in proptest::collection::vec(0usize..5, 0..40)) {
            let mut state = OrderState::Requested;
            let mut provisioned = false;
            for i in events {
                let event = EVENTS[i];
                if let Ok(next) = state.on(event) {
                    prop_assert!(!state.is_final(), "{state:?} moved to {next:?}");
                    if next == OrderState::Active {
                        prop_assert_eq!(state, OrderState::Provisioning);
                        provisioned = true;
                    }
                    if next == OrderState::Reclaimed {
                        prop_assert!(matches!(state, OrderState::Reclaiming | OrderState::Requested));
                    }
                    if provisioned {
                        prop_assert_ne!(next, OrderState::Failed);
                    }
                    state = next;
                }
            }
        }
    }
}
