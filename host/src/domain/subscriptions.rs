//! Model and application subscriptions (A.4, A.5): publications, orders, charges, and the
//! native price rules. Pure: no I/O.
//!
//! Money moves in two ways:
//!
//! - **metered**: every call is paid from the subscriber's balance as it happens. Before the
//!   upstream is called, the *hold* — the charge of the largest usage the call can be billed
//!   for ([`hold_usage`]) — moves from the subscriber to `system:holds`; after it, the actual
//!   charge (at most the hold) moves to `system:subscriptions` and the rest returns to the
//!   subscriber. A call the balance cannot hold is refused before the upstream is called.
//! - **fixed_term**: `userSettlement` pays one term (`termDays`) at a time into
//!   `system:subscriptions`; calls within a paid term cost nothing more.
//!
//! `providerSettlement` moves everything paid and not yet paid out from `system:subscriptions`
//! to the publisher (its share) and `system:fees` (the platform fee), exactly once per charge.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DomainError;
use super::billing::{Charge, LineItem, fee_of};
use super::money::Money;

/// Where holds wait while their call runs.
pub const HOLDS_ACCOUNT: &str = "system:holds";
/// Where paid subscription money waits for its provider settlement.
pub const SUBSCRIPTIONS_ACCOUNT: &str = "system:subscriptions";
/// Output tokens a tokens-metered call is held for when the publication sets no `maxTokens`.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// Milliseconds per hour: a `duration` price is per hour.
pub const MS_PER_HOUR: i128 = 3_600_000;
pub const MS_PER_DAY: i64 = 86_400_000;

/// What is published: a model (A.4) or an application (A.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Model,
    Application,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Model => "model",
            Kind::Application => "application",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "model" => Some(Kind::Model),
            "application" => Some(Kind::Application),
            _ => None,
        }
    }

    /// The request field naming the registered resource (`modelId`, `appId`).
    pub fn id_field(self) -> &'static str {
        match self {
            Kind::Model => "/modelId",
            Kind::Application => "/appId",
        }
    }

    /// The request field naming the upstream (`api`, `url`).
    pub fn endpoint_field(self) -> &'static str {
        match self {
            Kind::Model => "/api",
            Kind::Application => "/url",
        }
    }
}

/// A.4/A.5 `billingType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillingType {
    FixedTerm,
    Metered,
}

impl BillingType {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingType::FixedTerm => "fixed_term",
            BillingType::Metered => "metered",
        }
    }

    pub fn parse(s: &str) -> Option<BillingType> {
        match s {
            "fixed_term" => Some(BillingType::FixedTerm),
            "metered" => Some(BillingType::Metered),
            _ => None,
        }
    }
}

/// What usage is counted in: `price` is per call, per 1,000 tokens or per hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Calls,
    Tokens,
    Duration,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Calls => "calls",
            Unit::Tokens => "tokens",
            Unit::Duration => "duration",
        }
    }

    pub fn parse(s: &str) -> Option<Unit> {
        match s {
            "calls" => Some(Unit::Calls),
            "tokens" => Some(Unit::Tokens),
            "duration" => Some(Unit::Duration),
            _ => None,
        }
    }
}

/// A publication's `billingMethod` (JSON), as the schema lets it through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BillingMethod {
    pub unit: Unit,
    /// Yuan: per call, per 1,000 tokens, per hour (metered) or per term (fixed_term).
    pub price: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term_days: Option<i64>,
    /// Output tokens a tokens-metered call is held for (default 4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// A billing plugin id, and its parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

/// `POST /v1/model/publish`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelPublish {
    pub publisher_id: String,
    pub model_id: String,
    pub billing_type: BillingType,
    pub billing_method: BillingMethod,
    pub api: String,
    #[serde(default)]
    pub adapter: Option<String>,
    #[serde(default)]
    pub adapter_config: Option<Value>,
}

/// `POST /v1/application/publish`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPublish {
    pub publisher_id: String,
    pub app_id: String,
    pub billing_type: BillingType,
    pub billing_method: BillingMethod,
    pub url: String,
    #[serde(default)]
    pub adapter: Option<String>,
    #[serde(default)]
    pub adapter_config: Option<Value>,
}

