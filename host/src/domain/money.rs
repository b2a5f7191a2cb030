//! Money: the wire carries the standard's float prices; everything stored and computed is
//! integer minor units (hundredths, "fen" for CNY). A wire price converts exactly or is refused.

use super::DomainError;

/// Minor units per major unit.
pub const MINOR_PER_MAJOR: i64 = 100;
/// Decimal places a wire price may carry.
pub const SCALE: usize = 2;
/// The largest price accepted, in major units; keeps every sum far from i64 overflow.
pub const MAX_PRICE_MAJOR: i64 = 1_000_000_000_000;

/// Converts a wire price to minor units. The float is read through its shortest round-trip
/// decimal form (what the client wrote, e.g. `19.99`), so no binary-fraction rounding happens.
pub fn price_to_minor(field: &str, price: f64) -> Result<i64, DomainError> {
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
    // Rust prints small or large floats in plain decimal ("0.0001", "1000000000000"), never
    // with an exponent, so a split at '.' sees every digit.
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
    Ok(whole * MINOR_PER_MAJOR + fraction)
}

/// An amount in minor units as exact decimal text ("19.99", "0.05", "-3.00"): what signed
/// documents carry, so verifiers never format floats.
pub fn format_minor(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    let per = MINOR_PER_MAJOR as u64;
    format!("{sign}{}.{:0width$}", abs / per, abs % per, width = SCALE)
}

/// The wire form of an amount in minor units.
pub fn minor_to_price(minor: i64) -> f64 {
    // Exact for every amount below 2^53 minor units, far above MAX_PRICE_MAJOR.
    minor as f64 / MINOR_PER_MAJOR as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn converts_exactly() {
        assert_eq!(price_to_minor("/price", 19.99).ok(), Some(1999));
        assert_eq!(price_to_minor("/price", 0.1).ok(), Some(10));
        assert_eq!(price_to_minor("/price", 0.07).ok(), Some(7));
        assert_eq!(price_to_minor("/price", 5.0).ok(), Some(500));
        assert_eq!(price_to_minor("/price", 0.0).ok(), Some(0));
        assert_eq!(
            price_to_minor("/price", 1e12).ok(),
            Some(100_000_000_000_000)
        );
    }

    #[test]
    fn refuses_what_cannot_convert() {
        for bad in [0.001, -1.0, f64::NAN, f64::INFINITY, 1e13, 1e-7] {
            assert!(price_to_minor("/price", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn formats_exactly() {
        assert_eq!(format_minor(1999), "19.99");
        assert_eq!(format_minor(5), "0.05");
        assert_eq!(format_minor(0), "0.00");
        assert_eq!(format_minor(-300), "-3.00");
        assert_eq!(format_minor(100_000_000_000_000), "1000000000000.00");
    }

    proptest! {
        #[test]
        fn round_trips(minor in 0i64..=100_000_000_000_000) {
            prop_assert_eq!(price_to_minor("/p", minor_to_price(minor)).ok(), Some(minor));
        }
    }
}
