//! Money: the wire carries the standard's float prices; everything stored and computed is
//! [`Money`], integer minor units (hundredths, "fen" for CNY). A wire price converts exactly or
//! is refused.

use serde::{Deserialize, Serialize};

use super::DomainError;

/// Minor units per major unit.
pub const MINOR_PER_MAJOR: i64 = 100;
/// Decimal places a wire price may carry.
pub const SCALE: usize = 2;
/// The largest price accepted, in major units; keeps every sum far from i64 overflow.
pub const MAX_PRICE_MAJOR: i64 = 1_000_000_000_000;

/// An amount of money in integer minor units (hundredths: "fen" for CNY). Everything stored
/// and computed is `Money`; the wire's float prices convert exactly or are refused.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(i64);

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_minor(minor: i64) -> Money {
        Money(minor)
    }

    /// The amount in minor units, as stored.
    pub const fn minor(self) -> i64 {
        self.0
    }

    /// Converts a wire price. The float is read through its shortest round-trip decimal form
    /// (what the client wrote, e.g. `19.99`), so no binary-fraction rounding happens.
    pub fn from_price(field: &str, price: f64) -> Result<Money, DomainError> {
        if !price.is_finite() {
            return Err(DomainError::invalid(field, "must be a finite number"));
        }
        if price < 0.0 {
            return Err(DomainError::invalid(field, "must not be negative"));
        }
        if price > MAX_PRICE_MAJOR as f64 {
            return Err(DomainError::invalid(
                field,
                format!("must not exceed {MAX_PRICE_MAJOR}"),
            ));
        }
        let text = format!("{price}");
        // Rust prints small or large floats in plain decimal ("0.0001", "1000000000000"),
        // never with an exponent, so a split at '.' sees every digit.
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        if fraction.len() > SCALE {
            return Err(DomainError::invalid(
                field,
                format!("must have at most {SCALE} decimal places"),
            ));
        }
        let whole: i64 = whole
            .parse()
            .map_err(|_| DomainError::invalid(field, "is not a valid amount"))?;
        let mut fraction_digits = fraction.to_owned();
        while fraction_digits.len() < SCALE {
            fraction_digits.push('0');
        }
        let fraction: i64 = fraction_digits
            .parse()
            .map_err(|_| DomainError::invalid(field, "is not a valid amount"))?;
        Ok(Money(whole * MINOR_PER_MAJOR + fraction))
    }

    /// The wire form: a float of major units. Exact for every amount below 2^53 minor units,
    /// far above `MAX_PRICE_MAJOR`.
    pub fn to_price(self) -> f64 {
        self.0 as f64 / MINOR_PER_MAJOR as f64
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).map(Money)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).map(Money)
    }
}

/// Exact decimal text ("19.99", "0.05", "-3.00"): what signed documents carry, so verifiers
/// never format floats.
impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let per = MINOR_PER_MAJOR as u64;
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / per,
            abs % per,
            width = SCALE
        )
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl std::ops::Sub for Money {
    type Output = Money;
    fn sub(self, other: Money) -> Money {
        Money(self.0 - other.0)
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl std::ops::AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        self.0 += other.0;
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn converts_exactly() {
        assert_eq!(Money::from_price("/price", 19.99).ok(), Some(Money(1999)));
        assert_eq!(Money::from_price("/price", 0.1).ok(), Some(Money(10)));
        assert_eq!(Money::from_price("/price", 0.07).ok(), Some(Money(7)));
        assert_eq!(Money::from_price("/price", 5.0).ok(), Some(Money(500)));
        assert_eq!(Money::from_price("/price", 0.0).ok(), Some(Money::ZERO));
        assert_eq!(
            Money::from_price("/price", 1e12).ok(),
            Some(Money(100_000_000_000_000))
        );
    }

    #[test]
    fn refuses_what_cannot_convert() {
        for bad in [0.001, -1.0, f64::NAN, f64::INFINITY, 1e13, 1e-7] {
            assert!(Money::from_price("/price", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(Money(1999).to_string(), "19.99");
        assert_eq!(Money(5).to_string(), "0.05");
        assert_eq!(Money(0).to_string(), "0.00");
        assert_eq!(Money(-300).to_string(), "-3.00");
        assert_eq!(Money(100_000_000_000_000).to_string(), "1000000000000.00");
    }

    proptest! {
        #[test]
        fn round_trips(minor in 0i64..=100_000_000_000_000) {
            prop_assert_eq!(Money::from_price("/p", Money(minor).to_price()).ok(), Some(Money(minor)));
        }
    }
}
