//! Model and application subscriptions (A.4, A.5): publish, subscribe, invoke through the
//! publication's adapter plugin, meter every call exactly once, settle both sides. The rules
//! and the native prices are in `domain::subscriptions`; how money moves is documented there.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::plugins::PluginHost;
use super::plugins::adapter::{InvokeFailure, Invoked};
use super::{ServiceError, ServiceResult, page_number};
use crate::crypto::KeyRing;
use crate::domain::billing::Charge;
use crate::domain::ledger::{
    AccountKind, FEES_ACCOUNT, LedgerTransaction, Posting, TransactionKind,
};
use crate::domain::license::{LicenseTerm, SIGNATURE_FIELD, Watermark, usage_restrictions};
use crate::domain::money::Money;
use crate::domain::subscriptions::{
    BillingType, ChargeRecord, Delivered, DeliveryRequest, HOLDS_ACCOUNT, Kind, MS_PER_DAY, Order,
    OrderView, Publication, PublicationView, PublishRequest, Published, SUBSCRIPTIONS_ACCOUNT,
    Settled, Statement, SubscribeRequest, Subscribed, SubscriptionLicense, Totals, Usage,
    UsageView, capped, check_method, hold_usage, native_term_charge, native_usage_charge,
    no_charge, order_status,
};
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339, to_standard};
use crate::domain::{Caller, DomainError, Role, new_id};
use crate::store::Store;
use crate::store::subscriptions::{CallEnd, CallStart, StatementDraft, TermPayment};

const MAX_PAGE: i64 = 1000;
const DEFAULT_PAGE: i64 = 100;
/// The field statements are signed in.
pub const STATEMENT_SIGNATURE_FIELD: &str = "signature";

/// What subscriptions need from the configuration.
#[derive(Debug, Clone)]
pub struct SubscriptionsConfig {
    pub currency: String,
    /// The platform fee of the native rules, in basis points.
    pub fee_bps: u32,
    /// How long a subscription's license is valid.
    pub license_term: Duration,
    /// The adapter of publications that name none.
    pub model_adapter: String,
    pub application_adapter: String,
}

#[derive(Clone)]
pub struct Subscriptions {
    store: Store,
    keys: Arc<KeyRing>,
    plugins: PluginHost,
    config: Arc<SubscriptionsConfig>,
}

/// A call as the API gives it: the request, its idempotency key and request id.
pub struct CallContext {
    pub idempotency_key: Option<String>,
    pub request_id: String,
}

fn signing_failed(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("signing: {e}"))
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

/// A ledger transaction, or none when every posting is zero.
fn transaction(
    kind: TransactionKind,
    reference: &str,
    postings: Vec<Posting>,
) -> ServiceResult<Option<LedgerTransaction>> {
    if postings.iter().all(|p| p.amount.is_zero()) {
        return Ok(None);
    }
    let request = json!({"reference": reference, "kind": kind.as_str()}).to_string();
    Ok(Some(LedgerTransaction::new(
        kind, reference, request, postings,
    )?))
}

/// What a delivery answers when it fails, stored so that a retry answers the same.
struct Failure {
    status: i64,
    code: &'static str,
    message: String,
    upstream_status: Option<i64>,
}

impl Failure {
    fn of(f: &InvokeFailure) -> Failure {
        match f {
            InvokeFailure::Upstream {
                status,
                timed_out,
                message,
            } => Failure {
                status: if *timed_out { 504 } else { 502 },
                code: if *timed_out {
                    "UPSTREAM_TIMEOUT"
                } else {
                    "UPSTREAM_FAILED"
                },
                message: message.clone(),
                upstream_status: status.map(i64::from),
            },
            InvokeFailure::InvalidInput(m) => Failure {
                status: 400,
                code: "INVALID_ARGUMENT",
                message: format!("/input: {m}"),
                upstream_status: None,
            },
            InvokeFailure::Plugin(m) => Failure {
                status: 502,
                code: "PLUGIN_FAILED",
                message: m.clone(),
                upstream_status: None,
            },
        }
    }

    fn billing(e: &ServiceError) -> Failure {
        Failure {
            status: 502,
            code: "PLUGIN_FAILED",
            message: e.to_string(),
            upstream_status: None,
        }
    }
}

/// The error a stored failure answers with.
fn replayed_error(code: Option<&str>, message: String) -> ServiceError {
    match code {
        Some("UPSTREAM_TIMEOUT") => ServiceError::Upstream {
            timed_out: true,
            message,
        },
        Some("UPSTREAM_FAILED") => ServiceError::Upstream {
            timed_out: false,
            message,
        },
        Some("INVALID_ARGUMENT") => DomainError::InvalidArgument {
            field: "/input".into(),
            message: message.trim_start_matches("/input: ").to_owned(),
        }
        .into(),
        _ => ServiceError::PluginFailed(message),
    }
}

