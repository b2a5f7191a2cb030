//! Circulation and trading (A.3.1–A.3.4, A.3.8): confirming a resource for a demand, settling
//! it, and (re-)issuing licenses.
//!
//! Lifecycle of a confirmation:
//!
//! ```text
//! confirmed ──settle──▶ settled
//!     │
//!     └── confirmation_ttl passes unsettled ──▶ expired (the demand may be confirmed again)
//! ```
//!
//! A confirmation snapshots the price and usage restrictions: later publications or a
//! revocation do not change what its buyer pays or may do. A demand has at most one live
//! (confirmed or settled) confirmation; the database enforces it with a partial unique index,
//! so concurrent confirmations of one demand cannot both win.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::billing::{Billed, Billing, BillingError, ChargeRequest};
use super::ledger::{AccountKind, FEES_ACCOUNT, LedgerTransaction, Posting, TransactionKind};
use super::license::{self, LicenseTerms};
use super::money::{format_minor, minor_to_price};
use super::supply::{ResourceRef, Supply};
use super::timefmt::{from_millis, to_rfc3339};
use super::{
    CONTROLLED_OWNER, CONTROLLED_REGISTRATION_ID, Caller, DomainError, PublicationStatus, Role,
    new_id,
};
use crate::crypto::{KeyRing, sealing};
use crate::storage::fetch::is_fetchable;
use crate::store::trading::{CONFIRMATION_LIVE, SettleOutcome, SettlementWrite};
use crate::store::{Store, now_millis};

pub const SETTLED: &str = "SETTLED";
pub const UNSETTLED: &str = "UNSETTLED";
/// The signature field of payment and delivery proofs.
pub const PROOF_SIGNATURE_FIELD: &str = "signature";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationStatus {
    Confirmed,
    Settled,
    Expired,
}

impl ConfirmationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmationStatus::Confirmed => "confirmed",
            ConfirmationStatus::Settled => "settled",
            ConfirmationStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirmed" => Some(ConfirmationStatus::Confirmed),
            "settled" => Some(ConfirmationStatus::Settled),
            "expired" => Some(ConfirmationStatus::Expired),
            _ => None,
        }
    }
}

/// A resource bound to a demand, waiting for or done with its settlement.
#[derive(Debug, Clone, PartialEq)]
pub struct Confirmation {
    pub id: String,
    pub demand_id: String,
    pub resource_id: String,
    pub registration_id: String,
    pub data_id: String,
    pub controlled: bool,
    pub seller_account_id: String,
    /// The resource's `owner` (`trusted-data-space` for controlled data).
    pub seller_name: String,
    pub buyer_account_id: String,
    pub buyer_name: String,
    /// The price when confirmed.
    pub price_minor: i64,
    /// The usage restrictions when confirmed.
    pub usage_restrictions: Value,
    pub status: ConfirmationStatus,
    pub created_at: i64,
    pub expires_at: i64,
    pub settled_at: Option<i64>,
}

impl Confirmation {
    /// The stored status, with an overdue unsettled confirmation read as expired.
    pub fn effective_status(&self, now: i64) -> ConfirmationStatus {
        match self.status {
            ConfirmationStatus::Confirmed if self.expires_at <= now => ConfirmationStatus::Expired,
            s => s,
        }
    }

    pub fn settlement_status(&self) -> &'static str {
        if self.status == ConfirmationStatus::Settled {
            SETTLED
        } else {
            UNSETTLED
        }
    }

    /// The buyer, the seller and operators may look at a confirmation and what follows it.
    pub fn check_party(&self, caller: &Caller) -> Result<(), DomainError> {
        if caller.account_id == self.buyer_account_id
            || caller.account_id == self.seller_account_id
            || caller.role == Role::Operator
        {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "confirmation '{}' is visible to its buyer, its seller and operators only",
                self.id
            )))
        }
    }
}

/// A settlement as stored: the signed payment proof and the encrypted delivery key.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementRecord {
    pub confirm_id: String,
    pub receipt_id: String,
    pub ledger_transaction_id: String,
    pub amount_minor: i64,
    pub payment_proof: Value,
    pub private_key: Option<Value>,
    pub settled_at: i64,
}

