//! Decimal text of Cost Explorer (`"1.2345"`) to integers, without floating point.

/// Parses `[-]digits[.digits]` into an integer scaled by 10^`scale`, rounding half away from
/// zero; `None` for anything else (exponents included) or on overflow.
fn scaled(text: &str, scale: u32) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i64 = 0;
    for b in int.bytes() {
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    let mut frac_digits = frac.bytes();
    for _ in 0..scale {
        let d = frac_digits.next().map(|b| i64::from(b - b'0')).unwrap_or(0);
        value = value.checked_mul(10)?.checked_add(d)?;
    }
    if frac_digits.next().is_some_and(|b| b >= b'5') {
        value = value.checked_add(1)?;
    }
    Some(if negative { -value } else { value })
}

/// An amount in currency units to minor units (cents).
pub fn to_minor(text: &str) -> Option<i64> {
    scaled(text, 2)
}

/// A quantity to thousandths; negative quantities are refused.
pub fn to_milli(text: &str) -> Option<u64> {
    scaled(text, 3).and_then(|v| u64::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts() {
        assert_eq!(to_minor("1.23"), Some(123));
        assert_eq!(to_minor("1.235"), Some(124));
        assert_eq!(to_minor("1.2349"), Some(123));
        assert_eq!(to_minor("-0.5"), Some(-50));
        assert_eq!(to_minor("7"), Some(700));
        assert_eq!(to_minor(".5"), Some(50));
        assert_eq!(to_minor("1e3"), None);
        assert_eq!(to_minor(""), None);
        assert_eq!(to_milli("24"), Some(24_000));
        assert_eq!(to_milli("0.0004"), Some(0));
        assert_eq!(to_milli("-1"), None);
    }
}
