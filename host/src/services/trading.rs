//! Circulation and trading (A.3.1–A.3.4, A.3.8): confirming a resource for a demand, settling
//! it, and (re-)issuing licenses. The lifecycle and its rules are in `domain::trading`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::ServiceError;
use super::licensing;
use super::supply::Supply;
use crate::crypto::{KeyRing, sealing};
use crate::domain::billing::{Billed, Billing, BillingError, ChargeRequest};
use crate::domain::ledger::{LedgerTransaction, TransactionKind};
use crate::domain::license::{self, LicenseTerms};
use crate::domain::supply::ResourceRef;
use crate::domain::timefmt::{from_millis, now_millis, to_rfc3339};
use crate::domain::trading::{
    ConfirmDemand, Confirmation, ConfirmationStatus, ConfirmationView, LicenseRecord,
    PROOF_SIGNATURE_FIELD, PaymentProof, SETTLED, SettlementContext, SettlementRecord,
    SettlementView, UNSETTLED, UpdateLicenses, expired, license_resource_url, settlement_postings,
    terms_of,
};
use crate::domain::{
    CONTROLLED_OWNER, CONTROLLED_REGISTRATION_ID, Caller, DomainError, PublicationStatus, Role,
    new_id,
};
use crate::files::fetch::is_fetchable;
use crate::store::Store;
use crate::store::trading::{ConfirmationInsert, SettleOutcome, SettlementWrite};

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

/// A settled confirmation's documents: the payment proof, its current license and the buyer's
/// delivery key.
fn settled_view(s: &SettlementRecord, license: Value) -> SettlementView {
    SettlementView {
        confirm_id: s.confirm_id.clone(),
        payment_proof: s.payment_proof.clone(),
        settlement_status: SETTLED,
        licenses: license,
        private_key: s.private_key.clone().unwrap_or(Value::Null),
    }
}

fn sign_err(e: crate::crypto::SignatureError) -> ServiceError {
    ServiceError::Internal(format!("signing: {e}"))
}

