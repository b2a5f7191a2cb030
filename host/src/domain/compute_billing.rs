//! Bill synchronisation and reconciliation of compute orders (compute-provider-access §4).
//!
//! The provider's bill is the charge. A provider plugin lists bill lines (`list-bills`); each
//! line is stored once (its key: provider, resource, period, unit), matched to the order whose
//! resource it bills, priced by the offering's billing rule (a billing plugin, else the native
//! rule: the provider's amount, the platform fee on top of nothing — taken out of it), and
//! posted: user → provider share + platform fee. The order's prepaid hold pays first, the
//! user's balance the rest; a line neither covers stays `unpaid` and is charged by a later sync.
//!
//! The platform's own metering (hours active × price) charges nothing: it sizes what an ended
//! order keeps held for bills still to come (the reserve), and it is the reference the
//! reconciliation report compares the bills with.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime};

use super::DomainError;
use super::billing::MAX_CHARGE;
use super::ledger::{
    AccountKind, COMPUTE_HOLDS_ACCOUNT, FEES_ACCOUNT, LedgerTransaction, Posting, TransactionKind,
};
use super::money::Money;

/// The billing rule an offering names for its provider's bill lines.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferingBilling {
    /// An installed billing plugin's id.
    pub plugin: String,
    /// The rule's parameters for this offering (`{}` when none).
    #[serde(default = "empty_object")]
    pub config: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Where a stored bill line stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillStatus {
    /// No order has the billed resource (yet): matched again by every later sync.
    Unmatched,
    /// Posted on the ledger.
    Charged,
    /// The order's hold and the user's balance did not cover it: charged by a later sync.
    Unpaid,
    /// Cannot be charged as listed (another currency, an amount out of range, bad dates, or
    /// the billing rule refused it): the reason is kept, the operator decides.
    Rejected,
}

impl BillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BillStatus::Unmatched => "unmatched",
            BillStatus::Charged => "charged",
            BillStatus::Unpaid => "unpaid",
            BillStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<BillStatus> {
        [
            BillStatus::Unmatched,
            BillStatus::Charged,
            BillStatus::Unpaid,
            BillStatus::Rejected,
        ]
        .into_iter()
        .find(|b| b.as_str() == s)
    }

    /// A sync looks at the line again.
    pub fn is_pending(self) -> bool {
        matches!(self, BillStatus::Unmatched | BillStatus::Unpaid)
    }
}

/// A line as a provider plugin listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedLine {
    pub resource_id: String,
    pub period_start: String,
    pub period_end: String,
    pub unit: String,
    pub quantity_milli: i64,
    pub amount: Money,
    pub currency: String,
}

/// A stored bill line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub id: String,
    pub provider_account_id: String,
    pub offering_id: String,
    pub resource_id: String,
    pub period_start: String,
    pub period_end: String,
    pub unit: String,
    pub quantity_milli: i64,
    pub amount: Money,
    pub currency: String,
    pub order_id: Option<String>,
    pub status: BillStatus,
    pub charge: Option<Money>,
    pub fee: Option<Money>,
    pub rule: Option<String>,
    pub error: Option<String>,
    pub synced_at: i64,
}

/// What charging a line needs to know of the order it bills.
#[derive(Debug, Clone, PartialEq)]
pub struct BillableOrder {
    pub order_id: String,
    pub offering_id: String,
    pub resource_id: String,
    pub account_id: String,
    pub buyer: String,
    pub provider_account_id: String,
    pub seller: String,
    pub billing: Option<OfferingBilling>,
}

const DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]");

/// A `YYYY-MM-DD` date.
pub fn parse_date(field: &str, text: &str) -> Result<Date, DomainError> {
    Date::parse(text, DATE).map_err(|_| DomainError::invalid(field, "must be a date as YYYY-MM-DD"))
}

pub fn format_date(d: Date) -> String {
    d.format(DATE).unwrap_or_default()
}

/// Midnight UTC of `d`, in Unix milliseconds.
pub fn date_millis(d: Date) -> i64 {
    let t = d.midnight().assume_utc();
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `[from, to)` in whole UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Date,
    pub to: Date,
}

/// The longest window a sync or a report covers.
pub const MAX_WINDOW_DAYS: i64 = 366;