impl Subscriptions {
    pub fn new(
        store: Store,
        keys: Arc<KeyRing>,
        plugins: PluginHost,
        config: SubscriptionsConfig,
    ) -> Self {
        Subscriptions {
            store,
            keys,
            plugins,
            config: Arc::new(config),
        }
    }

    fn default_adapter(&self, kind: Kind) -> &str {
        match kind {
            Kind::Model => &self.config.model_adapter,
            Kind::Application => &self.config.application_adapter,
        }
    }

    /// A.4.1 / A.5.1: publishes a registered model or application for subscription. The
    /// adapter must be installed and granted the upstream now, not at the first call.
    pub async fn publish(&self, caller: &Caller, req: PublishRequest) -> ServiceResult<Published> {
        caller.must_be("publisherId", &req.publisher)?;
        let kind = req.kind;
        let resource = self
            .store
            .resource_by_owner_data(&caller.username, &req.data_id)
            .await?
            .ok_or_else(|| {
                ServiceError::invalid(
                    kind.id_field(),
                    format!(
                        "'{}' is not the dataID of a resource you registered; register it with \
                         POST /registerData and data_type '{}' first",
                        req.data_id,
                        kind.as_str()
                    ),
                )
            })?;
        if !resource
            .data_type
            .trim()
            .eq_ignore_ascii_case(kind.as_str())
        {
            return Err(ServiceError::invalid(
                kind.id_field(),
                format!(
                    "'{}' is registered with data_type '{}', not '{}'",
                    req.data_id,
                    resource.data_type,
                    kind.as_str()
                ),
            ));
        }
        let method = req.billing_method;
        let price = Money::from_price("/billingMethod/price", method.price)?;
        let term_days = match (req.billing_type, method.term_days) {
            (BillingType::FixedTerm, Some(d)) => Some(d),
            (BillingType::FixedTerm, None) => {
                return Err(ServiceError::invalid(
                    "/billingMethod/termDays",
                    "is required when billingType is fixed_term",
                ));
            }
            (BillingType::Metered, _) => None,
        };
        if let Some(plugin) = &method.plugin {
            self.plugins
                .require(
                    liutong_plugin_runtime::PluginKind::Billing,
                    plugin,
                    "/billingMethod/plugin",
                )
                .await?;
        }
        let adapter = req
            .adapter
            .clone()
            .unwrap_or_else(|| self.default_adapter(kind).to_owned());
        self.plugins
            .check_adapter(&adapter, &req.endpoint, kind.endpoint_field())
            .await?;
        let publication = Publication {
            id: new_id("pub_"),
            kind,
            resource_id: resource.id.clone(),
            registration_id: resource.registration_id.clone(),
            data_id: resource.data_id.clone(),
            publisher_account_id: caller.account_id.to_string(),
            publisher_name: caller.username.clone(),
            billing_type: req.billing_type,
            unit: method.unit,
            price,
            term_days,
            billing_method: serde_json::to_value(&method)
                .map_err(|e| ServiceError::Internal(format!("billingMethod: {e}")))?,
            billing_plugin: method.plugin.clone(),
            billing_config: method
                .config
                .clone()
                .unwrap_or_else(|| json!({}))
                .to_string(),
            endpoint: req.endpoint,
            adapter,
            adapter_config: req.adapter_config.unwrap_or_else(|| json!({})).to_string(),
            created_at: now_millis(),
        };
        self.store.insert_publication(&publication).await?;
        Ok(Published {
            publish_id: publication.id,
        })
    }

    async fn publication_of(&self, kind: Kind, publish_id: &str) -> ServiceResult<Publication> {
        self.store
            .publication(publish_id)
            .await?
            .filter(|p| p.kind == kind)
            .ok_or_else(|| {
                ServiceError::not_found(format!("no {} publication '{publish_id}'", kind.as_str()))
            })
    }

