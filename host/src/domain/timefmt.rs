//! The standard writes datetimes as `yyyy-mm-dd HH:MM:SS`; clients also send RFC 3339.
//! A naive datetime (no offset) is read as UTC. Stored and returned as RFC 3339 in UTC.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use super::DomainError;

pub fn parse_datetime(field: &str, text: &str) -> Result<OffsetDateTime, DomainError> {
    let naive = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    if let Ok(t) = PrimitiveDateTime::parse(text, naive) {
        return Ok(t.assume_utc());
    }
    OffsetDateTime::parse(text, &Rfc3339)
        // An offset that would carry the instant past year 9999 keeps its own offset instead of
        // panicking in `to_offset`; the instant is the same.
        .map(|t| t.checked_to_offset(UtcOffset::UTC).unwrap_or(t))
        .map_err(|_| {
            DomainError::invalid(
                field,
                "must be a datetime as 'yyyy-mm-dd HH:MM:SS' or RFC 3339",
            )
        })
}

pub fn to_rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The standard's own format, used where the annex shows it (license terms, policies).
pub fn to_standard(t: OffsetDateTime) -> String {
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    t.to_offset(UtcOffset::UTC).format(fmt).unwrap_or_default()
}

/// Milliseconds since the Unix epoch: the one time representation on disk and in the rules.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_forms() {
        let a = parse_datetime("/t", "2024-05-01 08:30:00").ok();
        let b = parse_datetime("/t", "2024-05-01T16:30:00+08:00").ok();
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_eq!(
            to_rfc3339(a.unwrap_or(OffsetDateTime::UNIX_EPOCH)),
            "2024-05-01T08:30:00Z"
        );
    }

    #[test]
    fn refuses_others() {
        for bad in ["2024-05-01", "01/05/2024 08:30", "2024-13-01 00:00:00", ""] {
            assert!(parse_datetime("/t", bad).is_err(), "{bad}");
        }
    }
}
