//! Billing: the one seam every charge goes through.
//!
//! Settlement asks a `Billing` implementation what a confirmation costs and how the money is
//! split; it never computes a price itself. The native implementation here is a flat price with
//! an optional platform fee; WebAssembly billing plugins implement the same trait. Every amount
//! is integer minor units, and `Charge::check` refuses an inconsistent answer before any money
//! moves, whoever computed it.

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use super::money::{MAX_PRICE_MAJOR, MINOR_PER_MAJOR, Money};

/// What billing is told about one settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest<'a> {
    pub confirm_id: &'a str,
    /// The resource's internal id (the key of per-publication billing rules).
    pub resource_id: &'a str,
    pub registration_id: &'a str,
    pub data_id: &'a str,
    /// The buyer's and the seller's usernames.
    pub buyer: &'a str,
    pub seller: &'a str,
    pub currency: &'a str,
    /// The price the buyer confirmed (snapshot at confirmation).
    pub list_price: Money,
    /// The resource was published free of charge.
    pub free: bool,
    pub controlled: bool,
    pub data_type: &'a str,
    /// Settlement time, Unix milliseconds: rules have no clock of their own.
    pub at_ms: i64,
}

/// One line of the bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineItem {
    pub description: String,
    #[serde(rename = "amountMinor")]
    pub amount: Money,
}

/// What the buyer pays and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Debited from the buyer.
    pub amount: Money,
    /// Credited to the platform's fee account.
    pub platform_fee: Money,
    /// Credited to the seller.
    pub provider_share: Money,
    /// Sum to `amount`.
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillingError {
    #[error("billing rule '{rule}' failed: {message}")]
    Failed { rule: String, message: String },
    #[error("billing rule '{rule}' returned an inconsistent charge: {message}")]
    Inconsistent { rule: String, message: String },
    /// The rule chosen for this publication cannot run now (disabled, not loaded).
    #[error("billing rule '{rule}' is unavailable: {message}")]
    Unavailable { rule: String, message: String },
}

/// A charge and the rule that computed it (`native-flat`, or `plugin flat-fee@0.1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Billed {
    pub charge: Charge,
    pub rule: String,
}

pub type BillingFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Billed, BillingError>> + Send + 'a>>;

/// The largest single charge: the largest price.
pub const MAX_CHARGE: Money = Money::from_minor(MAX_PRICE_MAJOR * MINOR_PER_MAJOR);

impl Charge {
    /// Every amount within 0..=MAX_CHARGE, the split adds up to the amount, and the line
    /// items add up to the amount.
    pub fn check(&self, rule: &str) -> Result<(), BillingError> {
        let bad = |message: String| BillingError::Inconsistent {
            rule: rule.to_owned(),
            message,
        };
        for (name, v) in [
            ("amount", self.amount),
            ("platform fee", self.platform_fee),
            ("provider share", self.provider_share),
        ] {
            if !(Money::ZERO..=MAX_CHARGE).contains(&v) {
                return Err(bad(format!("{name} {v} is outside 0.00..={MAX_CHARGE}")));
            }
        }
        if self.platform_fee + self.provider_share != self.amount {
            return Err(bad(format!(
                "fee {} + provider share {} != amount {}",
                self.platform_fee, self.provider_share, self.amount
            )));
        }
        let mut sum = Money::ZERO;
        for item in &self.line_items {
            if !(Money::ZERO..=MAX_CHARGE).contains(&item.amount) {
                return Err(bad(format!(
                    "line item '{}' amount {} is out of range",
                    item.description, item.amount
                )));
            }
            sum += item.amount;
        }
        if sum != self.amount {
            return Err(bad(format!(
                "line items sum to {sum}, not the amount {}",
                self.amount
            )));
        }
        Ok(())
    }
}

/// Where settlement gets its charges from. Rules must be pure: the same request gives the same
/// charge. Implementations check the charge (`Charge::check`) before returning it.
pub trait Billing: Send + Sync + 'static {
    fn charge<'a>(&'a self, request: &'a ChargeRequest<'a>) -> BillingFuture<'a>;
}

/// The native rule: the buyer pays the confirmed price; the platform keeps `fee_bps` basis
/// points of it (rounded down), the seller gets the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlatBilling {
    pub fee_bps: u32,
}

impl FlatBilling {
    pub const NAME: &'static str = "native-flat";

    pub fn compute(&self, request: &ChargeRequest<'_>) -> Result<Charge, BillingError> {
        let amount = request.list_price;
        let fee = fee_of(amount, self.fee_bps);
        Ok(Charge {
            amount,
            platform_fee: fee,
            provider_share: amount - fee,
            line_items: vec![LineItem {
                description: format!(
                    "data resource {}/{}",
                    request.registration_id, request.data_id
                ),
                amount,
            }],
        })
    }
}

/// `bps` basis points of `amount`, rounded down.
pub fn fee_of(amount: Money, bps: u32) -> Money {
    // i128: a price (≤ 1e14 minor units) × 10,000 leaves i64 little headroom.
    Money::from_minor((i128::from(amount.minor()) * i128::from(bps) / 10_000) as i64)
}

impl Billing for FlatBilling {
    fn charge<'a>(&'a self, request: &'a ChargeRequest<'a>) -> BillingFuture<'a> {
        Box::pin(async move {
            let charge = self.compute(request)?;
            charge.check(Self::NAME)?;
            Ok(Billed {
                charge,
                rule: Self::NAME.to_owned(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(price: i64) -> ChargeRequest<'static> {
        let price = Money::from_minor(price);
        ChargeRequest {
            confirm_id: "cfm_1",
            resource_id: "res_1",
            registration_id: "reg_1",
            data_id: "d",
            buyer: "carol",
            seller: "alice",
            currency: "CNY",
            list_price: price,
            free: price.is_zero(),
            controlled: false,
            data_type: "dataset",
            at_ms: 0,
        }
    }

    #[test]
    fn flat_billing_splits_exactly() {
        let zero = FlatBilling { fee_bps: 0 };
        let c = zero.compute(&request(1999)).expect("charge");
        assert_eq!(
            (
                c.amount.minor(),
                c.platform_fee.minor(),
                c.provider_share.minor()
            ),
            (1999, 0, 1999)
        );
        assert!(c.check("t").is_ok());

        let fee = FlatBilling { fee_bps: 250 };
        let c = fee.compute(&request(1999)).expect("charge");
        // 2.5 % of 19.99 = 0.49975 → 0.49 (rounded down), seller 19.50.
        assert_eq!(
            (c.platform_fee.minor(), c.provider_share.minor()),
            (49, 1950)
        );
        assert!(c.check("t").is_ok());

        let free = zero.compute(&request(0)).expect("charge");
        assert!(free.amount.is_zero());
        assert!(free.check("t").is_ok());
    }

    #[test]
    fn inconsistent_charges_are_refused() {
        let base = FlatBilling { fee_bps: 0 }
            .compute(&request(100))
            .expect("charge");
        let mut split = base.clone();
        split.provider_share = Money::from_minor(99);
        assert!(split.check("t").is_err());
        let mut negative = base.clone();
        negative.amount = Money::from_minor(-1);
        assert!(negative.check("t").is_err());
        let mut lines = base.clone();
        lines.line_items[0].amount = Money::from_minor(50);
        assert!(lines.check("t").is_err());
    }
}