    /// A.4.2 / A.5.2: subscribes the caller; the answer carries the signed license that
    /// delivery needs.
    pub async fn subscribe(
        &self,
        caller: &Caller,
        kind: Kind,
        req: SubscribeRequest,
    ) -> ServiceResult<Subscribed> {
        let field = match kind {
            Kind::Model => "subscribeId",
            Kind::Application => "subscriberId",
        };
        caller.must_be(field, &req.subscriber)?;
        let p = self.publication_of(kind, &req.publish_id).await?;
        if req.billing_type != p.billing_type {
            return Err(ServiceError::invalid(
                "/billingType",
                format!(
                    "publication '{}' is billed '{}', not '{}'",
                    p.id,
                    p.billing_type.as_str(),
                    req.billing_type.as_str()
                ),
            ));
        }
        if req.unit != p.unit {
            return Err(ServiceError::invalid(
                "/billingMethod",
                format!(
                    "publication '{}' is billed in '{}', not '{}'",
                    p.id,
                    p.unit.as_str(),
                    req.unit.as_str()
                ),
            ));
        }
        let now = now_millis();
        // License terms are whole seconds, like data licenses.
        let starts_at = now - now.rem_euclid(1000);
        let term_ms = i64::try_from(self.config.license_term.as_millis()).unwrap_or(i64::MAX);
        let ends_at = starts_at.saturating_add(term_ms);
        let order_id = new_id("ord_");
        let license_id = new_id("lic_");
        let (_, watermark) = self
            .keys
            .sign_value(&Watermark::new(
                &license_id,
                &caller.username,
                &p.registration_id,
                &p.data_id,
            ))
            .map_err(signing_failed)?;
        let license = self
            .keys
            .sign(
                &SubscriptionLicense {
                    licenses_id: &license_id,
                    licensor: &p.publisher_name,
                    licensee: &caller.username,
                    registration_id: &p.registration_id,
                    data_id: &p.data_id,
                    resource_url: &p.endpoint,
                    digital_watermarking: watermark,
                    usage_restrictions: usage_restrictions(None),
                    license_term: LicenseTerm {
                        start: to_standard(from_millis(starts_at)),
                        end: to_standard(from_millis(ends_at)),
                    },
                    order_id: &order_id,
                    publish_id: &p.id,
                    kind,
                    billing_type: p.billing_type,
                    unit: p.unit,
                },
                SIGNATURE_FIELD,
            )
            .map_err(signing_failed)?;
        self.store
            .insert_order(&Order {
                id: order_id.clone(),
                publication_id: p.id.clone(),
                subscriber_account_id: caller.account_id.to_string(),
                subscriber_name: caller.username.clone(),
                license_id,
                license: license.clone(),
                starts_at,
                ends_at,
                paid_until: None,
                created_at: now,
            })
            .await?;
        Ok(Subscribed {
            order_id,
            licenses: license,
        })
    }

    /// Checks a presented subscription license: signed by the operator (`GET /v1/keys`),
    /// exactly the one issued for its order, issued to the caller, in its term, and for a
    /// publication of `kind`.
    async fn present(
        &self,
        caller: &Caller,
        kind: Kind,
        doc: &Value,
        now: i64,
    ) -> ServiceResult<(Publication, Order)> {
        self.keys
            .verify_document(doc, SIGNATURE_FIELD)
            .map_err(|e| {
                ServiceError::forbidden(format!(
                    "the license's digital_signature is not valid: {e}"
                ))
            })?;
        let order_id = doc.get("orderId").and_then(Value::as_str).ok_or_else(|| {
            ServiceError::invalid(
                "/licenses/orderId",
                "is missing: this is not a subscription license",
            )
        })?;
        let order = self
            .store
            .order(order_id)
            .await?
            .filter(|o| o.license == *doc)
            .ok_or_else(|| {
                ServiceError::forbidden(format!(
                    "the license of order '{order_id}' is not one this server issued"
                ))
            })?;
        if order.subscriber_account_id != caller.account_id.as_str() {
            return Err(ServiceError::forbidden(format!(
                "this license was issued to '{}', not to '{}'",
                order.subscriber_name, caller.username
            )));
        }
        if now < order.starts_at {
            return Err(ServiceError::forbidden(format!(
                "the license of order '{}' is not valid before {}",
                order.id,
                to_rfc3339(from_millis(order.starts_at))
            )));
        }
        if now >= order.ends_at {
            return Err(ServiceError::forbidden(format!(
                "the license of order '{}' expired at {}",
                order.id,
                to_rfc3339(from_millis(order.ends_at))
            )));
        }
        let p = self
            .store
            .publication(&order.publication_id)
            .await?
            .ok_or_else(|| {
                ServiceError::Internal(format!("order {} has no publication", order.id))
            })?;
        if p.kind != kind {
            return Err(ServiceError::invalid(
                "/licenses",
                format!(
                    "this is a license of a {} subscription; use /v1/{}/delivery",
                    p.kind.as_str(),
                    p.kind.as_str()
                ),
            ));
        }
        Ok((p, order))
    }