/// A license as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseRecord {
    pub id: String,
    pub confirm_id: String,
    pub resource_id: String,
    pub licensee_account_id: String,
    /// The signed license exactly as issued.
    pub document: Value,
    pub starts_at: i64,
    pub ends_at: i64,
    pub issued_at: i64,
    pub superseded_by: Option<String>,
}

/// A delivery as stored: its signed proof.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub id: String,
    pub confirm_id: String,
    pub license_id: String,
    pub proof: Value,
    pub delivered_at: i64,
}

/// A.3.1 request.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfirmDemand {
    pub demander: String,
    #[serde(rename = "demandID")]
    pub demand_id: String,
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    #[serde(rename = "dataID")]
    pub data_id: Option<String>,
}

/// A.3.2, A.3.3, A.3.4 and A.3.6 requests.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfirmRef {
    #[serde(rename = "confirmID")]
    pub confirm_id: String,
}

/// A.3.8 request.
#[derive(Debug, Clone, Deserialize)]
pub struct UpdateLicenses {
    pub owner: String,
    #[serde(rename = "dataID")]
    pub data_id: String,
}

/// A.3.1 and A.3.2 response data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfirmationView {
    #[serde(rename = "confirmID")]
    pub confirm_id: String,
    pub owner: String,
    pub demander: String,
    #[serde(rename = "registrationID")]
    pub registration_id: String,
    #[serde(rename = "dataID")]
    pub data_id: String,
    #[serde(rename = "demandID")]
    pub demand_id: String,
    pub price: f64,
    pub settlement_status: &'static str,
    /// liutong's addition: "confirmed", "settled" or "expired".
    pub confirmation_status: &'static str,
    /// liutong's addition: when an unsettled confirmation expires (RFC 3339).
    #[serde(rename = "expiresAt")]
    pub expires_at: String,
}

impl ConfirmationView {
    fn of(c: &Confirmation, now: i64) -> Self {
        ConfirmationView {
            confirm_id: c.id.clone(),
            owner: c.seller_name.clone(),
            demander: c.buyer_name.clone(),
            registration_id: c.registration_id.clone(),
            data_id: c.data_id.clone(),
            demand_id: c.demand_id.clone(),
            price: minor_to_price(c.price_minor),
            settlement_status: c.settlement_status(),
            confirmation_status: c.effective_status(now).as_str(),
            expires_at: to_rfc3339(from_millis(c.expires_at)),
        }
    }
}

/// A.3.3 and A.3.4 response data.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SettlementView {
    #[serde(rename = "confirmID")]
    pub confirm_id: String,
    pub payment_proof: Value,
    pub settlement_status: &'static str,
    /// The confirmation's current license (table A.37).
    pub licenses: Value,
    pub private_key: Value,
}

#[derive(Debug, Clone)]
pub struct TradingConfig {
    pub confirmation_ttl: Duration,
    pub license_term: Duration,
    pub currency: String,
    pub fetch_resource_urls: bool,
}

#[derive(Clone)]
pub struct Trading {
    store: Store,
    supply: Supply,
    keys: Arc<KeyRing>,
    billing: Arc<dyn Billing>,
    config: Arc<TradingConfig>,
}

fn sign_err(e: crate::crypto::SignatureError) -> DomainError {
    DomainError::Internal(format!("signing: {e}"))
}

