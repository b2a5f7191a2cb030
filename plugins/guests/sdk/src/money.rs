//! Integer money arithmetic in minor units (e.g. fen). No floats anywhere.

/// Basis points in a whole: 10 000 bps = 100 %.
pub const BPS_WHOLE: u32 = 10_000;

/// `amount × basis_points / 10 000`, rounded half up (to the nearest minor unit, a half
/// rounding away from zero): 1 bps of 5 000 = 0.5 → 1; of 4 999 = 0.4999 → 0.
///
/// `None` when `amount` is negative or `basis_points` exceeds 10 000. The result never exceeds
/// `amount`, so it cannot overflow.
pub fn percent_of(amount: i64, basis_points: u32) -> Option<i64> {
    if amount < 0 || basis_points > BPS_WHOLE {
        return None;
    }
    let scaled = i128::from(amount) * i128::from(basis_points) + i128::from(BPS_WHOLE / 2);
    i64::try_from(scaled / i128::from(BPS_WHOLE)).ok()
}

/// `quantity × unit_price`; `None` for a negative unit price or when it does not fit an `i64`.
pub fn line_amount(quantity: u64, unit_price: i64) -> Option<i64> {
    if unit_price < 0 {
        return None;
    }
    i64::try_from(i128::from(quantity) * i128::from(unit_price)).ok()
}

/// `⌈a / b⌉` for `b > 0`.
pub fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_half_up() {
        assert_eq!(percent_of(10_000, 250), Some(250));
        assert_eq!(percent_of(5_000, 1), Some(1)); // 0.5 → 1
        assert_eq!(percent_of(4_999, 1), Some(0)); // 0.4999 → 0
        assert_eq!(percent_of(15_000, 1), Some(2)); // 1.5 → 2
        assert_eq!(percent_of(1, 5_000), Some(1)); // 0.5 → 1
        assert_eq!(percent_of(3, 3_333), Some(1)); // 0.9999 → 1
        assert_eq!(percent_of(0, 10_000), Some(0));
        assert_eq!(percent_of(i64::MAX, 10_000), Some(i64::MAX));
        assert_eq!(
            percent_of(i64::MAX, 9_999).map(|v| v < i64::MAX),
            Some(true)
        );
        assert_eq!(percent_of(-1, 10), None);
        assert_eq!(percent_of(1, 10_001), None);
    }

    #[test]
    fn line_amounts_are_checked() {
        assert_eq!(line_amount(3, 7), Some(21));
        assert_eq!(line_amount(0, 7), Some(0));
        assert_eq!(line_amount(u64::MAX, 0), Some(0));
        assert_eq!(line_amount(u64::MAX, 1), None);
        assert_eq!(line_amount(1, -1), None);
        assert_eq!(line_amount(2, i64::MAX / 2 + 1), None);
    }

    #[test]
    fn ceil() {
        assert_eq!(div_ceil(0, 1000), 0);
        assert_eq!(div_ceil(1, 1000), 1);
        assert_eq!(div_ceil(1000, 1000), 1);
        assert_eq!(div_ceil(1001, 1000), 2);
        assert_eq!(div_ceil(u64::MAX, 1000), u64::MAX / 1000 + 1);
    }
}