    /// Prices usage by the publication's rule: its billing plugin, else the native rule.
    async fn price(
        &self,
        p: &Publication,
        order: &Order,
        usage: &Usage,
        period: (i64, i64),
    ) -> ServiceResult<(Charge, String)> {
        match &p.billing_plugin {
            None => {
                let charge = match p.billing_type {
                    BillingType::Metered => {
                        native_usage_charge(p.unit, p.price, usage, self.config.fee_bps)?
                    }
                    BillingType::FixedTerm => native_term_charge(
                        p.price,
                        p.term_days.unwrap_or_default(),
                        self.config.fee_bps,
                    ),
                };
                Ok((charge, format!("native-{}", p.unit.as_str())))
            }
            Some(plugin) => {
                self.plugins
                    .charge_usage(
                        plugin,
                        &p.billing_config,
                        &order.id,
                        &order.subscriber_name,
                        &p.publisher_name,
                        &p.registration_id,
                        p.billing_type,
                        p.unit,
                        usage,
                        period,
                        p.price,
                        &self.config.currency,
                    )
                    .await
            }
        }
    }

    /// A.4.3 / A.5.3: one call of a subscribed model or application through its adapter,
    /// metered and paid exactly once (see the module documentation of
    /// `domain::subscriptions`). A repeated `Idempotency-Key` answers what the first call
    /// answered, without calling the upstream or charging again.
    pub async fn deliver(
        &self,
        caller: &Caller,
        req: DeliveryRequest,
        ctx: CallContext,
    ) -> ServiceResult<Delivered> {
        let now = now_millis();
        let kind = req.kind;
        let (p, order) = self.present(caller, kind, &req.licenses, now).await?;
        if req.endpoint != p.endpoint {
            return Err(ServiceError::invalid(
                kind.endpoint_field(),
                format!(
                    "'{}' is not the {} of publication '{}' ('{}')",
                    req.endpoint,
                    kind.endpoint_field().trim_start_matches('/'),
                    p.id,
                    p.endpoint
                ),
            ));
        }
        self.call(caller, &p, &order, &req.input, ctx, now).await
    }

    /// The metered or fixed-term call itself, once the license is checked.
    pub async fn call(
        &self,
        caller: &Caller,
        p: &Publication,
        order: &Order,
        input: &str,
        ctx: CallContext,
        now: i64,
    ) -> ServiceResult<Delivered> {
        let settle = match p.kind {
            Kind::Model => "POST /v1/model/userSettlement",
            Kind::Application => "GET /v1/application/userSettlement",
        };
        let hold = match p.billing_type {
            BillingType::FixedTerm => {
                match order.paid_until {
                    None => {
                        return Err(DomainError::PaymentRequired(format!(
                            "order '{}' has no paid term; pay one with {settle} and \
                             paymentProof {{\"method\": \"balance\"}}",
                            order.id
                        ))
                        .into());
                    }
                    Some(until) if until <= now => {
                        return Err(DomainError::PaymentRequired(format!(
                            "the paid term of order '{}' ended at {}; pay the next with {settle}",
                            order.id,
                            to_rfc3339(from_millis(until))
                        ))
                        .into());
                    }
                    Some(_) => {}
                }
                None
            }
            BillingType::Metered => {
                let timeout = self.plugins.adapter_timeout_ms(&p.adapter).await?;
                let bound = hold_usage(input.len(), p.max_tokens(), timeout);
                Some(self.price(p, order, &bound, (now, now)).await?.0)
            }
        };
        let hold_amount = hold.as_ref().map_or(Money::ZERO, |c| c.amount);
        let charge_id = new_id("use_");
        let record = ChargeRecord {
            id: charge_id.clone(),
            order_id: order.id.clone(),
            kind: "call",
            status: "held".into(),
            idempotency_key: ctx.idempotency_key.clone(),
            term: None,
            at: now,
            finished_at: None,
            usage: Usage::default(),
            hold: hold_amount,
            amount: Money::ZERO,
            fee: Money::ZERO,
            provider_share: Money::ZERO,
            adapter_plugin: Some(p.adapter.clone()),
            adapter_version: None,
            billing_rule: None,
            upstream_status: None,
            output: None,
            error_status: None,
            error_code: None,
            error: None,
            statement_id: None,
            payout_id: None,
        };
        let hold_tx = transaction(
            TransactionKind::Hold,
            &charge_id,
            vec![
                user(&order.subscriber_account_id, -hold_amount),
                system(HOLDS_ACCOUNT, hold_amount),
            ],
        )?;
        let empty = LedgerTransaction::new(TransactionKind::Hold, &charge_id, "{}".into(), vec![])?;
        match self
            .store
            .start_call(&record, hold_tx.as_ref().unwrap_or(&empty))
            .await?
        {
            CallStart::Started => {}
            CallStart::Repeated(first) => return replay(&first),
            CallStart::InsufficientFunds => {
                return Err(DomainError::InsufficientFunds(format!(
                    "the balance does not cover this call's hold of {hold_amount}; nothing was \
                     called or charged"
                ))
                .into());
            }
        }

        let invoked = self
            .plugins
            .invoke_adapter(
                &p.adapter,
                &p.id,
                p.kind,
                &p.endpoint,
                &p.adapter_config,
                input,
                &caller.username,
                &ctx.request_id,
            )
            .await;
        let finished_at = now_millis();
        let outcome: Result<(Invoked, Charge, String), Failure> = match invoked {
            Err(f) => Err(Failure::of(&f)),
            Ok(invoked) => match &hold {
                None => Ok((invoked, no_charge(), "fixed_term".to_owned())),
                Some(hold) => match self
                    .price(p, order, &invoked.usage, (now, finished_at))
                    .await
                {
                    Ok((actual, rule)) => Ok((invoked, capped(actual, hold), rule)),
                    Err(e) => Err(Failure::billing(&e)),
                },
            },
        };
        match outcome {
            Ok((invoked, charge, rule)) => {
                let usage_tx = transaction(
                    TransactionKind::Usage,
                    &charge_id,
                    vec![
                        system(HOLDS_ACCOUNT, -hold_amount),
                        system(SUBSCRIPTIONS_ACCOUNT, charge.amount),
                        user(&order.subscriber_account_id, hold_amount - charge.amount),
                    ],
                )?;
                let finished = self
                    .store
                    .finish_call(
                        &CallEnd {
                            charge_id: &charge_id,
                            status: "charged",
                            finished_at,
                            usage: invoked.usage,
                            amount: charge.amount,
                            fee: charge.platform_fee,
                            provider_share: charge.provider_share,
                            adapter_version: Some(&invoked.plugin_version),
                            billing_rule: Some(&rule),
                            upstream_status: Some(200),
                            output: Some(&invoked.output),
                            error_status: None,
                            error_code: None,
                            error: None,
                        },
                        usage_tx.as_ref(),
                    )
                    .await?;
                if !finished {
                    return Err(ServiceError::Internal(format!(
                        "call {charge_id} was not held any more"
                    )));
                }
                let output = serde_json::from_str(&invoked.output)
                    .map_err(|e| ServiceError::Internal(format!("adapter output: {e}")))?;
                Ok(Delivered { output })
            }
            Err(failure) => {
                let release_tx = transaction(
                    TransactionKind::Release,
                    &charge_id,
                    vec![
                        system(HOLDS_ACCOUNT, -hold_amount),
                        user(&order.subscriber_account_id, hold_amount),
                    ],
                )?;
                self.store
                    .finish_call(
                        &CallEnd {
                            charge_id: &charge_id,
                            status: "failed",
                            finished_at,
                            usage: Usage::default(),
                            amount: Money::ZERO,
                            fee: Money::ZERO,
                            provider_share: Money::ZERO,
                            adapter_version: None,
                            billing_rule: None,
                            upstream_status: failure.upstream_status,
                            output: None,
                            error_status: Some(failure.status),
                            error_code: Some(failure.code),
                            error: Some(&failure.message),
                        },
                        release_tx.as_ref(),
                    )
                    .await?;
                Err(replayed_error(Some(failure.code), failure.message))
            }
        }
    }

