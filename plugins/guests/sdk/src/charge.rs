//! Building a [`Charge`] that always satisfies the host's checks: `amount = platform-fee +
//! provider-share`, no negative part, and line items that add up to `amount`.

use crate::billing::{BillingError, Charge, LineItem};
use crate::money::{BPS_WHOLE, line_amount, percent_of};

/// Collects line items, then splits their total into the platform fee (`feeBps` of it, rounded
/// half up, see [`percent_of`]) and the provider's share (the rest).
///
/// Every line item's amount is `quantity × unit-price`; a negative unit price or an overflow
/// is `invalid-input`.
#[derive(Debug, Clone, Default)]
pub struct ChargeBuilder {
    items: Vec<LineItem>,
    fee_bps: u32,
}

impl ChargeBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The platform's fee in basis points of the amount (0..=10 000).
    pub fn fee_bps(mut self, basis_points: u32) -> Self {
        self.fee_bps = basis_points;
        self
    }

    /// Adds a line item of `quantity × unit_price`.
    pub fn item(
        mut self,
        description: impl Into<String>,
        quantity: u64,
        unit_price: i64,
    ) -> Result<Self, BillingError> {
        let description = description.into();
        if unit_price < 0 {
            return Err(BillingError::InvalidInput(format!(
                "{description}: negative unit price {unit_price}"
            )));
        }
        let amount = line_amount(quantity, unit_price).ok_or_else(|| {
            BillingError::InvalidInput(format!(
                "{description}: {quantity} × {unit_price} overflows"
            ))
        })?;
        self.items.push(LineItem {
            description,
            quantity,
            unit_price,
            amount,
        });
        Ok(self)
    }

    /// The charge: the sum of the line items, split by the fee.
    pub fn build(self) -> Result<Charge, BillingError> {
        if self.fee_bps > BPS_WHOLE {
            return Err(BillingError::InvalidConfig(format!(
                "feeBps must be within 0..=10000, not {}",
                self.fee_bps
            )));
        }
        let amount = self
            .items
            .iter()
            .try_fold(0i64, |sum, item| sum.checked_add(item.amount))
            .ok_or_else(|| BillingError::InvalidInput("the total amount overflows".to_string()))?;
        let platform_fee = percent_of(amount, self.fee_bps)
            .ok_or_else(|| BillingError::InvalidInput("the fee cannot be computed".to_string()))?;
        Ok(Charge {
            amount,
            platform_fee,
            provider_share: amount - platform_fee,
            line_items: self.items,
        })
    }
}

/// Whether `charge` passes the host's checks (used by the tests of every rule).
pub fn is_well_formed(charge: &Charge) -> bool {
    let items: Option<i64> = charge
        .line_items
        .iter()
        .try_fold(0i64, |sum, item| sum.checked_add(item.amount));
    charge.amount >= 0
        && charge.platform_fee >= 0
        && charge.provider_share >= 0
        && charge.platform_fee.checked_add(charge.provider_share) == Some(charge.amount)
        && items == Some(charge.amount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_sums() {
        let c = ChargeBuilder::new()
            .fee_bps(1_000)
            .item("a", 3, 333)
            .unwrap()
            .item("b", 1, 6)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(c.amount, 1_005);
        assert_eq!(c.platform_fee, 101); // 100.5 → 101
        assert_eq!(c.provider_share, 904);
        assert_eq!(c.line_items.len(), 2);
        assert!(is_well_formed(&c));
    }

    #[test]
    fn empty_is_zero() {
        let c = ChargeBuilder::new().fee_bps(500).build().unwrap();
        assert_eq!((c.amount, c.platform_fee, c.provider_share), (0, 0, 0));
        assert!(is_well_formed(&c));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            ChargeBuilder::new().item("x", 1, -5),
            Err(BillingError::InvalidInput(_))
        ));
        assert!(matches!(
            ChargeBuilder::new().item("x", u64::MAX, 2),
            Err(BillingError::InvalidInput(_))
        ));
        let sum_overflow = ChargeBuilder::new()
            .item("x", 1, i64::MAX)
            .unwrap()
            .item("y", 1, 1)
            .unwrap()
            .build();
        assert!(matches!(sum_overflow, Err(BillingError::InvalidInput(_))));
        assert!(matches!(
            ChargeBuilder::new().fee_bps(10_001).build(),
            Err(BillingError::InvalidConfig(_))
        ));
    }
}