impl Trading {
    pub fn new(
        store: Store,
        keys: Arc<KeyRing>,
        billing: Arc<dyn Billing>,
        config: TradingConfig,
    ) -> Self {
        Trading {
            supply: Supply::new(store.clone()),
            store,
            keys,
            billing,
            config: Arc::new(config),
        }
    }

    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// A.3.1: the demander binds a published resource to its published demand.
    pub async fn confirm(
        &self,
        caller: &Caller,
        req: &ConfirmDemand,
    ) -> Result<ConfirmationView, DomainError> {
        caller.must_be("demander", &req.demander)?;
        let demand = self.store.demand(&req.demand_id).await?.ok_or_else(|| {
            DomainError::NotFound(format!("no demand with demandID '{}'", req.demand_id))
        })?;
        if demand.demander_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "demandID '{}' belongs to another demander",
                req.demand_id
            )));
        }
        if demand.status != PublicationStatus::Published {
            return Err(DomainError::InvalidState(format!(
                "demand '{}' is not published",
                demand.id
            )));
        }
        let resource = self
            .supply
            .find(&ResourceRef {
                registration_id: req.registration_id.clone(),
                data_id: req.data_id.clone(),
            })
            .await?;
        let terms = match (resource.status, resource.terms) {
            (PublicationStatus::Published, Some(terms)) => terms,
            _ => {
                return Err(DomainError::InvalidState(format!(
                    "resource '{}' is not published",
                    resource.registration_id
                )));
            }
        };
        if resource.owner_account_id == caller.account_id {
            return Err(DomainError::Forbidden(
                "an account cannot confirm its own resource".to_owned(),
            ));
        }
        if resource.data_type != demand.data_type {
            return Err(DomainError::invalid(
                "/registrationID",
                format!(
                    "the resource's data_type '{}' is not the demand's '{}'",
                    resource.data_type, demand.data_type
                ),
            ));
        }
        let now = now_millis();
        let confirmation = Confirmation {
            id: new_id("cfm_"),
            demand_id: demand.id.clone(),
            resource_id: resource.id.clone(),
            registration_id: resource.registration_id.clone(),
            data_id: resource.data_id.clone(),
            controlled: resource.controlled,
            seller_account_id: resource.owner_account_id.clone(),
            seller_name: resource.owner_name.clone(),
            buyer_account_id: caller.account_id.clone(),
            buyer_name: caller.username.clone(),
            price_minor: terms.price_minor,
            usage_restrictions: license::usage_restrictions(resource.usage_restrictions.as_ref()),
            status: ConfirmationStatus::Confirmed,
            created_at: now,
            expires_at: now.saturating_add(self.config.confirmation_ttl.as_millis() as i64),
            settled_at: None,
        };
        match self.store.insert_confirmation(&confirmation).await {
            Ok(()) => Ok(ConfirmationView::of(&confirmation, now)),
            Err(e) if e.is_unique(CONFIRMATION_LIVE) => Err(DomainError::Conflict(format!(
                "demand '{}' is already bound to a live confirmation",
                demand.id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn find_confirmation(&self, confirm_id: &str) -> Result<Confirmation, DomainError> {
        self.store.confirmation(confirm_id).await?.ok_or_else(|| {
            DomainError::NotFound(format!("no confirmation with confirmID '{confirm_id}'"))
        })
    }

    /// A.3.2: buyer, seller or operator.
    pub async fn query_confirmation(
        &self,
        caller: &Caller,
        confirm_id: &str,
    ) -> Result<ConfirmationView, DomainError> {
        let c = self.find_confirmation(confirm_id).await?;
        c.check_party(caller)?;
        Ok(ConfirmationView::of(&c, now_millis()))
    }

    /// A.3.4: buyer, seller or operator. Unsettled confirmations have null documents.
    pub async fn query_settlement(
        &self,
        caller: &Caller,
        confirm_id: &str,
    ) -> Result<SettlementView, DomainError> {
        let c = self.find_confirmation(confirm_id).await?;
        c.check_party(caller)?;
        match self.store.settlement(&c.id).await? {
            Some(s) => self.settled_view(&s).await,
            None => Ok(SettlementView {
                confirm_id: c.id,
                payment_proof: Value::Null,
                settlement_status: UNSETTLED,
                licenses: Value::Null,
                private_key: Value::Null,
            }),
        }
    }

    async fn settled_view(&self, s: &SettlementRecord) -> Result<SettlementView, DomainError> {
        let license = self
            .store
            .current_license(&s.confirm_id)
            .await?
            .ok_or_else(|| {
                DomainError::Internal(format!("settlement {} has no license", s.confirm_id))
            })?;
        Ok(SettlementView {
            confirm_id: s.confirm_id.clone(),
            payment_proof: s.payment_proof.clone(),
            settlement_status: SETTLED,
            licenses: license.document,
            private_key: s.private_key.clone().unwrap_or(Value::Null),
        })
    }

    /// A.3.3: the buyer pays. Exactly once: a repeated or concurrent call returns the first
    /// settlement's documents and charges nothing more.
    pub async fn settle(
        &self,
        caller: &Caller,
        confirm_id: &str,
    ) -> Result<SettlementView, DomainError> {
        let c = self.find_confirmation(confirm_id).await?;
        if c.buyer_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "only the demander of confirmation '{}' may settle it",
                c.id
            )));
        }
        if let Some(existing) = self.store.settlement(&c.id).await? {
            return self.settled_view(&existing).await;
        }
        let now = now_millis();
        if c.effective_status(now) == ConfirmationStatus::Expired {
            return Err(expired(&c));
        }
        let resource = self
            .store
            .resource_by_id(&c.resource_id)
            .await?
            .ok_or_else(|| DomainError::Internal(format!("resource {} vanished", c.resource_id)))?;
        let private_key = if c.controlled {
            // Controlled data stays in its trusted data space (A.3.7): no key to hand over.
            None
        } else {
            Some(self.private_key_for(&c, &resource).await?)
        };

        let request = ChargeRequest {
            confirm_id: &c.id,
            resource_id: &c.resource_id,
            registration_id: &c.registration_id,
            data_id: &c.data_id,
            buyer: &c.buyer_name,
            seller: &c.seller_name,
            currency: &self.config.currency,
            list_price_minor: c.price_minor,
            free: c.price_minor == 0,
            controlled: c.controlled,
            data_type: &resource.data_type,
            at_ms: now,
        };
        let Billed {
            charge,
            rule: billing_rule,
        } = self.billing.charge(&request).await.map_err(|e| match e {
            BillingError::Unavailable { .. } => DomainError::Unavailable(e.to_string()),
            BillingError::Failed { .. } | BillingError::Inconsistent { .. } => {
                DomainError::PluginFailed(e.to_string())
            }
        })?;

        let mut postings = vec![
            Posting {
                account: c.buyer_account_id.clone(),
                kind: AccountKind::User,
                amount: -charge.amount_minor,
            },
            Posting {
                account: c.seller_account_id.clone(),
                kind: AccountKind::User,
                amount: charge.provider_share_minor,
            },
        ];
        if charge.platform_fee_minor != 0 {
            postings.push(Posting {
                account: FEES_ACCOUNT.to_owned(),
                kind: AccountKind::System,
                amount: charge.platform_fee_minor,
            });
        }
        let ledger = LedgerTransaction::new(
            TransactionKind::Settlement,
            &c.id,
            json!({"confirmID": c.id, "amountMinor": charge.amount_minor}).to_string(),
            postings,
        )?;

        let settled_at = from_millis(now);
        let receipt_id = new_id("rcpt_");
        let proof = json!({
            "type": "payment_proof",
            "receiptID": receipt_id,
            "confirmID": c.id,
            "payer": c.buyer_name,
            "payee": c.seller_name,
            "registrationID": c.registration_id,
            "dataID": c.data_id,
            "amount": format_minor(charge.amount_minor),
            "amountMinor": charge.amount_minor,
            "platformFeeMinor": charge.platform_fee_minor,
            "providerShareMinor": charge.provider_share_minor,
            "currency": self.config.currency,
            "lineItems": charge.line_items,
            "billing": billing_rule,
            "ledgerTransaction": ledger.id,
            "settledAt": to_rfc3339(settled_at),
        });
        let Value::Object(proof) = proof else {
            return Err(DomainError::Internal(
                "payment proof is not an object".into(),
            ));
        };
        let payment_proof = Value::Object(
            self.keys
                .sign_document(proof, PROOF_SIGNATURE_FIELD)
                .map_err(sign_err)?,
        );

        // License terms are whole seconds: the annex writes them as yyyy-mm-dd HH:MM:SS.
        let start = OffsetDateTime::from_unix_timestamp(now.div_euclid(1000))
            .map_err(|e| DomainError::Internal(format!("time: {e}")))?;
        let end = start + self.config.license_term;
        let terms = LicenseTerms {
            licenses_id: new_id("lic_"),
            licensor: c.seller_name.clone(),
            licensee: c.buyer_name.clone(),
            registration_id: c.registration_id.clone(),
            data_id: c.data_id.clone(),
            resource_url: license_resource_url(&resource),
            usage_restrictions: c.usage_restrictions.clone(),
            start,
            end,
            confirm_id: c.id.clone(),
        };
        let document = license::issue(&self.keys, &terms).map_err(sign_err)?;
        let write = SettlementWrite {
            confirm_id: c.id.clone(),
            now,
            settlement: SettlementRecord {
                confirm_id: c.id.clone(),
                receipt_id,
                ledger_transaction_id: ledger.id.clone(),
                amount_minor: charge.amount_minor,
                payment_proof,
                private_key,
                settled_at: now,
            },
            license: LicenseRecord {
                id: terms.licenses_id.clone(),
                confirm_id: c.id.clone(),
                resource_id: c.resource_id.clone(),
                licensee_account_id: c.buyer_account_id.clone(),
                document,
                starts_at: start.unix_timestamp() * 1000,
                ends_at: end.unix_timestamp() * 1000,
                issued_at: now,
                superseded_by: None,
            },
            ledger,
        };
        match self.store.settle(&write).await? {
            SettleOutcome::Settled => self.settled_view(&write.settlement).await,
            SettleOutcome::AlreadySettled => {
                let existing = self.store.settlement(&c.id).await?.ok_or_else(|| {
                    DomainError::Internal(format!("settled confirmation {} has no record", c.id))
                })?;
                self.settled_view(&existing).await
            }
            SettleOutcome::NotSettleable => Err(expired(&c)),
            SettleOutcome::LimitReached { account } if account == c.buyer_account_id => {
                let balance = self.store.ledger_balance(&c.buyer_account_id).await?;
                Err(DomainError::InsufficientFunds(format!(
                    "the balance {} does not cover the price {} {}; nothing was charged",
                    format_minor(balance),
                    format_minor(charge.amount_minor),
                    self.config.currency
                )))
            }
            SettleOutcome::LimitReached { account } => Err(DomainError::Conflict(format!(
                "settling would take ledger account '{account}' beyond its maximum balance"
            ))),
        }
    }

    /// The provider's delivery identity, re-encrypted to the buyer's own recipient. Refuses,
    /// before any money moves, when the buyer has no delivery key, the provider deposited none,
    /// or there is nothing to deliver.
    async fn private_key_for(
        &self,
        c: &Confirmation,
        resource: &super::supply::Resource,
    ) -> Result<Value, DomainError> {
        let buyer_recipient = self
            .store
            .account_delivery_key(&c.buyer_account_id)
            .await?
            .ok_or_else(|| {
                DomainError::InvalidState(
                    "you have no delivery key: set your age recipient with \
                     PUT /v1/account/deliveryKey before settling, so the data's key can be \
                     encrypted to you; nothing was charged"
                        .to_owned(),
                )
            })?;
        let sealed = self
            .store
            .resource_delivery_key(&c.resource_id)
            .await?
            .ok_or_else(|| {
                DomainError::InvalidState(format!(
                    "the provider of '{}' has not deposited its delivery key \
                     (PUT /v1/data/deliveryKey) yet, so the data could not be opened; settle \
                     once it has; nothing was charged",
                    c.registration_id
                ))
            })?;
        let has_file = self.store.resource_file(&c.resource_id).await?.is_some();
        let fetchable = self.config.fetch_resource_urls
            && resource.resource_url.as_deref().is_some_and(is_fetchable);
        if !has_file && !fetchable {
            return Err(DomainError::InvalidState(format!(
                "the provider of '{}' has not uploaded its data file (PUT /v1/data/file) and \
                 its resource_url is not one liutong can fetch; nothing was charged",
                c.registration_id
            )));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed.sealed)
            .map_err(|e| DomainError::Internal(format!("stored sealed key: {e}")))?;
        let identity = sealing::unseal_identity(&self.keys, &raw).map_err(|e| {
            DomainError::Internal(format!(
                "cannot open the deposited delivery key of {} (escrow keys lost?): {e}",
                c.resource_id
            ))
        })?;
        let buyer = sealing::parse_recipient(&buyer_recipient)
            .map_err(|e| DomainError::Internal(format!("stored buyer recipient: {e}")))?;
        let ciphertext =
            sealing::rewrap_identity(&identity, &buyer, &to_rfc3339(OffsetDateTime::now_utc()))
                .map_err(|e| DomainError::Internal(e.to_string()))?;
        Ok(json!({
            "format": "age",
            "recipient": buyer_recipient,
            "ciphertext": base64::engine::general_purpose::STANDARD.encode(ciphertext),
        }))
    }

    /// A.3.8: the owner re-issues every live license of a resource: new numbers, watermarks and
    /// signatures (by the current key), same parties, terms and restrictions. The old licenses
    /// are refused at delivery from then on.
    pub async fn update_licenses(
        &self,
        caller: &Caller,
        req: &UpdateLicenses,
    ) -> Result<Vec<Value>, DomainError> {
        let resource = if req.owner == CONTROLLED_OWNER {
            caller.require_role(Role::DataSpace)?;
            self.store
                .resource_by_ref(CONTROLLED_REGISTRATION_ID, Some(&req.data_id))
                .await?
        } else {
            caller.must_be("owner", &req.owner)?;
            self.store
                .resource_by_owner_data(&req.owner, &req.data_id)
                .await?
        }
        .ok_or_else(|| {
            DomainError::NotFound(format!(
                "'{}' has no data resource with dataID '{}'",
                req.owner, req.data_id
            ))
        })?;
        if resource.owner_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "dataID '{}' belongs to another data space",
                req.data_id
            )));
        }
        let now = now_millis();
        let live = self
            .store
            .live_licenses_for_resource(&resource.id, now)
            .await?;
        let mut replacements = Vec::with_capacity(live.len());
        for old in &live {
            let mut terms = terms_of(&old.document).map_err(|m| {
                DomainError::Internal(format!("stored license {} is malformed: {m}", old.id))
            })?;
            terms.licenses_id = new_id("lic_");
            let document = license::issue(&self.keys, &terms).map_err(sign_err)?;
            replacements.push((
                old.id.clone(),
                LicenseRecord {
                    id: terms.licenses_id,
                    confirm_id: old.confirm_id.clone(),
                    resource_id: old.resource_id.clone(),
                    licensee_account_id: old.licensee_account_id.clone(),
                    document,
                    starts_at: old.starts_at,
                    ends_at: old.ends_at,
                    issued_at: now,
                    superseded_by: None,
                },
            ));
        }
        if !self.store.reissue_licenses(&replacements, now).await? {
            return Err(DomainError::Conflict(
                "the licenses of this resource were updated concurrently; retry".to_owned(),
            ));
        }
        Ok(replacements.into_iter().map(|(_, l)| l.document).collect())
    }
}