/// The answer to a confirmID this server does not know.
pub(crate) fn no_confirmation(confirm_id: &str) -> ServiceError {
    ServiceError::not_found(format!("no confirmation with confirmID '{confirm_id}'"))
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
    ) -> Result<ConfirmationView, ServiceError> {
        caller.must_be("demander", &req.demander)?;
        let demand = self.store.demand(&req.demand_id).await?.ok_or_else(|| {
            DomainError::NotFound(format!("no demand with demandID '{}'", req.demand_id))
        })?;
        if demand.demander_account_id != caller.account_id {
            return Err(DomainError::Forbidden(format!(
                "demandID '{}' belongs to another demander",
                req.demand_id
            ))
            .into());
        }
        if demand.status != PublicationStatus::Published {
            return Err(DomainError::InvalidState(format!(
                "demand '{}' is not published",
                demand.id
            ))
            .into());
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
                ))
                .into());
            }
        };
        if resource.owner_account_id == caller.account_id {
            return Err(DomainError::Forbidden(
                "an account cannot confirm its own resource".to_owned(),
            )
            .into());
        }
        if resource.data_type != demand.data_type {
            return Err(DomainError::invalid(
                "/registrationID",
                format!(
                    "the resource's data_type '{}' is not the demand's '{}'",
                    resource.data_type, demand.data_type
                ),
            )
            .into());
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
            price: terms.price,
            usage_restrictions: license::usage_restrictions(resource.usage_restrictions.as_ref()),
            status: ConfirmationStatus::Confirmed,
            created_at: now,
            expires_at: now.saturating_add(self.config.confirmation_ttl.as_millis() as i64),
            settled_at: None,
        };
        match self.store.insert_confirmation(&confirmation).await? {
            ConfirmationInsert::Created => Ok(ConfirmationView::of(&confirmation, now)),
            ConfirmationInsert::DemandAlreadyBound => Err(ServiceError::conflict(format!(
                "demand '{}' is already bound to a live confirmation",
                demand.id
            ))),
        }
    }

    pub async fn find_confirmation(&self, confirm_id: &str) -> Result<Confirmation, ServiceError> {
        self.store
            .confirmation(confirm_id)
            .await?
            .ok_or_else(|| no_confirmation(confirm_id))
    }

    async fn settlement_context(
        &self,
        confirm_id: &str,
    ) -> Result<SettlementContext, ServiceError> {
        self.store
            .settlement_context(confirm_id)
            .await?
            .ok_or_else(|| no_confirmation(confirm_id))
    }

    /// A.3.2: buyer, seller or operator.
    pub async fn query_confirmation(
        &self,
        caller: &Caller,
        confirm_id: &str,
    ) -> Result<ConfirmationView, ServiceError> {
        let c = self.find_confirmation(confirm_id).await?;
        c.check_party(caller)?;
        Ok(ConfirmationView::of(&c, now_millis()))
    }

    /// A.3.4: buyer, seller or operator. Unsettled confirmations have null documents.
    pub async fn query_settlement(
        &self,
        caller: &Caller,
        confirm_id: &str,
    ) -> Result<SettlementView, ServiceError> {
        let ctx = self.settlement_context(confirm_id).await?;
        let c = ctx.confirmation;
        c.check_party(caller)?;
        match ctx.settled {
            Some((settlement, license)) => Ok(settled_view(&settlement, license)),
            None => Ok(SettlementView {
                confirm_id: c.id,
                payment_proof: Value::Null,
                settlement_status: UNSETTLED,
                licenses: Value::Null,
                private_key: Value::Null,
            }),
        }
    }

    /// A.3.3: the buyer pays. Exactly once: a repeated or concurrent call returns the first
    /// settlement's documents and charges nothing more.
    ///
    /// One read (everything the settlement needs), then everything that can fail without the
    /// database (billing, opening and re-sealing the delivery key, signing), then one write
    /// transaction; the answer is built from what was written, not read back.
    pub async fn settle(
        &self,
        caller: &Caller,
        confirm_id: &str,
    ) -> Result<SettlementView, ServiceError> {
        let ctx = self.settlement_context(confirm_id).await?;
        let c = &ctx.confirmation;
        if c.buyer_account_id != caller.account_id {
            return Err(ServiceError::forbidden(format!(
                "only the demander of confirmation '{}' may settle it",
                c.id
            )));
        }
        if let Some((settlement, license)) = &ctx.settled {
            return Ok(settled_view(settlement, license.clone()));
        }
        let now = now_millis();
        if c.effective_status(now) == ConfirmationStatus::Expired {
            return Err(expired(c).into());
        }
        let private_key = if c.controlled {
            // Controlled data stays in its trusted data space (A.3.7): no key to hand over.
            None
        } else {
            Some(self.private_key_for(&ctx)?)
        };

        let request = ChargeRequest {
            confirm_id: &c.id,
            resource_id: &c.resource_id,
            registration_id: &c.registration_id,
            data_id: &c.data_id,
            buyer: &c.buyer_name,
            seller: &c.seller_name,
            currency: &self.config.currency,
            list_price: c.price,
            free: c.price.is_zero(),
            controlled: c.controlled,
            data_type: &ctx.data_type,
            at_ms: now,
        };
        let Billed {
            charge,
            rule: billing_rule,
        } = self.billing.charge(&request).await.map_err(|e| match e {
            BillingError::Unavailable { .. } => ServiceError::Unavailable(e.to_string()),
            BillingError::Failed { .. } | BillingError::Inconsistent { .. } => {
                ServiceError::PluginFailed(e.to_string())
            }
        })?;
        let ledger = LedgerTransaction::new(
            TransactionKind::Settlement,
            &c.id,
            json!({"confirmID": c.id, "amountMinor": charge.amount}).to_string(),
            settlement_postings(c, &charge),
        )?;

        let receipt_id = new_id("rcpt_");
        let payment_proof = self
            .keys
            .sign(
                &PaymentProof {
                    kind: "payment_proof",
                    receipt_id: &receipt_id,
                    confirm_id: &c.id,
                    payer: &c.buyer_name,
                    payee: &c.seller_name,
                    registration_id: &c.registration_id,
                    data_id: &c.data_id,
                    amount: charge.amount.to_string(),
                    amount_minor: charge.amount,
                    platform_fee_minor: charge.platform_fee,
                    provider_share_minor: charge.provider_share,
                    currency: &self.config.currency,
                    line_items: &charge.line_items,
                    billing: &billing_rule,
                    ledger_transaction: &ledger.id,
                    settled_at: to_rfc3339(from_millis(now)),
                },
                PROOF_SIGNATURE_FIELD,
            )
            .map_err(sign_err)?;

        // License terms are whole seconds: the annex writes them as yyyy-mm-dd HH:MM:SS.
        let start = OffsetDateTime::from_unix_timestamp(now.div_euclid(1000))
            .map_err(|e| ServiceError::Internal(format!("time: {e}")))?;
        let end = start + self.config.license_term;
        let terms = LicenseTerms {
            licenses_id: new_id("lic_"),
            licensor: c.seller_name.clone(),
            licensee: c.buyer_name.clone(),
            registration_id: c.registration_id.clone(),
            data_id: c.data_id.clone(),
            resource_url: license_resource_url(ctx.resource_url.as_deref(), &c.data_id),
            usage_restrictions: c.usage_restrictions.clone(),
            start,
            end,
            confirm_id: c.id.clone(),
        };
        let document = licensing::issue(&self.keys, &terms).map_err(sign_err)?;
        let write = SettlementWrite {
            confirm_id: c.id.clone(),
            now,
            settlement: SettlementRecord {
                confirm_id: c.id.clone(),
                receipt_id,
                ledger_transaction_id: ledger.id.clone(),
                amount: charge.amount,
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
            SettleOutcome::Settled => Ok(settled_view(&write.settlement, write.license.document)),
            SettleOutcome::AlreadySettled => {
                let (settlement, license) = self
                    .store
                    .settlement_context(&c.id)
                    .await?
                    .and_then(|ctx| ctx.settled)
                    .ok_or_else(|| {
                        ServiceError::Internal(format!(
                            "settled confirmation {} has no record",
                            c.id
                        ))
                    })?;
                Ok(settled_view(&settlement, license))
            }
            SettleOutcome::NotSettleable => Err(expired(c).into()),
            SettleOutcome::LimitReached { account } if c.buyer_account_id == *account => {
                let balance = self
                    .store
                    .ledger_balance(c.buyer_account_id.as_str())
                    .await?;
                Err(DomainError::InsufficientFunds(format!(
                    "the balance {balance} does not cover the price {} {}; nothing was charged",
                    charge.amount, self.config.currency
                ))
                .into())
            }
            SettleOutcome::LimitReached { account } => Err(ServiceError::conflict(format!(
                "settling would take ledger account '{account}' beyond its maximum balance"
            ))),
        }
    }

    /// The provider's delivery identity, re-encrypted to the buyer's own recipient. Refuses,
    /// before any money moves, when the buyer has no delivery key, the provider deposited none,
    /// or there is nothing to deliver.
    fn private_key_for(&self, ctx: &SettlementContext) -> Result<Value, ServiceError> {
        let c = &ctx.confirmation;
        let buyer_recipient = ctx.buyer_recipient.as_deref().ok_or_else(|| {
            ServiceError::invalid_state(
                "you have no delivery key: set your age recipient with \
                 PUT /v1/account/deliveryKey before settling, so the data's key can be \
                 encrypted to you; nothing was charged",
            )
        })?;
        let sealed = ctx.sealed_key.as_deref().ok_or_else(|| {
            ServiceError::invalid_state(format!(
                "the provider of '{}' has not deposited its delivery key \
                 (PUT /v1/data/deliveryKey) yet, so the data could not be opened; settle \
                 once it has; nothing was charged",
                c.registration_id
            ))
        })?;
        let fetchable = self.config.fetch_resource_urls
            && ctx.resource_url.as_deref().is_some_and(is_fetchable);
        if !ctx.has_file && !fetchable {
            return Err(ServiceError::invalid_state(format!(
                "the provider of '{}' has not uploaded its data file (PUT /v1/data/file) and \
                 its resource_url is not one liutong can fetch; nothing was charged",
                c.registration_id
            )));
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|e| ServiceError::Internal(format!("stored sealed key: {e}")))?;
        let identity =
            sealing::unseal_identity(self.keys.escrow_identities(), &raw).map_err(|e| {
                ServiceError::Internal(format!(
                    "cannot open the deposited delivery key of {} (escrow keys lost?): {e}",
                    c.resource_id
                ))
            })?;
        let buyer = sealing::parse_recipient(buyer_recipient)
            .map_err(|e| ServiceError::Internal(format!("stored buyer recipient: {e}")))?;
        let ciphertext =
            sealing::rewrap_identity(&identity, &buyer, &to_rfc3339(OffsetDateTime::now_utc()))
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
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
    ) -> Result<Vec<Value>, ServiceError> {
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
            ))
            .into());
        }
        let now = now_millis();
        let live = self
            .store
            .live_licenses_for_resource(&resource.id, now)
            .await?;
        let mut replacements = Vec::with_capacity(live.len());
        for old in &live {
            let mut terms = terms_of(&old.document).map_err(|m| {
                ServiceError::Internal(format!("stored license {} is malformed: {m}", old.id))
            })?;
            terms.licenses_id = new_id("lic_");
            let document = licensing::issue(&self.keys, &terms).map_err(sign_err)?;
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
            )
            .into());
        }
        Ok(replacements.into_iter().map(|(_, l)| l.document).collect())
    }
}
