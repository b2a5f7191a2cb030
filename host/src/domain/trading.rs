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

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::billing::{Charge, LineItem};
use super::ledger::{AccountKind, FEES_ACCOUNT, Posting};
use super::license::LicenseTerms;
use super::money::Money;
use super::timefmt::{from_millis, to_rfc3339};
use super::{AccountId, Caller, DomainError, Role};

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
    pub seller_account_id: AccountId,
    /// The resource's `owner` (`trusted-data-space` for controlled data).
    pub seller_name: String,
    pub buyer_account_id: AccountId,
    pub buyer_name: String,
    /// The price when confirmed.
    pub price: Money,
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
    pub amount: Money,
    pub payment_proof: Value,
    pub private_key: Option<Value>,
    pub settled_at: i64,
}

/// What settling one confirmation needs to know, read in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct SettlementContext {
    pub confirmation: Confirmation,
    /// The resource's `data_type` and `resource_url` (a license names the latter).
    pub data_type: String,
    pub resource_url: Option<String>,
    /// The settlement and its current license, when it is settled already.
    pub settled: Option<(SettlementRecord, Value)>,
    /// The buyer's age recipient, if set.
    pub buyer_recipient: Option<String>,
    /// The provider's delivery identity sealed to the escrow (base64), if deposited.
    pub sealed_key: Option<String>,
    /// The provider uploaded a data file.
    pub has_file: bool,
}

/// The signed receipt of a settlement (A.3.3 `payment_proof`). Amounts are exact decimal text
/// and integer minor units: a verifier never formats a float.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentProof<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "receiptID")]
    pub receipt_id: &'a str,
    #[serde(rename = "confirmID")]
    pub confirm_id: &'a str,
    pub payer: &'a str,
    pub payee: &'a str,
    #[serde(rename = "registrationID")]
    pub registration_id: &'a str,
    #[serde(rename = "dataID")]
    pub data_id: &'a str,
    pub amount: String,
    #[serde(rename = "amountMinor")]
    pub amount_minor: Money,
    #[serde(rename = "platformFeeMinor")]
    pub platform_fee_minor: Money,
    #[serde(rename = "providerShareMinor")]
    pub provider_share_minor: Money,
    pub currency: &'a str,
    #[serde(rename = "lineItems")]
    pub line_items: &'a [LineItem],
    /// The rule that priced it: `native-flat` or `plugin <id>@<version>`.
    pub billing: &'a str,
    #[serde(rename = "ledgerTransaction")]
    pub ledger_transaction: &'a str,
    #[serde(rename = "settledAt")]
    pub settled_at: String,
}

/// The signed receipt of a delivery (A.3.5 `delivery_proof`): which bytes (size, SHA-256) were
/// handed over under which license, and when.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryProof<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(rename = "deliveryID")]
    pub delivery_id: &'a str,
    #[serde(rename = "licensesID")]
    pub licenses_id: &'a str,
    #[serde(rename = "confirmID")]
    pub confirm_id: &'a str,
    #[serde(rename = "registrationID")]
    pub registration_id: &'a str,
    #[serde(rename = "dataID")]
    pub data_id: &'a str,
    pub licensor: &'a str,
    pub licensee: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    /// `upload` or `resource_url`.
    pub source: &'static str,
    #[serde(rename = "deliveredAt")]
    pub delivered_at: String,
    pub digital_watermarking: &'a str,
}

/// The ledger postings of a settlement: the buyer pays the amount, the seller gets its share,
/// the platform its fee.
pub fn settlement_postings(c: &Confirmation, charge: &Charge) -> Vec<Posting> {
    let mut postings = vec![
        Posting {
            account: c.buyer_account_id.to_string(),
            kind: AccountKind::User,
            amount: -charge.amount,
        },
        Posting {
            account: c.seller_account_id.to_string(),
            kind: AccountKind::User,
            amount: charge.provider_share,
        },
    ];
    if !charge.platform_fee.is_zero() {
        postings.push(Posting {
            account: FEES_ACCOUNT.to_owned(),
            kind: AccountKind::System,
            amount: charge.platform_fee,
        });
    }
    postings
}

/// A license as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LicenseRecord {
    pub id: String,
    pub confirm_id: String,
    pub resource_id: String,
    pub licensee_account_id: AccountId,
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
    pub fn of(c: &Confirmation, now: i64) -> Self {
        ConfirmationView {
            confirm_id: c.id.clone(),
            owner: c.seller_name.clone(),
            demander: c.buyer_name.clone(),
            registration_id: c.registration_id.clone(),
            data_id: c.data_id.clone(),
            demand_id: c.demand_id.clone(),
            price: c.price.to_price(),
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

pub fn expired(c: &Confirmation) -> DomainError {
    DomainError::InvalidState(format!(
        "confirmation '{}' expired unsettled at {}; confirm the demand again",
        c.id,
        to_rfc3339(from_millis(c.expires_at))
    ))
}

/// What a license names as the resource's location: the registered `resource_url`, or for
/// controlled data (which has none) a URN naming it in its trusted data space.
pub fn license_resource_url(resource_url: Option<&str>, data_id: &str) -> String {
    match resource_url {
        Some(url) => url.to_owned(),
        None => format!("urn:liutong:controlled:{data_id}"),
    }
}

/// Reads the terms back out of an issued license, to re-issue it.
pub fn terms_of(doc: &Value) -> Result<LicenseTerms, String> {
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