fn expired(c: &Confirmation) -> DomainError {
    DomainError::InvalidState(format!(
        "confirmation '{}' expired unsettled at {}; confirm the demand again",
        c.id,
        to_rfc3339(from_millis(c.expires_at))
    ))
}

/// What a license names as the resource's location: the registered `resource_url`, or for
/// controlled data (which has none) a URN naming it in its trusted data space.
fn license_resource_url(resource: &super::supply::Resource) -> String {
    match &resource.resource_url {
        Some(url) => url.clone(),
        None => format!("urn:liutong:controlled:{}", resource.data_id),
    }
}

/// Reads the terms back out of an issued license, to re-issue it.
fn terms_of(doc: &Value) -> Result<LicenseTerms, String> {
    let map: &Map<String, Value> = doc.as_object().ok_or("not an object")?;
    let text = |f: &str| -> Result<String, String> {
        map.get(f)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("{f} missing"))
    };
    let term = map
        .get("license_term")
        .and_then(Value::as_object)
        .ok_or("license_term missing")?;
    let when = |f: &str| -> Result<OffsetDateTime, String> {
        let t = term
            .get(f)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{f} missing"))?;
        super::timefmt::parse_datetime(f, t).map_err(|e| e.to_string())
    };
    Ok(LicenseTerms {
        licenses_id: text("licensesID")?,
        licensor: text("licensor")?,
        licensee: text("licensee")?,
        registration_id: text("registrationID")?,
        data_id: text("dataID")?,
        resource_url: text("resource_url")?,
        usage_restrictions: map
            .get("usage_restrictions")
            .cloned()
            .ok_or("usage_restrictions missing")?,
        start: when("startData")?,
        end: when("endDate")?,
        confirm_id: text("confirmID")?,
    })
}