/// Either publish request, in one shape.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub kind: Kind,
    pub publisher: String,
    pub data_id: String,
    pub billing_type: BillingType,
    pub billing_method: BillingMethod,
    pub endpoint: String,
    pub adapter: Option<String>,
    pub adapter_config: Option<Value>,
}

impl From<ModelPublish> for PublishRequest {
    fn from(r: ModelPublish) -> Self {
        PublishRequest {
            kind: Kind::Model,
            publisher: r.publisher_id,
            data_id: r.model_id,
            billing_type: r.billing_type,
            billing_method: r.billing_method,
            endpoint: r.api,
            adapter: r.adapter,
            adapter_config: r.adapter_config,
        }
    }
}

impl From<AppPublish> for PublishRequest {
    fn from(r: AppPublish) -> Self {
        PublishRequest {
            kind: Kind::Application,
            publisher: r.publisher_id,
            data_id: r.app_id,
            billing_type: r.billing_type,
            billing_method: r.billing_method,
            endpoint: r.url,
            adapter: r.adapter,
            adapter_config: r.adapter_config,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Published {
    #[serde(rename = "publishId")]
    pub publish_id: String,
}

/// `POST /v1/model/subscribe` (the standard's `subscribeId`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSubscribe {
    pub subscribe_id: String,
    pub publish_id: String,
    pub billing_type: BillingType,
    pub billing_method: Unit,
}

/// `POST /v1/application/subscribe`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSubscribe {
    pub subscriber_id: String,
    pub publish_id: String,
    pub billing_type: BillingType,
    pub billing_method: Unit,
}

#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub subscriber: String,
    pub publish_id: String,
    pub billing_type: BillingType,
    pub unit: Unit,
}

impl From<ModelSubscribe> for SubscribeRequest {
    fn from(r: ModelSubscribe) -> Self {
        SubscribeRequest {
            subscriber: r.subscribe_id,
            publish_id: r.publish_id,
            billing_type: r.billing_type,
            unit: r.billing_method,
        }
    }
}

impl From<AppSubscribe> for SubscribeRequest {
    fn from(r: AppSubscribe) -> Self {
        SubscribeRequest {
            subscriber: r.subscriber_id,
            publish_id: r.publish_id,
            billing_type: r.billing_type,
            unit: r.billing_method,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Subscribed {
    #[serde(rename = "orderId")]
    pub order_id: String,
    pub licenses: Value,
}

/// `POST /v1/model/delivery`: `input` is a string.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelDelivery {
    pub api: String,
    pub licenses: Value,
    pub input: String,
}

/// `POST /v1/application/delivery`: `input` is JSON.
#[derive(Debug, Clone, Deserialize)]
pub struct AppDelivery {
    pub url: String,
    pub licenses: Value,
    pub input: Value,
}

/// Either delivery, in one shape: `input` as the adapter receives it (text).
#[derive(Debug, Clone)]
pub struct DeliveryRequest {
    pub kind: Kind,
    pub endpoint: String,
    pub licenses: Value,
    pub input: String,
}

impl From<ModelDelivery> for DeliveryRequest {
    fn from(r: ModelDelivery) -> Self {
        DeliveryRequest {
            kind: Kind::Model,
            endpoint: r.api,
            licenses: r.licenses,
            input: r.input,
        }
    }
}

impl From<AppDelivery> for DeliveryRequest {
    fn from(r: AppDelivery) -> Self {
        DeliveryRequest {
            kind: Kind::Application,
            endpoint: r.url,
            licenses: r.licenses,
            input: r.input.to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivered {
    pub output: Value,
}

/// `POST /v1/model/userSettlement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelUserSettlement {
    pub subscriber_id: String,
    pub order_id: String,
    pub payment_proof: Value,
}

/// `GET /v1/application/userSettlement`: query parameters, `paymentProof` a JSON string.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppUserSettlement {
    pub subscriber_id: String,
    pub order_id: String,
    pub payment_proof: String,
}

/// `POST /v1/model/providerSettlement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelProviderSettlement {
    pub publisher_id: String,
    pub order_id: String,
    pub credit_info: Value,
}

/// `POST /v1/application/providerSettlement`: the standard names the publisher
/// `subscriberId`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProviderSettlement {
    pub subscriber_id: String,
    pub order_id: String,
    pub credit_info: Value,
}

/// The answer of both settlements: the order and the signed statement.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Settled {
    #[serde(rename = "orderId")]
    pub order_id: String,
    pub statement: Value,
}