impl Window {
    /// `from`/`to` as given, else the `lookback_days` before today (UTC), today excluded.
    pub fn resolve(
        from: Option<&str>,
        to: Option<&str>,
        lookback_days: u32,
        now: OffsetDateTime,
    ) -> Result<Window, DomainError> {
        let today = now.date();
        let to = match to {
            Some(t) => parse_date("/to", t)?,
            None => today,
        };
        let from = match from {
            Some(f) => parse_date("/from", f)?,
            None => to
                .checked_sub(Duration::days(i64::from(lookback_days.max(1))))
                .unwrap_or(Date::MIN),
        };
        if from >= to {
            return Err(DomainError::invalid("/to", "must be a day after from"));
        }
        if (to - from).whole_days() > MAX_WINDOW_DAYS {
            return Err(DomainError::invalid(
                "/from",
                format!("the window spans at most {MAX_WINDOW_DAYS} days"),
            ));
        }
        Ok(Window { from, to })
    }

    pub fn from_ms(&self) -> i64 {
        date_millis(self.from)
    }

    pub fn to_ms(&self) -> i64 {
        date_millis(self.to)
    }
}

/// Why a listed line cannot be charged as it stands, if it cannot: its dates, its amount, its
/// currency (the platform's ledger is in one).
pub fn line_problem(line: &ListedLine, currency: &str) -> Option<String> {
    let start = parse_date("/periodStart", &line.period_start);
    let end = parse_date("/periodEnd", &line.period_end);
    match (start, end) {
        (Ok(s), Ok(e)) if s < e => {}
        (Ok(_), Ok(_)) => return Some("the period ends before it starts".to_owned()),
        _ => {
            return Some(format!(
                "the period {}..{} is not two YYYY-MM-DD dates",
                line.period_start, line.period_end
            ));
        }
    }
    if !(Money::ZERO..=MAX_CHARGE).contains(&line.amount) {
        return Some(format!(
            "the amount {} is outside 0.00..={MAX_CHARGE}",
            line.amount
        ));
    }
    if line.currency != currency {
        return Some(format!(
            "the line is in {}, the platform's ledger in {currency}",
            line.currency
        ));
    }
    None
}

/// Whole seconds of a quantity in an hour unit (`Hrs`, `hours`…), for billing rules that price
/// by duration; other units have none.
pub fn duration_seconds(unit: &str, quantity_milli: i64) -> u64 {
    let hours = matches!(
        unit.to_ascii_lowercase().as_str(),
        "h" | "hr" | "hrs" | "hour" | "hours"
    );
    if hours {
        u64::try_from(quantity_milli)
            .unwrap_or(0)
            .saturating_mul(36)
            / 10
    } else {
        0
    }
}

/// How the charge of a line is paid: from the order's hold first, the user's balance after.
pub fn split_payment(charge: Money, held: Money) -> (Money, Money) {
    let from_hold = charge.min(held.max(Money::ZERO));
    (from_hold, charge - from_hold)
}

/// The posting that charges a bill line: `from_hold` out of the compute holds, `from_balance`
/// out of the user's balance, the provider's share to the provider, the fee to the platform.
pub fn line_transaction(
    line_id: &str,
    buyer_account: &str,
    provider_account: &str,
    charge: Money,
    fee: Money,
    from_hold: Money,
) -> Result<LedgerTransaction, DomainError> {
    let from_balance = charge - from_hold;
    let mut postings = Vec::new();
    let mut add = |account: &str, kind: AccountKind, amount: Money| {
        if !amount.is_zero() {
            postings.push(Posting {
                account: account.to_owned(),
                kind,
                amount,
            });
        }
    };
    add(COMPUTE_HOLDS_ACCOUNT, AccountKind::System, -from_hold);
    add(buyer_account, AccountKind::User, -from_balance);
    add(provider_account, AccountKind::User, charge - fee);
    add(FEES_ACCOUNT, AccountKind::System, fee);
    let reference = format!("bill:{line_id}");
    let request = serde_json::json!({"reference": reference, "kind": "usage", "billLine": line_id})
        .to_string();
    LedgerTransaction::new(TransactionKind::Usage, &reference, request, postings)
}

/// The platform's own metering of an order: `per_period` for every `period_ms` it was active
/// within `[from, to)`, pro rata to the millisecond (rounded half up).
pub fn metered(
    per_period: Money,
    period_ms: i64,
    active: (Option<i64>, Option<i64>),
    window: (i64, i64),
    now: i64,
) -> (Money, i64) {
    let (Some(active_at), ended_at) = active else {
        return (Money::ZERO, 0);
    };
    let start = active_at.max(window.0);
    let end = ended_at.unwrap_or(now).min(window.1);
    let ms = (end - start).max(0);
    if period_ms <= 0 {
        return (Money::ZERO, ms);
    }
    let minor = (i128::from(per_period.minor()) * i128::from(ms) * 2 + i128::from(period_ms))
        / (2 * i128::from(period_ms));
    (
        Money::from_minor(i64::try_from(minor).unwrap_or(i64::MAX)),
        ms,
    )
}