    async fn order_of(&self, kind: Kind, order_id: &str) -> ServiceResult<(Publication, Order)> {
        let order = self
            .store
            .order(order_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no order '{order_id}'")))?;
        let p = self
            .store
            .publication(&order.publication_id)
            .await?
            .filter(|p| p.kind == kind)
            .ok_or_else(|| {
                ServiceError::not_found(format!("no {} order '{order_id}'", kind.as_str()))
            })?;
        Ok((p, order))
    }

    fn statement(
        &self,
        id: &str,
        kind: &'static str,
        p: &Publication,
        order: &Order,
        totals: &Totals,
        at: i64,
    ) -> ServiceResult<String> {
        let doc = self
            .keys
            .sign(
                &Statement {
                    statement_id: id,
                    kind,
                    order_id: &order.id,
                    publish_id: &p.id,
                    subscriber_id: &order.subscriber_name,
                    publisher_id: &p.publisher_name,
                    billing_type: p.billing_type,
                    charges: totals.charges,
                    calls: totals.usage.calls,
                    input_tokens: totals.usage.input_tokens,
                    output_tokens: totals.usage.output_tokens,
                    amount: totals.amount.to_string(),
                    amount_minor: totals.amount.minor(),
                    platform_fee_minor: totals.fee.minor(),
                    provider_share_minor: totals.provider_share.minor(),
                    currency: &self.config.currency,
                    method: crate::domain::subscriptions::BALANCE_METHOD,
                    issued_at: to_rfc3339(from_millis(at)),
                },
                STATEMENT_SIGNATURE_FIELD,
            )
            .map_err(signing_failed)?;
        Ok(doc.to_string())
    }

    async fn stored_statement(&self, id: &str) -> ServiceResult<Value> {
        let text = self
            .store
            .statement(id)
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("statement {id} is missing")))?;
        serde_json::from_str(&text).map_err(|e| ServiceError::Internal(format!("statement: {e}")))
    }

    /// A.4.4 / A.5.4: the subscriber settles. fixed_term: pays the next term from the
    /// balance. metered (paid call by call already): closes the usage so far into a signed
    /// statement.
    pub async fn user_settlement(
        &self,
        caller: &Caller,
        kind: Kind,
        subscriber: &str,
        order_id: &str,
        payment_proof: &Value,
    ) -> ServiceResult<Settled> {
        caller.must_be("subscriberId", subscriber)?;
        check_method("/paymentProof", payment_proof)?;
        let (p, order) = self.order_of(kind, order_id).await?;
        if order.subscriber_account_id != caller.account_id.as_str() {
            return Err(ServiceError::forbidden(format!(
                "order '{order_id}' is not a subscription of '{}'",
                caller.username
            )));
        }
        let now = now_millis();
        let statement_id = new_id("stm_");
        match p.billing_type {
            BillingType::Metered => {
                let closed = self
                    .store
                    .close_charges(
                        &order.id,
                        "user",
                        |totals| {
                            Ok::<_, ServiceError>(StatementDraft {
                                id: statement_id.clone(),
                                document: self.statement(
                                    &statement_id,
                                    "user",
                                    &p,
                                    &order,
                                    totals,
                                    now,
                                )?,
                                ledger: None,
                            })
                        },
                        &statement_id,
                        now,
                    )
                    .await?;
                closed?;
            }
            BillingType::FixedTerm => {
                self.pay_term(&p, &order, &statement_id, now).await?;
            }
        }
        Ok(Settled {
            order_id: order.id,
            statement: self.stored_statement(&statement_id).await?,
        })
    }

    /// Pays the next term of a fixed-term order; a concurrent payment of the same term pays
    /// once and both answer with its statement (`statement_id` is then that statement).
    async fn pay_term(
        &self,
        p: &Publication,
        order: &Order,
        statement_id: &str,
        now: i64,
    ) -> ServiceResult<()> {
        let term = self.store.terms_paid(&order.id).await? + 1;
        let term_days = p.term_days.unwrap_or(1);
        let start = order.paid_until.filter(|u| *u > now).unwrap_or(now);
        let end = start.saturating_add(term_days.saturating_mul(MS_PER_DAY));
        let (charge, rule) = self
            .price(p, order, &Usage::default(), (start, end))
            .await?;
        let charge_id = new_id("use_");
        let totals = Totals {
            charges: 1,
            usage: Usage::default(),
            amount: charge.amount,
            fee: charge.platform_fee,
            provider_share: charge.provider_share,
        };
        let document = self.statement(statement_id, "user", p, order, &totals, now)?;
        let record = ChargeRecord {
            id: charge_id.clone(),
            order_id: order.id.clone(),
            kind: "term",
            status: "charged".into(),
            idempotency_key: None,
            term: Some(term),
            at: now,
            finished_at: Some(now),
            usage: Usage::default(),
            hold: Money::ZERO,
            amount: charge.amount,
            fee: charge.platform_fee,
            provider_share: charge.provider_share,
            adapter_plugin: None,
            adapter_version: None,
            billing_rule: Some(rule),
            upstream_status: None,
            output: None,
            error_status: None,
            error_code: None,
            error: None,
            statement_id: Some(statement_id.to_owned()),
            payout_id: None,
        };
        let payment = transaction(
            TransactionKind::Term,
            &charge_id,
            vec![
                user(&order.subscriber_account_id, -charge.amount),
                system(SUBSCRIPTIONS_ACCOUNT, charge.amount),
            ],
        )?;
        let empty = LedgerTransaction::new(TransactionKind::Term, &charge_id, "{}".into(), vec![])?;
        match self
            .store
            .pay_term(
                &record,
                payment.as_ref().unwrap_or(&empty),
                end,
                (statement_id, &document),
            )
            .await?
        {
            TermPayment::Paid => Ok(()),
            TermPayment::AlreadyPaid(_) => Err(ServiceError::conflict(format!(
                "term {term} of order '{}' was paid by another request at the same moment; \
                 GET /v1/orders/{} shows it",
                order.id, order.id
            ))),
            TermPayment::InsufficientFunds => Err(DomainError::InsufficientFunds(format!(
                "the balance does not cover the term's {}; nothing was charged",
                charge.amount
            ))
            .into()),
        }
    }

    /// A.4.5 / A.5.5: the publisher is credited its share of everything paid on the order and
    /// not yet paid out (the platform fee goes to `system:fees`), exactly once per charge.
    pub async fn provider_settlement(
        &self,
        caller: &Caller,
        kind: Kind,
        publisher: &str,
        field: &str,
        order_id: &str,
        credit_info: &Value,
    ) -> ServiceResult<Settled> {
        caller.must_be(field, publisher)?;
        check_method("/creditInfo", credit_info)?;
        let (p, order) = self.order_of(kind, order_id).await?;
        if p.publisher_account_id != caller.account_id.as_str() {
            return Err(ServiceError::forbidden(format!(
                "order '{order_id}' is a subscription of another publisher's publication"
            )));
        }
        let now = now_millis();
        let payout_id = new_id("pay_");
        let closed = self
            .store
            .close_charges(
                &order.id,
                "provider",
                |totals| {
                    let ledger = transaction(
                        TransactionKind::Payout,
                        &payout_id,
                        vec![
                            system(SUBSCRIPTIONS_ACCOUNT, -totals.amount),
                            user(&p.publisher_account_id, totals.provider_share),
                            system(FEES_ACCOUNT, totals.fee),
                        ],
                    )?;
                    Ok::<_, ServiceError>(StatementDraft {
                        id: payout_id.clone(),
                        document: self
                            .statement(&payout_id, "provider", &p, &order, totals, now)?,
                        ledger,
                    })
                },
                &payout_id,
                now,
            )
            .await?;
        closed?;
        Ok(Settled {
            order_id: order.id,
            statement: self.stored_statement(&payout_id).await?,
        })
    }

    /// Who may read an order: its subscriber, its publisher, operators.
    async fn readable(
        &self,
        caller: &Caller,
        order_id: &str,
    ) -> ServiceResult<(Publication, Order)> {
        let order = self
            .store
            .order(order_id)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("no order '{order_id}'")))?;
        let p = self
            .store
            .publication(&order.publication_id)
            .await?
            .ok_or_else(|| {
                ServiceError::Internal(format!("order {order_id} has no publication"))
            })?;
        let me = caller.account_id.as_str();
        if caller.role != Role::Operator
            && order.subscriber_account_id != me
            && p.publisher_account_id != me
        {
            return Err(ServiceError::forbidden(format!(
                "only the subscriber, the publisher and operators may read order '{order_id}'"
            )));
        }
        Ok((p, order))
    }

    pub async fn order_view(&self, caller: &Caller, order_id: &str) -> ServiceResult<OrderView> {
        let (p, order) = self.readable(caller, order_id).await?;
        let (totals, paid_out) = self.store.order_totals(&order.id).await?;
        let now = now_millis();
        Ok(OrderView {
            order_id: order.id.clone(),
            publish_id: p.id.clone(),
            kind: p.kind,
            subscriber_id: order.subscriber_name.clone(),
            publisher_id: p.publisher_name.clone(),
            billing_type: p.billing_type,
            billing_method: p.billing_method.clone(),
            status: order_status(&p, &order, now),
            start_date: to_rfc3339(from_millis(order.starts_at)),
            end_date: to_rfc3339(from_millis(order.ends_at)),
            paid_until: order.paid_until.map(|u| to_rfc3339(from_millis(u))),
            calls: totals.usage.calls,
            input_tokens: totals.usage.input_tokens,
            output_tokens: totals.usage.output_tokens,
            paid_minor: totals.amount.minor(),
            paid_out_minor: paid_out.minor(),
            licenses: order.license,
        })
    }

    pub async fn usage(
        &self,
        caller: &Caller,
        order_id: &str,
        limit: Option<&str>,
        offset: Option<&str>,
    ) -> ServiceResult<Value> {
        let (_, order) = self.readable(caller, order_id).await?;
        let limit = page_number("limit", limit, DEFAULT_PAGE, (1, MAX_PAGE))?;
        let offset = page_number("offset", offset, 0, (0, i64::from(i32::MAX)))?;
        let (total, charges) = self.store.charges(&order.id, limit, offset).await?;
        let usage: Vec<UsageView> = charges
            .into_iter()
            .map(|c| UsageView {
                usage_id: c.id,
                kind: c.kind,
                status: c.status,
                at: to_rfc3339(from_millis(c.at)),
                calls: c.usage.calls,
                input_tokens: c.usage.input_tokens,
                output_tokens: c.usage.output_tokens,
                duration_ms: c.usage.duration_ms,
                charge: c.amount.to_price(),
                charge_minor: c.amount.minor(),
                platform_fee_minor: c.fee.minor(),
                provider_share_minor: c.provider_share.minor(),
                adapter: c.adapter_plugin.map(|a| match c.adapter_version {
                    Some(v) => format!("{a}@{v}"),
                    None => a,
                }),
                billing_rule: c.billing_rule,
                upstream_status: c.upstream_status,
                error: c.error,
                statement_id: c.statement_id,
                payout_id: c.payout_id,
            })
            .collect();
        Ok(json!({"orderId": order.id, "total": total, "usage": usage}))
    }

    pub async fn publications(
        &self,
        kind: Option<&str>,
        limit: Option<&str>,
        offset: Option<&str>,
    ) -> ServiceResult<Value> {
        let kind = kind
            .map(|k| {
                Kind::parse(k).ok_or_else(|| {
                    ServiceError::invalid("/kind", "must be 'model' or 'application'")
                })
            })
            .transpose()?;
        let limit = page_number("limit", limit, DEFAULT_PAGE, (1, MAX_PAGE))?;
        let offset = page_number("offset", offset, 0, (0, i64::from(i32::MAX)))?;
        let (total, list) = self.store.publications(kind, limit, offset).await?;
        let publications: Vec<PublicationView> = list
            .into_iter()
            .map(|p| PublicationView {
                publish_id: p.id,
                kind: p.kind,
                publisher_id: p.publisher_name,
                data_id: p.data_id,
                billing_type: p.billing_type,
                billing_method: p.billing_method,
                endpoint: p.endpoint,
                adapter: p.adapter,
                created_at: to_rfc3339(from_millis(p.created_at)),
            })
            .collect();
        Ok(json!({"total": total, "publications": publications}))
    }
}