/// The only payment and credit method: the account's liutong balance.
pub const BALANCE_METHOD: &str = "balance";

/// Checks a `paymentProof` / `creditInfo`: `{"method": "balance"}`.
pub fn check_method(field: &str, value: &Value) -> Result<(), DomainError> {
    match value.get("method").and_then(Value::as_str) {
        Some(BALANCE_METHOD) => Ok(()),
        Some(other) => Err(DomainError::invalid(
            &format!("{field}/method"),
            format!("'{other}' is not supported; the supported methods are: \"{BALANCE_METHOD}\""),
        )),
        None => Err(DomainError::invalid(
            &format!("{field}/method"),
            format!("is required; the supported methods are: \"{BALANCE_METHOD}\""),
        )),
    }
}

/// A stored publication.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub id: String,
    pub kind: Kind,
    pub resource_id: String,
    pub registration_id: String,
    pub data_id: String,
    pub publisher_account_id: String,
    pub publisher_name: String,
    pub billing_type: BillingType,
    pub unit: Unit,
    pub price: Money,
    pub term_days: Option<i64>,
    pub billing_method: Value,
    pub billing_plugin: Option<String>,
    pub billing_config: String,
    pub endpoint: String,
    pub adapter: String,
    pub adapter_config: String,
    pub created_at: i64,
}

impl Publication {
    /// Output tokens a call is held for.
    pub fn max_tokens(&self) -> u64 {
        self.billing_method
            .get("maxTokens")
            .and_then(Value::as_u64)
            .unwrap_or(DEFAULT_MAX_TOKENS)
    }
}

/// A publication as `GET /v1/publications` lists it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PublicationView {
    pub publish_id: String,
    pub kind: Kind,
    pub publisher_id: String,
    #[serde(rename = "dataID")]
    pub data_id: String,
    pub billing_type: BillingType,
    pub billing_method: Value,
    pub endpoint: String,
    pub adapter: String,
    pub created_at: String,
}

/// A subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: String,
    pub publication_id: String,
    pub subscriber_account_id: String,
    pub subscriber_name: String,
    pub license_id: String,
    pub license: Value,
    pub starts_at: i64,
    pub ends_at: i64,
    pub paid_until: Option<i64>,
    pub created_at: i64,
}

/// What an order's status is at `now`: derived, never stored.
pub fn order_status(p: &Publication, o: &Order, now: i64) -> &'static str {
    if now >= o.ends_at {
        return "expired";
    }
    match p.billing_type {
        BillingType::Metered => "active",
        BillingType::FixedTerm => match o.paid_until {
            Some(until) if until > now => "active",
            Some(_) => "term_ended",
            None => "unpaid",
        },
    }
}

/// Usage of one call as the adapter measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration_ms: u64,
}