/// What an ended order keeps held for bills still to come: what its metering says it used,
/// less what its bills have charged so far, at most what it holds.
pub fn end_reserve(held: Money, metered: Money, charged: Money) -> Money {
    (metered - charged)
        .max(Money::ZERO)
        .min(held.max(Money::ZERO))
}

/// How far `billed` is from `metered`, in basis points of `metered` (of `billed` when nothing
/// was metered): `Some` when beyond `tolerance_bps`.
pub fn mismatch_bps(billed: Money, metered: Money, tolerance_bps: u32) -> Option<i64> {
    let diff = i128::from((billed - metered).minor()).abs();
    if diff == 0 {
        return None;
    }
    let base = i128::from(metered.minor().abs().max(1));
    let bps = i64::try_from(diff * 10_000 / base).unwrap_or(i64::MAX);
    (bps > i64::from(tolerance_bps)).then_some(bps)
}

/// `POST /v1/admin/compute/bill-sync`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillSyncRequest {
    pub from: Option<String>,
    pub to: Option<String>,
    /// A provider's username: only its offerings.
    pub provider: Option<String>,
}

/// A provider whose bills could not be listed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncFailure {
    pub provider: String,
    pub offering_id: String,
    pub message: String,
}

/// What one sync did.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillSyncReport {
    pub from: String,
    pub to: String,
    pub providers: usize,
    /// Lines the plugins listed.
    pub listed: usize,
    /// Of those, lines not stored before.
    pub new: usize,
    /// Lines charged by this sync (new ones, and unpaid or unmatched ones from before).
    pub charged: usize,
    /// Lines without an order after this sync.
    pub unmatched: usize,
    pub unpaid: usize,
    pub rejected: usize,
    /// The total this sync charged, in the platform's currency.
    pub amount_charged: f64,
    /// Reserves of ended orders released because their wait for bills was over.
    pub reserves_released: usize,
    pub failures: Vec<SyncFailure>,
}

/// `GET /v1/admin/compute/reconciliation` query.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub tolerance_bps: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BillLineView {
    pub line_id: String,
    pub provider: String,
    pub offering_id: String,
    pub resource_id: String,
    pub period_start: String,
    pub period_end: String,
    pub unit: String,
    pub quantity: f64,
    pub amount: f64,
    pub currency: String,
    pub order_id: Option<String>,
    pub status: BillStatus,
    pub charge: Option<f64>,
    pub platform_fee: Option<f64>,
    pub rule: Option<String>,
    pub error: Option<String>,
}

impl BillLineView {
    pub fn new(l: BillLine, provider: String) -> BillLineView {
        BillLineView {
            line_id: l.id,
            provider,
            offering_id: l.offering_id,
            resource_id: l.resource_id,
            period_start: l.period_start,
            period_end: l.period_end,
            unit: l.unit,
            quantity: l.quantity_milli as f64 / 1000.0,
            amount: l.amount.to_price(),
            currency: l.currency,
            order_id: l.order_id,
            status: l.status,
            charge: l.charge.map(Money::to_price),
            platform_fee: l.fee.map(Money::to_price),
            rule: l.rule,
            error: l.error,
        }
    }
}

/// An order active in the window that no bill line covers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnbilledOrder {
    pub order_id: String,
    pub offering_id: String,
    pub provider_resource_id: Option<String>,
    pub active_hours: f64,
    pub metered: f64,
}

/// An order whose bills differ from its metering beyond the tolerance.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AmountMismatch {
    pub order_id: String,
    pub offering_id: String,
    pub provider_resource_id: Option<String>,
    pub billed: f64,
    pub metered: f64,
    pub difference: f64,
    pub difference_bps: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationTotals {
    pub lines: usize,
    pub billed: f64,
    pub charged: f64,
    pub metered: f64,
}

