//! Bill synchronisation and reconciliation of compute orders (compute-provider-access §4; the
//! rules are in `domain::compute_billing`): every provider's bill lines are listed through its
//! provider plugin, stored once each, matched to their orders and charged through the
//! offering's billing rule; the reconciliation report compares them with the platform's own
//! metering.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use time::OffsetDateTime;

use super::{Compute, millis, system, transaction, user};
use crate::domain::billing::{Charge, FlatBilling, LineItem, fee_of};
use crate::domain::compute::{Offering, Order, period_price};
use crate::domain::compute_billing::{
    AmountMismatch, BillLine, BillLineView, BillStatus, BillSyncReport, BillSyncRequest,
    BillableOrder, ListedLine, Reconciliation, ReconciliationQuery, ReconciliationTotals,
    SyncFailure, UnbilledOrder, Window, date_millis, duration_seconds, format_date, line_problem,
    metered, mismatch_bps, parse_date,
};
use crate::domain::ledger::{COMPUTE_HOLDS_ACCOUNT, TransactionKind};
use crate::domain::money::Money;
use crate::domain::subscriptions::{BillingType, Unit, Usage};
use crate::domain::timefmt::now_millis;
use crate::domain::{Caller, Role, new_id};
use crate::services::{ServiceError, ServiceResult, page_number};
use crate::store::compute_bills::{ChargeOfLine, LineCharge, NewLine};

/// Reserves released per round.
const RESERVE_BATCH: i64 = 500;

/// Bill lines charged per transaction.
const CHARGE_BATCH: usize = 200;

/// Providers whose bills are synchronised at once.
const PROVIDERS_AT_ONCE: usize = 4;

/// How a line's charge was arrived at, or why it could not be.
enum Priced {
    Charge(Charge, String),
    /// The rule refused the line: it is rejected with the reason.
    Refused(String),
    /// The rule cannot run now (disabled, not loaded): the line waits for the next sync.
    Unavailable(String),
}

fn listed(line: liutong_plugin_runtime::provider::BillLine) -> ListedLine {
    ListedLine {
        resource_id: line.resource_id,
        period_start: line.period.start,
        period_end: line.period.end,
        unit: line.unit,
        quantity_milli: i64::try_from(line.quantity_milli).unwrap_or(i64::MAX),
        amount: Money::from_minor(line.amount_minor),
        currency: line.currency,
    }
}

impl Compute {
    /// `POST /v1/admin/compute/bill-sync`: synchronises the providers' bills now.
    pub async fn sync_bills(
        &self,
        caller: &Caller,
        req: BillSyncRequest,
    ) -> ServiceResult<BillSyncReport> {
        caller.require_role(Role::Operator)?;
        let window = Window::resolve(
            req.from.as_deref(),
            req.to.as_deref(),
            self.config.bill_lookback_days,
            OffsetDateTime::now_utc(),
        )?;
        if let Some(provider) = &req.provider
            && self
                .store
                .offerings_by_provider(Some(provider))
                .await?
                .is_empty()
        {
            return Err(ServiceError::not_found(format!(
                "provider '{provider}' has no compute offerings"
            )));
        }
        self.sync_window(window, req.provider.as_deref()).await
    }