/// The largest usage a call is billed for: one call, the input's length in bytes as input
/// tokens (a token is at least one byte of text), `max_tokens` output tokens, and the
/// adapter's time limit.
pub fn hold_usage(input_bytes: usize, max_tokens: u64, timeout_ms: u64) -> Usage {
    Usage {
        calls: 1,
        input_tokens: input_bytes as u64,
        output_tokens: max_tokens,
        duration_ms: timeout_ms,
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    (n + d - 1) / d
}

/// The native rule of a metered publication without a billing plugin: `price` per call, per
/// started 1,000 tokens' worth (tokens × price / 1000, rounded up to the minor unit), or per
/// hour (milliseconds × price / 3,600,000, rounded up); the platform keeps `fee_bps` of it,
/// rounded down.
pub fn native_usage_charge(
    unit: Unit,
    price: Money,
    usage: &Usage,
    fee_bps: u32,
) -> Result<Charge, DomainError> {
    let p = i128::from(price.minor());
    let (amount, description) = match unit {
        Unit::Calls => (
            p * i128::from(usage.calls),
            format!("{} call(s) at {price}", usage.calls),
        ),
        Unit::Tokens => {
            let tokens = i128::from(usage.input_tokens) + i128::from(usage.output_tokens);
            (
                ceil_div(tokens * p, 1000),
                format!("{tokens} tokens at {price} per 1000"),
            )
        }
        Unit::Duration => (
            ceil_div(i128::from(usage.duration_ms) * p, MS_PER_HOUR),
            format!("{} ms at {price} per hour", usage.duration_ms),
        ),
    };
    let amount = i64::try_from(amount)
        .ok()
        .filter(|a| *a <= super::billing::MAX_CHARGE.minor())
        .ok_or_else(|| DomainError::invalid("/input", "the usage is too large to charge"))?;
    Ok(split(Money::from_minor(amount), fee_bps, description))
}

/// Nothing to pay (a call within a paid fixed term).
pub fn no_charge() -> Charge {
    Charge {
        amount: Money::ZERO,
        platform_fee: Money::ZERO,
        provider_share: Money::ZERO,
        line_items: Vec::new(),
    }
}

/// One term of a fixed-term publication without a billing plugin.
pub fn native_term_charge(price: Money, term_days: i64, fee_bps: u32) -> Charge {
    split(price, fee_bps, format!("one term of {term_days} days"))
}

fn split(amount: Money, fee_bps: u32, description: String) -> Charge {
    let fee = fee_of(amount, fee_bps);
    Charge {
        amount,
        platform_fee: fee,
        provider_share: amount - fee,
        line_items: vec![LineItem {
            description,
            amount,
        }],
    }
}

/// The charge of a call: the actual charge, but never more than its hold (a call cannot cost
/// more than the subscriber agreed to set aside for it; the provider bears usage beyond the
/// bound).
pub fn capped(actual: Charge, hold: &Charge) -> Charge {
    if actual.amount <= hold.amount {
        actual
    } else {
        hold.clone()
    }
}

/// A charge row: one call or one paid term, its usage and its money.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRecord {
    pub id: String,
    pub order_id: String,
    pub kind: &'static str,
    pub status: String,
    pub idempotency_key: Option<String>,
    pub term: Option<i64>,
    pub at: i64,
    pub finished_at: Option<i64>,
    pub usage: Usage,
    pub hold: Money,
    pub amount: Money,
    pub fee: Money,
    pub provider_share: Money,
    pub adapter_plugin: Option<String>,
    pub adapter_version: Option<String>,
    pub billing_rule: Option<String>,
    pub upstream_status: Option<i64>,
    pub output: Option<String>,
    pub error_status: Option<i64>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub statement_id: Option<String>,
    pub payout_id: Option<String>,
}

/// A usage record as `GET /v1/orders/{orderId}/usage` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageView {
    pub usage_id: String,
    pub kind: &'static str,
    pub status: String,
    pub at: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration_ms: u64,
    pub charge: f64,
    pub charge_minor: i64,
    pub platform_fee_minor: i64,
    pub provider_share_minor: i64,
    pub adapter: Option<String>,
    pub billing_rule: Option<String>,
    pub upstream_status: Option<i64>,
    pub error: Option<String>,
    pub statement_id: Option<String>,
    pub payout_id: Option<String>,
}

/// `GET /v1/orders/{orderId}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub publish_id: String,
    pub kind: Kind,
    pub subscriber_id: String,
    pub publisher_id: String,
    pub billing_type: BillingType,
    pub billing_method: Value,
    pub status: &'static str,
    pub start_date: String,
    pub end_date: String,
    pub paid_until: Option<String>,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub paid_minor: i64,
    pub paid_out_minor: i64,
    pub licenses: Value,
}