/// The reconciliation report of a window.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    pub from: String,
    pub to: String,
    pub tolerance_bps: u32,
    pub totals: ReconciliationTotals,
    pub lines_without_order: Vec<BillLineView>,
    pub orders_without_lines: Vec<UnbilledOrder>,
    pub amount_mismatches: Vec<AmountMismatch>,
    pub unpaid_lines: Vec<BillLineView>,
    pub rejected_lines: Vec<BillLineView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(amount: i64, currency: &str, start: &str, end: &str) -> ListedLine {
        ListedLine {
            resource_id: "i-1".into(),
            period_start: start.into(),
            period_end: end.into(),
            unit: "Hrs".into(),
            quantity_milli: 24_000,
            amount: Money::from_minor(amount),
            currency: currency.into(),
        }
    }

    #[test]
    fn lines_that_cannot_be_charged() {
        assert_eq!(
            line_problem(&line(100, "CNY", "2026-11-01", "2026-11-02"), "CNY"),
            None
        );
        assert!(line_problem(&line(100, "USD", "2026-11-01", "2026-11-02"), "CNY").is_some());
        assert!(line_problem(&line(-1, "CNY", "2026-11-01", "2026-11-02"), "CNY").is_some());
        assert!(line_problem(&line(1, "CNY", "2026-11-02", "2026-11-02"), "CNY").is_some());
        assert!(line_problem(&line(1, "CNY", "yesterday", "2026-11-02"), "CNY").is_some());
    }

    #[test]
    fn windows() {
        let now = OffsetDateTime::from_unix_timestamp(1_764_500_000).unwrap(); // 2025-11-30
        let w = Window::resolve(None, None, 3, now).unwrap();
        assert_eq!(format_date(w.from), "2025-11-27");
        assert_eq!(format_date(w.to), "2025-11-30");
        assert_eq!(w.to_ms() - w.from_ms(), 3 * 86_400_000);
        assert!(Window::resolve(Some("2025-11-30"), Some("2025-11-30"), 3, now).is_err());
        assert!(Window::resolve(Some("2020-01-01"), Some("2025-11-30"), 3, now).is_err());
        assert!(Window::resolve(Some("30/11/2025"), None, 3, now).is_err());
        let w = Window::resolve(Some("2025-11-01"), Some("2025-12-01"), 3, now).unwrap();
        assert_eq!((w.to - w.from).whole_days(), 30);
    }

    #[test]
    fn metering_and_reserve() {
        let hour = 3_600_000;
        // 90 minutes at 1.00 an hour.
        let (m, ms) = metered(
            Money::from_minor(100),
            hour,
            (Some(0), Some(5_400_000)),
            (0, 10 * hour),
            20 * hour,
        );
        assert_eq!((m, ms), (Money::from_minor(150), 5_400_000));
        // Clipped to the window; still running counts until now.
        let (m, _) = metered(
            Money::from_minor(100),
            hour,
            (Some(0), None),
            (hour, 10 * hour),
            3 * hour,
        );
        assert_eq!(m, Money::from_minor(200));
        assert_eq!(
            metered(Money::from_minor(100), hour, (None, None), (0, hour), hour).0,
            Money::ZERO
        );
        assert_eq!(
            end_reserve(
                Money::from_minor(300),
                Money::from_minor(150),
                Money::from_minor(100)
            ),
            Money::from_minor(50)
        );
        assert_eq!(
            end_reserve(Money::from_minor(30), Money::from_minor(150), Money::ZERO),
            Money::from_minor(30)
        );
        assert_eq!(
            end_reserve(
                Money::from_minor(300),
                Money::from_minor(150),
                Money::from_minor(400)
            ),
            Money::ZERO
        );
        assert_eq!(duration_seconds("Hrs", 1_500), 5_400);
        assert_eq!(duration_seconds("GB-Mo", 1_500), 0);
    }

    #[test]
    fn mismatches() {
        let m = |x| Money::from_minor(x);
        assert_eq!(mismatch_bps(m(100), m(100), 0), None);
        assert_eq!(mismatch_bps(m(104), m(100), 500), None);
        assert_eq!(mismatch_bps(m(110), m(100), 500), Some(1_000));
        assert_eq!(mismatch_bps(m(90), m(100), 500), Some(1_000));
        assert_eq!(mismatch_bps(m(5), m(0), 500), Some(50_000));
    }

    proptest! {
        /// The hold and the balance together pay exactly the charge, the hold never more than
        /// it has.
        #[test]
        fn payments_add_up(charge in 0i64..1_000_000, held in -10i64..1_000_000) {
            let (from_hold, from_balance) = split_payment(Money::from_minor(charge), Money::from_minor(held));
            prop_assert_eq!(from_hold + from_balance, Money::from_minor(charge));
            prop_assert!(from_hold >= Money::ZERO && from_balance >= Money::ZERO);
            prop_assert!(from_hold <= Money::from_minor(held.max(0)));
        }

        /// A reserve never exceeds the hold, and with what was charged never exceeds the
        /// metering (unless the bills already did).
        #[test]
        fn reserves_are_bounded(held in 0i64..1_000_000, metered in 0i64..1_000_000, charged in 0i64..1_000_000) {
            let r = end_reserve(Money::from_minor(held), Money::from_minor(metered), Money::from_minor(charged));
            prop_assert!(r >= Money::ZERO && r <= Money::from_minor(held));
            prop_assert!(r.minor() + charged <= metered.max(charged));
        }
    }
}