impl Subscriptions {
    /// The caller's current order of model publication `publish_id` (the OpenAI front's
    /// `model`): the newest whose license is in its term.
    async fn model_order(
        &self,
        caller: &Caller,
        publish_id: &str,
        now: i64,
    ) -> ServiceResult<(Publication, Order)> {
        let order = self
            .store
            .orders_of(caller.account_id.as_str())
            .await?
            .into_iter()
            .filter(|o| o.publication_id == publish_id && o.starts_at <= now && now < o.ends_at)
            .max_by_key(|o| o.created_at)
            .ok_or_else(|| {
                ServiceError::not_found(format!(
                    "'{publish_id}' is not a model you are subscribed to; GET /openai/v1/models \
                     lists yours"
                ))
            })?;
        let p = self.publication_of(Kind::Model, publish_id).await?;
        Ok((p, order))
    }

    /// `POST /openai/v1/chat/completions`: `model` is a publishId the caller subscribes to;
    /// the request goes to the publication's adapter as the input, metered and charged like
    /// `POST /v1/model/delivery`.
    pub async fn openai_chat(
        &self,
        caller: &Caller,
        mut request: Value,
        ctx: CallContext,
    ) -> ServiceResult<Delivered> {
        let Some(body) = request.as_object_mut() else {
            return Err(ServiceError::invalid("/", "must be a JSON object"));
        };
        if body.get("stream").and_then(Value::as_bool) == Some(true) {
            return Err(ServiceError::invalid(
                "/stream",
                "streaming is not supported; send stream: false",
            ));
        }
        let Some(Value::String(model)) = body.remove("model") else {
            return Err(ServiceError::invalid(
                "/model",
                "is required: the publishId of a subscribed model",
            ));
        };
        if !body.get("messages").is_some_and(Value::is_array) {
            return Err(ServiceError::invalid("/messages", "is required: an array"));
        }
        let now = now_millis();
        let (p, order) = self.model_order(caller, &model, now).await?;
        self.call(caller, &p, &order, &request.to_string(), ctx, now)
            .await
    }