    /// The scheduled job: every `bill_sync_interval_ms`, the last `bill_lookback_days` of every
    /// provider's bills, until `shutdown` resolves.
    pub async fn run_bill_sync(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.config.bill_sync_interval_ms == 0 {
            return;
        }
        let every = Duration::from_millis(self.config.bill_sync_interval_ms);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            let window = match Window::resolve(
                None,
                None,
                self.config.bill_lookback_days,
                OffsetDateTime::now_utc(),
            ) {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "bill sync window");
                    continue;
                }
            };
            // Each line is charged in its own transaction: stopping between two loses nothing.
            let synced = tokio::select! {
                r = self.sync_window(window, None) => r,
                _ = shutdown.changed() => return,
            };
            match synced {
                Ok(r) => tracing::info!(
                    providers = r.providers,
                    listed = r.listed,
                    new = r.new,
                    charged = r.charged,
                    unmatched = r.unmatched,
                    unpaid = r.unpaid,
                    rejected = r.rejected,
                    failures = r.failures.len(),
                    "compute bills synchronised"
                ),
                Err(e) => tracing::warn!(error = %e, "compute bill sync failed"),
            }
        }
    }

    /// One synchronisation of `window`: every provider (or the one named), up to
    /// `PROVIDERS_AT_ONCE` at a time so that a slow provider does not hold the others up;
    /// then the reserves whose wait is over are released.
    pub async fn sync_window(
        &self,
        window: Window,
        provider: Option<&str>,
    ) -> ServiceResult<BillSyncReport> {
        let from = format_date(window.from);
        let to = format_date(window.to);
        let offerings = self.store.offerings_by_provider(provider).await?;
        let mut by_provider: Vec<(String, String, Vec<Offering>)> = Vec::new();
        for (o, name) in offerings {
            match by_provider.last_mut() {
                Some((id, _, list)) if *id == o.provider_account_id => list.push(o),
                _ => by_provider.push((o.provider_account_id.clone(), name, vec![o])),
            }
        }
        let mut report = BillSyncReport {
            from: from.clone(),
            to: to.clone(),
            providers: by_provider.len(),
            ..BillSyncReport::default()
        };
        let (from, to) = (from.as_str(), to.as_str());
        let mut each = Vec::with_capacity(by_provider.len());
        for (id, name, offerings) in &by_provider {
            each.push(self.sync_provider(id, name, offerings, from, to));
        }
        let mut synced = futures_util::stream::iter(each).buffer_unordered(PROVIDERS_AT_ONCE);
        let mut charged = Money::ZERO;
        while let Some(one) = synced.next().await {
            let (r, amount) = one?;
            charged += amount;
            report.listed += r.listed;
            report.new += r.new;
            report.charged += r.charged;
            report.unmatched += r.unmatched;
            report.unpaid += r.unpaid;
            report.rejected += r.rejected;
            report.failures.extend(r.failures);
        }
        drop(synced);
        report.amount_charged = charged.to_price();
        report.reserves_released = self.release_reserves().await?;
        Ok(report)
    }

    /// One provider: one `list-bills` per distinct account its offerings use, the lines
    /// stored, its pending lines of the window matched and charged. Its part of the report and
    /// the amount charged.
    async fn sync_provider(
        &self,
        provider_id: &str,
        provider_name: &str,
        offerings: &[Offering],
        from: &str,
        to: &str,
    ) -> ServiceResult<(BillSyncReport, Money)> {
        let mut report = BillSyncReport::default();
        // Offerings on one account of the provider's API list the same bill.
        let mut asked = HashSet::new();
        for offering in offerings {
            let account = (
                offering.plugin_id.clone(),
                offering.region.clone(),
                offering.config.to_string(),
            );
            if !asked.insert(account) {
                continue;
            }
            match self.plugins.list_bills(offering, from, to).await {
                Ok(lines) => {
                    let lines: Vec<ListedLine> = lines.into_iter().map(listed).collect();
                    report.listed += lines.len();
                    let new_lines: Vec<NewLine<'_>> = lines
                        .iter()
                        .map(|l| NewLine {
                            id: new_id("cbl_"),
                            line: l,
                            problem: line_problem(l, &self.currency),
                        })
                        .collect();
                    let inserted = self
                        .store
                        .insert_bill_lines(provider_id, &offering.id, &new_lines, now_millis())
                        .await?;
                    report.new += inserted.len();
                    let inserted: HashSet<&str> = inserted.iter().map(String::as_str).collect();
                    report.rejected += new_lines
                        .iter()
                        .filter(|n| n.problem.is_some() && inserted.contains(n.id.as_str()))
                        .count();
                }
                Err(failure) => {
                    tracing::warn!(provider = %provider_name, offering = %offering.id, error = %failure.message(), "listing bills failed");
                    report.failures.push(SyncFailure {
                        provider: provider_name.to_owned(),
                        offering_id: offering.id.clone(),
                        message: failure.message().to_owned(),
                    });
                }
            }
        }
        let charged = self
            .charge_pending(provider_id, provider_name, from, to, &mut report)
            .await?;
        Ok((report, charged))
    }

    /// Matches and charges a provider's pending lines of the window. Returns the amount
    /// charged.
    async fn charge_pending(
        &self,
        provider_id: &str,
        provider_name: &str,
        from: &str,
        to: &str,
        report: &mut BillSyncReport,
    ) -> ServiceResult<Money> {
        let _turn = self.charging.lock().await;
        let pending = self.store.pending_bill_lines(provider_id, from, to).await?;
        if pending.is_empty() {
            return Ok(Money::ZERO);
        }
        // A resource id names one resource of the provider; should two orders ever name the
        // same one, the later order is the one the bill is for.
        let orders: HashMap<String, BillableOrder> = self
            .store
            .billable_orders(provider_id)
            .await?
            .into_iter()
            .map(|o| (o.resource_id.clone(), o))
            .collect();
        let mut charged = Money::ZERO;
        let mut batch: Vec<(BillLine, &BillableOrder, Charge, String)> = Vec::new();
        for line in pending {
            let Some(order) = orders.get(&line.resource_id) else {
                report.unmatched += 1;
                continue;
            };
            match self.price_line(&line, order).await {
                Priced::Charge(charge, rule) => {
                    batch.push((line, order, charge, rule));
                    if batch.len() == CHARGE_BATCH {
                        charged += self.charge_batch(&batch, report).await?;
                        batch.clear();
                    }
                }
                Priced::Refused(message) => {
                    self.store
                        .mark_bill_line(
                            &line.id,
                            BillStatus::Rejected,
                            Some(&order.order_id),
                            Some(&message),
                        )
                        .await?;
                    report.rejected += 1;
                }
                Priced::Unavailable(message) => {
                    report.failures.push(SyncFailure {
                        provider: provider_name.to_owned(),
                        offering_id: line.offering_id.clone(),
                        message,
                    });
                }
            }
        }
        charged += self.charge_batch(&batch, report).await?;
        Ok(charged)
    }

    /// Posts a batch of priced lines in one transaction; returns the amount charged.
    async fn charge_batch(
        &self,
        batch: &[(BillLine, &BillableOrder, Charge, String)],
        report: &mut BillSyncReport,
    ) -> ServiceResult<Money> {
        if batch.is_empty() {
            return Ok(Money::ZERO);
        }
        let now = now_millis();
        let charges: Vec<ChargeOfLine<'_>> = batch
            .iter()
            .map(|(line, order, charge, rule)| ChargeOfLine {
                line_id: &line.id,
                order_id: &order.order_id,
                buyer_account: &order.account_id,
                provider_account: &order.provider_account_id,
                charge: charge.amount,
                fee: charge.platform_fee,
                rule,
                now,
            })
            .collect();
        let outcomes = self.store.charge_bill_lines(&charges).await?;
        let mut charged = Money::ZERO;
        for (c, outcome) in charges.iter().zip(outcomes) {
            match outcome {
                LineCharge::Charged => {
                    report.charged += 1;
                    charged += c.charge;
                }
                LineCharge::Unpaid => report.unpaid += 1,
                LineCharge::Taken => {}
            }
        }
        Ok(charged)
    }

    /// What the user pays for a line and how it is split: the offering's billing plugin, else
    /// the native rule (the provider's amount, less the platform fee for the platform).
    async fn price_line(&self, line: &BillLine, order: &BillableOrder) -> Priced {
        let Some(billing) = &order.billing else {
            let fee = fee_of(line.amount, self.fee_bps);
            return Priced::Charge(
                Charge {
                    amount: line.amount,
                    platform_fee: fee,
                    provider_share: line.amount - fee,
                    line_items: vec![LineItem {
                        description: format!(
                            "{} {} {}..{}",
                            line.resource_id, line.unit, line.period_start, line.period_end
                        ),
                        amount: line.amount,
                    }],
                },
                FlatBilling::NAME.to_owned(),
            );
        };
        let period = match (
            parse_date("/periodStart", &line.period_start),
            parse_date("/periodEnd", &line.period_end),
        ) {
            (Ok(s), Ok(e)) => (date_millis(s), date_millis(e)),
            _ => return Priced::Refused("the line's period is not two dates".to_owned()),
        };
        // A bill line is one fixed-term period of the resource whose list price is the
        // provider's amount (docs/plugins.md, "Compute bill lines").
        let usage = Usage {
            calls: 0,
            input_tokens: 0,
            output_tokens: 0,
            duration_ms: duration_seconds(&line.unit, line.quantity_milli).saturating_mul(1000),
        };
        match self
            .plugins
            .charge_usage(
                &billing.plugin,
                &billing.config.to_string(),
                &order.order_id,
                &order.buyer,
                &order.seller,
                &order.offering_id,
                BillingType::FixedTerm,
                Unit::Duration,
                &usage,
                period,
                line.amount,
                &self.currency,
            )
            .await
        {
            Ok((charge, rule)) => Priced::Charge(charge, rule),
            Err(ServiceError::Unavailable(m)) => Priced::Unavailable(m),
            Err(e) => Priced::Refused(e.to_string()),
        }
    }

    /// Releases the reserves of orders that ended more than `bill_wait_ms` ago: the bills
    /// that were to come have come. Returns how many.
    async fn release_reserves(&self) -> ServiceResult<usize> {
        let before = now_millis().saturating_sub(millis(self.config.bill_wait_ms));
        let mut released = 0;
        for order in self
            .store
            .orders_with_reserve(before, RESERVE_BATCH)
            .await?
        {
            let release = transaction(
                TransactionKind::Release,
                &format!("{}:reserve", order.id),
                vec![
                    system(COMPUTE_HOLDS_ACCOUNT, -order.held),
                    user(&order.account_id, order.held),
                ],
            )?;
            if self
                .store
                .release_reserve(&order.id, order.held, &release)
                .await?
            {
                released += 1;
            }
        }
        Ok(released)
    }

    /// `GET /v1/admin/compute/reconciliation`: the bills of a window against the platform's
    /// own metering.
    pub async fn reconciliation(
        &self,
        caller: &Caller,
        q: &ReconciliationQuery,
    ) -> ServiceResult<Reconciliation> {
        caller.require_role(Role::Operator)?;
        let window = Window::resolve(
            q.from.as_deref(),
            q.to.as_deref(),
            self.config.bill_lookback_days,
            OffsetDateTime::now_utc(),
        )?;
        let tolerance = page_number(
            "toleranceBps",
            q.tolerance_bps.as_deref(),
            i64::from(self.config.reconciliation_tolerance_bps),
            (0, 1_000_000),
        )?;
        let tolerance_bps = u32::try_from(tolerance).unwrap_or(u32::MAX);
        let (from, to) = (format_date(window.from), format_date(window.to));
        let (from_ms, to_ms) = (window.from_ms(), window.to_ms());
        let now = now_millis();
        let lines = self.store.bill_lines_in(&from, &to).await?;
        let mut orders: HashMap<String, Order> = self
            .store
            .orders_active_in(from_ms, to_ms)
            .await?
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        // Orders billed for the window but not active in it are compared too (metered: 0).
        for (line, _) in &lines {
            if let Some(id) = &line.order_id
                && !orders.contains_key(id)
                && let Some(o) = self.store.compute_order(id).await?
            {
                orders.insert(id.clone(), o);
            }
        }
        let offerings: HashMap<String, Offering> = self
            .store
            .offerings_by_provider(None)
            .await?
            .into_iter()
            .map(|(f, _)| (f.id.clone(), f))
            .collect();
        let mut totals = ReconciliationTotals {
            lines: lines.len(),
            ..ReconciliationTotals::default()
        };
        let mut billed: HashMap<&str, Money> = HashMap::new();
        let mut lined: HashSet<&str> = HashSet::new();
        let (mut billed_total, mut charged_total) = (Money::ZERO, Money::ZERO);
        for (line, _) in &lines {
            if let Some(id) = &line.order_id {
                lined.insert(id.as_str());
                if matches!(line.status, BillStatus::Charged | BillStatus::Unpaid) {
                    *billed.entry(id.as_str()).or_insert(Money::ZERO) += line.amount;
                }
            }
            if line.status != BillStatus::Rejected {
                billed_total += line.amount;
            }
            charged_total += line.charge.unwrap_or(Money::ZERO);
        }
        let mut metered_total = Money::ZERO;
        let mut orders_without_lines = Vec::new();
        let mut amount_mismatches = Vec::new();
        let mut sorted: Vec<&Order> = orders.values().collect();
        sorted.sort_by(|a, b| (a.active_at, &a.id).cmp(&(b.active_at, &b.id)));
        for o in sorted {
            let Some(offering) = offerings.get(&o.offering_id) else {
                continue;
            };
            let per = period_price(offering.resource_type, offering.price, &o.spec);
            let period = self.period_ms(offering.resource_type.price_unit());
            let (m, ms) = metered(
                per,
                period,
                (o.active_at, o.ended_at),
                (from_ms, to_ms),
                now,
            );
            metered_total += m;
            if !lined.contains(o.id.as_str()) {
                if ms > 0 {
                    orders_without_lines.push(UnbilledOrder {
                        order_id: o.id.clone(),
                        offering_id: o.offering_id.clone(),
                        provider_resource_id: o.provider_resource_id.clone(),
                        active_hours: ms as f64 / millis(self.config.hour_ms) as f64,
                        metered: m.to_price(),
                    });
                }
                continue;
            }
            let b = billed.get(o.id.as_str()).copied().unwrap_or(Money::ZERO);
            if let Some(bps) = mismatch_bps(b, m, tolerance_bps) {
                amount_mismatches.push(AmountMismatch {
                    order_id: o.id.clone(),
                    offering_id: o.offering_id.clone(),
                    provider_resource_id: o.provider_resource_id.clone(),
                    billed: b.to_price(),
                    metered: m.to_price(),
                    difference: (b - m).to_price(),
                    difference_bps: bps,
                });
            }
        }
        totals.billed = billed_total.to_price();
        totals.charged = charged_total.to_price();
        totals.metered = metered_total.to_price();
        let (mut lines_without_order, mut unpaid_lines, mut rejected_lines) =
            (Vec::new(), Vec::new(), Vec::new());
        for (line, provider) in lines {
            let list = match line.status {
                BillStatus::Unmatched => &mut lines_without_order,
                BillStatus::Unpaid => &mut unpaid_lines,
                BillStatus::Rejected => &mut rejected_lines,
                BillStatus::Charged => continue,
            };
            list.push(BillLineView::new(line, provider));
        }
        Ok(Reconciliation {
            from,
            to,
            tolerance_bps,
            totals,
            lines_without_order,
            orders_without_lines,
            amount_mismatches,
            unpaid_lines,
            rejected_lines,
        })
    }
}