/// A subscription license: table A.37's fields (the resource's `registrationID` and
/// `dataID`, the upstream as `resource_url`) plus the order, the publication and how it is
/// billed. Signed like data licenses (`digital_signature`, `keyId`), with the same watermark.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionLicense<'a> {
    #[serde(rename = "licensesID")]
    pub licenses_id: &'a str,
    pub licensor: &'a str,
    pub licensee: &'a str,
    #[serde(rename = "registrationID")]
    pub registration_id: &'a str,
    #[serde(rename = "dataID")]
    pub data_id: &'a str,
    pub resource_url: &'a str,
    pub digital_watermarking: String,
    pub usage_restrictions: Value,
    pub license_term: super::license::LicenseTerm,
    #[serde(rename = "orderId")]
    pub order_id: &'a str,
    #[serde(rename = "publishId")]
    pub publish_id: &'a str,
    pub kind: Kind,
    #[serde(rename = "billingType")]
    pub billing_type: BillingType,
    #[serde(rename = "billingMethod")]
    pub unit: Unit,
}

/// A signed statement: what a subscriber paid (userSettlement) or a provider was credited
/// (providerSettlement), with the usage it covers. Amounts are integer minor units and
/// decimal strings (no floats in signed documents).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement<'a> {
    pub statement_id: &'a str,
    pub kind: &'static str,
    pub order_id: &'a str,
    pub publish_id: &'a str,
    pub subscriber_id: &'a str,
    pub publisher_id: &'a str,
    pub billing_type: BillingType,
    pub charges: u64,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub amount: String,
    pub amount_minor: i64,
    pub platform_fee_minor: i64,
    pub provider_share_minor: i64,
    pub currency: &'a str,
    pub method: &'static str,
    pub issued_at: String,
}

/// The sums a statement is made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub charges: u64,
    pub usage: Usage,
    pub amount: Money,
    pub fee: Money,
    pub provider_share: Money,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(calls: u64, input: u64, output: u64, ms: u64) -> Usage {
        Usage {
            calls,
            input_tokens: input,
            output_tokens: output,
            duration_ms: ms,
        }
    }

    #[test]
    fn native_rules_round_up_and_split() {
        let c = native_usage_charge(Unit::Calls, Money::from_minor(5), &usage(3, 0, 0, 0), 0)
            .expect("charge");
        assert_eq!(c.amount.minor(), 15);
        // 1,234 tokens at 0.02 per 1000 = 2.468 fen → 3.
        let c = native_usage_charge(
            Unit::Tokens,
            Money::from_minor(2),
            &usage(1, 1000, 234, 0),
            1000,
        )
        .expect("charge");
        assert_eq!(
            (
                c.amount.minor(),
                c.platform_fee.minor(),
                c.provider_share.minor()
            ),
            (3, 0, 3)
        );
        assert!(c.check("t").is_ok());
        // 90 minutes at 1.00 per hour.
        let c = native_usage_charge(
            Unit::Duration,
            Money::from_minor(100),
            &usage(1, 0, 0, 5_400_000),
            0,
        )
        .expect("charge");
        assert_eq!(c.amount.minor(), 150);
        assert!(
            native_usage_charge(
                Unit::Tokens,
                Money::from_minor(i64::MAX / 2),
                &usage(1, u64::MAX, u64::MAX, 0),
                0
            )
            .is_err()
        );
    }

    #[test]
    fn a_call_never_costs_more_than_its_hold() {
        let hold = native_term_charge(Money::from_minor(10), 30, 0);
        let more = native_term_charge(Money::from_minor(11), 30, 0);
        let less = native_term_charge(Money::from_minor(9), 30, 0);
        assert_eq!(capped(more, &hold).amount.minor(), 10);
        assert_eq!(capped(less, &hold).amount.minor(), 9);
    }

    #[test]
    fn methods_other_than_balance_are_named() {
        assert!(check_method("/paymentProof", &serde_json::json!({"method": "balance"})).is_ok());
        let e = check_method("/creditInfo", &serde_json::json!({"method": "wire"}))
            .expect_err("refused");
        assert!(e.to_string().contains("balance"), "{e}");
    }
}