    /// `GET /openai/v1/models`: the caller's subscribed models, `id` = publishId.
    pub async fn openai_models(&self, caller: &Caller) -> ServiceResult<Value> {
        let now = now_millis();
        let mut data = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for order in self.store.orders_of(caller.account_id.as_str()).await? {
            let live = order.starts_at <= now && now < order.ends_at;
            // One entry per publication, however many orders of it are live.
            if !(live && seen.insert(order.publication_id.clone())) {
                continue;
            }
            if let Some(p) = self
                .store
                .publication(&order.publication_id)
                .await?
                .filter(|p| p.kind == Kind::Model)
            {
                data.push(json!({"id": p.id, "object": "model",
                                 "created": p.created_at.div_euclid(1000),
                                 "owned_by": p.publisher_name}));
            }
        }
        Ok(json!({"object": "list", "data": data}))
    }
}

/// The answer of the first call with an idempotency key.
fn replay(first: &ChargeRecord) -> ServiceResult<Delivered> {
    match first.status.as_str() {
        "charged" => {
            let output = first
                .output
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| ServiceError::Internal(format!("stored output: {e}")))?
                .unwrap_or(Value::Null);
            Ok(Delivered { output })
        }
        "failed" => Err(replayed_error(
            first.error_code.as_deref(),
            first.error.clone().unwrap_or_default(),
        )),
        _ => Err(ServiceError::conflict(format!(
            "the call with this Idempotency-Key ({}) is still running; retry when it has \
             finished",
            first.id
        ))),
    }
}
