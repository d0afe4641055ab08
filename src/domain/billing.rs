//! The monthly invoice computation (DESIGN §1–§2), pure: the same snapshot and period give the same
//! invoices, to the cent.
//!
//! For period P each customer's invoice holds: the monthly fee of every service it held in P and
//! every ACTIVE recurring item, for P, in advance (prorated by the days held or active, each day at
//! the price in force that day: `price × days ÷ days in month`, rounded once on the line, half away
//! from zero, never via a rounded day rate); the rated calls it made in the month before P, in arrears, one line per
//! service; the once-off items not yet invoiced; and what earlier runs could not have seen (see
//! `owed.rs`: who owes what). EXCLUDED services are left out (their calls too: an excluded
//! service is off the invoice). Disabled
//! customers are invoiced but not emailed; a customer with nothing billable gets no invoice and a
//! recorded reason. Autotask customers' lines carry contract, product and material code; a line
//! that has none cannot be charged, so the customer is skipped with that reason rather than billed
//! partly.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use super::extensions::ExtensionMonth;
use super::owed::{
    Charge, PriceHistory, Share, active_share, catch_up_window, held_share, held_spans,
};
use super::{
    AutotaskCoding, AutotaskCompanyId, BillingTarget, Customer, CustomerId, DomainError, Item,
    ItemId, ItemKind, ItemStatus, Money, Period, Service, ServiceId, XeroContactId,
};

pub use super::owed::{ChargeKey, Holding};

/// What the computation reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub customers: Vec<Customer>,
    pub services: Vec<Service>,
    /// Every holding (live or ended) that overlaps the months the invoice looks at.
    pub assignments: Vec<Holding>,
    pub items: Vec<Item>,
    /// Rated calls by service, holder at call time and month, for the months the invoice looks at.
    pub usage: Vec<UsageTotal>,
    /// What recorded invoices already bill, for the months the invoice looks at.
    pub billed: Vec<BilledCharge>,
    /// The first period this installation billed (its run is done): nothing before it is
    /// back-billed. `None` before the first run.
    pub billing_start: Option<Period>,
    /// The prices with their effective dates. A service or recurring item without a history here
    /// costs its catalogue price (`Service::monthly_price`, `Item::amount`) on every day.
    pub prices: Prices,
    /// Per service and month of the window: its extensions by kind and the plan's prices for them
    /// (as frozen by the month's first run). A service without an entry bills no extensions.
    pub extensions: BTreeMap<(ServiceId, Period), ExtensionMonth>,
}

/// The price histories of services' fees and recurring items.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    pub services: BTreeMap<ServiceId, PriceHistory>,
    pub items: BTreeMap<ItemId, PriceHistory>,
}

impl Prices {
    fn of_service(&self, s: &Service) -> PriceHistory {
        self.services
            .get(&s.id)
            .cloned()
            .unwrap_or_else(|| PriceHistory::constant(s.monthly_price))
    }

    fn of_item(&self, i: &Item) -> PriceHistory {
        self.items
            .get(&i.id)
            .cloned()
            .unwrap_or_else(|| PriceHistory::constant(i.amount))
    }
}

/// A charge a recorded invoice line bills.
#[derive(Debug, Clone)]
pub struct BilledCharge {
    pub customer_id: CustomerId,
    /// The period of the invoice the line is on.
    pub on_invoice: Period,
    pub charge: Charge,
    pub amount: Money,
    /// Taken off by a resync (it still counts as decided: a removed charge is not billed again).
    pub removed: bool,
}

/// The rated calls of one service in one month that one customer made while holding it
/// (unrounded sums).
#[derive(Debug, Clone)]
pub struct UsageTotal {
    pub service_id: ServiceId,
    pub customer_id: CustomerId,
    pub period: Period,
    pub calls: i64,
    pub seconds: i64,
    pub cost: Money,
    pub price: Money,
}

#[derive(Debug, Clone)]
pub struct BillingSettings {
    pub payment_terms_days: u32,
    pub auto_send: bool,
    pub currency: String,
    pub number_prefix: String,
    pub default_account_code: Option<String>,
    pub default_tax_type: Option<String>,
    /// How many months back an invoice looks for charges no document carries yet.
    pub catch_up_months: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    ServiceFee,
    Usage,
    OnceOff,
    Recurring,
}

impl LineKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LineKind::ServiceFee => "service_fee",
            LineKind::Usage => "usage",
            LineKind::OnceOff => "once_off",
            LineKind::Recurring => "recurring",
        }
    }
    pub fn is_once_off(self) -> bool {
        self == LineKind::OnceOff
    }
}

impl std::str::FromStr for LineKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        [
            LineKind::ServiceFee,
            LineKind::Usage,
            LineKind::OnceOff,
            LineKind::Recurring,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| DomainError::UnknownValue {
            what: "line kind",
            value: s.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    pub charge_key: ChargeKey,
    pub kind: LineKind,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Money,
    /// Rounded to cents once; `quantity × unit_price` equals it exactly, so Xero computes the same.
    pub amount: Money,
    pub unit_cost: Money,
    pub autotask: Option<AutotaskCoding>,
    pub account_code: Option<String>,
    pub tax_type: Option<String>,
    pub item_code: Option<String>,
    pub source_item: Option<ItemId>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Destination {
    Xero { contact_id: Option<XeroContactId> },
    Autotask { company_id: AutotaskCompanyId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoEmailReason {
    CustomerDisabled,
    AutoSendOff,
    NoEmailAddress,
    AutotaskCustomer,
}

impl fmt::Display for NoEmailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NoEmailReason::CustomerDisabled => "customer disabled",
            NoEmailReason::AutoSendOff => "auto-send is off",
            NoEmailReason::NoEmailAddress => "customer has no email address",
            NoEmailReason::AutotaskCustomer => "Autotask account (charges go to Autotask)",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EmailDecision {
    Send,
    DoNotSend(NoEmailReason),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComputedInvoice {
    pub customer_id: CustomerId,
    pub period: Period,
    pub destination: Destination,
    pub email: EmailDecision,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    pub lines: Vec<Line>,
    pub total: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum SkipReason {
    NoBillableServices,
    MissingAutotaskCoding { what: String },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoBillableServices => {
                f.write_str("no billable services or items this period")
            }
            SkipReason::MissingAutotaskCoding { what } => write!(
                f,
                "{what} has no Autotask contract, product and material code; fix it, then resync"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub customer_id: CustomerId,
    pub reason: SkipReason,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Computed {
    pub invoices: Vec<ComputedInvoice>,
    pub skipped: Vec<Skipped>,
}

/// A monthly price for a share of the month, rounded once (never through a rounded day rate).
pub fn prorate(price: Money, share: Share) -> Money {
    if share.is_whole() {
        return price.round_cents();
    }
    Money::new(price.amount() * Decimal::from(share.used) / Decimal::from(share.days)).round_cents()
}

fn month_name(p: Period) -> String {
    p.first_day().format("%B %Y").to_string()
}

/// A line of a single unit priced at the rounded amount: Xero's own rounding then gives our figure.
#[allow(clippy::too_many_arguments)]
fn line(
    key: ChargeKey,
    kind: LineKind,
    description: String,
    amount: Money,
    cost: Money,
    autotask: Option<AutotaskCoding>,
    service: Option<&Service>,
    settings: &BillingSettings,
    source_item: Option<ItemId>,
) -> Line {
    Line {
        charge_key: key,
        kind,
        description,
        quantity: Decimal::ONE,
        unit_price: amount,
        amount,
        unit_cost: cost.round_stored(),
        autotask,
        account_code: service
            .and_then(|s| s.xero_account_code.clone())
            .or_else(|| settings.default_account_code.clone()),
        tax_type: service
            .and_then(|s| s.xero_tax_type.clone())
            .or_else(|| settings.default_tax_type.clone()),
        item_code: service.and_then(|s| s.xero_item_code.clone()),
        source_item,
    }
}

/// What one customer's invoice for a period would carry, before it is assembled.
struct Candidate<'a> {
    charge: Charge,
    kind: LineKind,
    description: String,
    /// What is owed for the charge now.
    owed: Money,
    /// The most a later invoice (not the charge's home) bills of it: a service back from the
    /// trash can is not billed late for the days it was left off.
    late_cap: Option<Money>,
    cost: Money,
    autotask: Option<AutotaskCoding>,
    service: Option<&'a Service>,
    source_item: Option<ItemId>,
    /// Per-unit charges (extensions): how many, and what one is owed. Billed in full, the line
    /// reads `count × unit`, which equals `owed` exactly.
    units: Option<(u32, Money)>,
}

/// The invoices of `period`: for each customer, every charge it owes whose home is this period, and
/// every charge of the catch-up window that no other document carries (DESIGN §2 "Who owes what";
/// `owed` says what each charge is worth).
///
/// Each charge is billed by amount: what is owed less what other documents already bill, on its
/// home invoice, and on a later one only for what was entered after its home invoice was made
/// (a back-dated start, calls imported late), so that every charge nets to what is owed.
pub fn compute_invoices(s: &Snapshot, period: Period, settings: &BillingSettings) -> Computed {
    let services: BTreeMap<ServiceId, &Service> = s.services.iter().map(|x| (x.id, x)).collect();
    let mut customers: Vec<&Customer> = s.customers.iter().collect();
    customers.sort_by_key(|c| c.id);
    let window = catch_up_window(period, s.billing_start, settings.catch_up_months);
    let months: Vec<Period> = window.iter().copied().chain([period]).collect();
    let mut out = Computed::default();
    for c in customers {
        let autotask_customer = c.target.is_autotask();
        let mut missing_coding: Option<String> = None;
        let candidates = candidates(s, c.id, &services, &months);
        let mut lines: Vec<Line> = Vec::new();
        for cand in candidates {
            let Some(amount) = billable_here(s, c.id, period, &cand) else {
                continue;
            };
            if autotask_customer && cand.autotask.is_none() {
                missing_coding.get_or_insert_with(|| match (cand.service, cand.source_item) {
                    (Some(svc), _) => format!("service {} ({})", svc.id, svc.name),
                    (None, Some(i)) => format!("item {i}"),
                    (None, None) => cand.charge.to_string(),
                });
            }
            let cost = if amount == cand.owed {
                cand.cost
            } else {
                Money::ZERO
            };
            let mut l = line(
                cand.charge.key_on(period),
                cand.kind,
                cand.description,
                amount,
                cost,
                cand.autotask,
                cand.service,
                settings,
                cand.source_item,
            );
            if let Some((count, unit)) = cand.units
                && amount == cand.owed
            {
                l.quantity = Decimal::from(count);
                l.unit_price = unit;
            }
            lines.push(l);
        }
        if let Some(what) = missing_coding {
            out.skipped.push(Skipped {
                customer_id: c.id,
                reason: SkipReason::MissingAutotaskCoding { what },
            });
            continue;
        }
        if lines.is_empty() {
            out.skipped.push(Skipped {
                customer_id: c.id,
                reason: SkipReason::NoBillableServices,
            });
            continue;
        }
        out.invoices.push(assemble(c, period, settings, lines));
    }
    out
}

/// Everything customer `c` owes for `months` (the catch-up window and the period itself), in a
/// stable order: services by id (fee, then calls), then items by id, oldest month first.
fn candidates<'a>(
    s: &'a Snapshot,
    c: CustomerId,
    services: &BTreeMap<ServiceId, &'a Service>,
    months: &[Period],
) -> Vec<Candidate<'a>> {
    let mut out = Vec::new();
    let mut held: BTreeMap<ServiceId, Vec<&Holding>> = BTreeMap::new();
    for h in s.assignments.iter().filter(|h| h.customer_id == c) {
        held.entry(h.service_id).or_default().push(h);
    }
    let usage_services: Vec<ServiceId> = s
        .usage
        .iter()
        .filter(|u| u.customer_id == c)
        .map(|u| u.service_id)
        .collect();
    let mut service_ids: Vec<ServiceId> = held.keys().copied().chain(usage_services).collect();
    service_ids.sort();
    service_ids.dedup();
    for sid in service_ids {
        let Some(svc) = services.get(&sid).copied() else {
            continue;
        };
        let holdings = held.get(&sid).cloned().unwrap_or_default();
        // In the trash can: left off the invoice, with its calls, until restored.
        if holdings.iter().any(|h| h.is_excluded()) {
            continue;
        }
        let coding = holdings
            .iter()
            .max_by_key(|h| h.starts_on)
            .and_then(|h| h.autotask);
        let period = months.last().copied();
        // Late lines (months before this invoice's) count only from the last restore: runs left
        // the service off while it was in the trash can.
        let since_restore: Vec<Holding> = holdings.iter().map(|h| h.since_restore()).collect();
        let prices = s.prices.of_service(svc);
        for &q in months {
            // What the month's fee is worth is the same whichever invoice asks (the days held),
            // so that its home invoice and a later one agree on what is left to bill; a later
            // invoice bills at most the days since the last restore (`late_cap`).
            let (Some(full), full_spans) = (
                held_share(holdings.iter().copied(), q),
                held_spans(holdings.iter().copied(), q),
            ) else {
                continue;
            };
            let owed = prices.owed(&full_spans, q);
            let (share, late_spans) = if Some(q) == period {
                (full, None)
            } else {
                let Some(late) = held_share(since_restore.iter(), q) else {
                    continue;
                };
                (late, Some(held_spans(since_restore.iter(), q)))
            };
            let late_cap = late_spans.as_ref().map(|spans| prices.owed(spans, q));
            out.push(Candidate {
                charge: Charge::Fee {
                    service: sid,
                    period: q,
                },
                kind: LineKind::ServiceFee,
                description: format!("{} — {}", svc.name, share.describe(q)),
                owed,
                late_cap,
                cost: prorate(svc.monthly_cost, share),
                autotask: coding,
                service: Some(svc),
                source_item: None,
                units: None,
            });
            // Its extensions, one line per kind: owed like the fee, per extension, times the
            // month's count ("Advanced extensions × 3 @ 8.00").
            let Some(ext) = s.extensions.get(&(sid, q)) else {
                continue;
            };
            for x in ext.owed(q, &full_spans, late_spans.as_deref()) {
                out.push(Candidate {
                    charge: Charge::Extensions {
                        service: sid,
                        kind: x.kind,
                        period: q,
                    },
                    kind: LineKind::ServiceFee,
                    description: format!("{} — {} — {}", svc.name, x.describe(), share.describe(q)),
                    owed: x.owed,
                    late_cap: x.late_cap,
                    cost: Money::ZERO,
                    autotask: coding,
                    service: Some(svc),
                    source_item: None,
                    units: Some((x.count, x.unit)),
                });
            }
        }
        for &q in months {
            let month = q.previous();
            let restored_since = holdings
                .iter()
                .filter_map(|h| h.restored_on)
                .any(|r| r > month.first_day());
            if Some(q) != period && restored_since {
                // Calls of a month it spent partly in the trash can are not billed late.
                continue;
            }
            let usage = s
                .usage
                .iter()
                .filter(|u| u.customer_id == c && u.service_id == sid && u.period == month);
            let (mut calls, mut seconds, mut cost, mut price) = (0, 0, Money::ZERO, Money::ZERO);
            for u in usage {
                calls += u.calls;
                seconds += u.seconds;
                cost += u.cost;
                price += u.price;
            }
            if calls == 0 {
                continue;
            }
            out.push(Candidate {
                charge: Charge::Usage {
                    service: sid,
                    month,
                },
                kind: LineKind::Usage,
                description: format!(
                    "{} — calls in {} ({} calls, {} min)",
                    svc.name,
                    month_name(month),
                    calls,
                    (seconds + 59) / 60
                ),
                owed: price.round_cents(),
                late_cap: None,
                cost,
                autotask: coding,
                service: Some(svc),
                source_item: None,
                units: None,
            });
        }
    }
    let mut items: Vec<&Item> = s.items.iter().filter(|i| i.customer_id == c).collect();
    items.sort_by_key(|i| i.id);
    let home = months.last().copied();
    for i in items {
        match (i.kind, i.status) {
            (ItemKind::Recurring, ItemStatus::Active) => {
                let prices = s.prices.of_item(i);
                for &q in months {
                    let Some(share) = active_share(i.starts_on, q) else {
                        continue;
                    };
                    out.push(Candidate {
                        charge: Charge::Item {
                            item: i.id,
                            period: q,
                        },
                        kind: LineKind::Recurring,
                        description: format!("{} — {}", i.description, share.describe(q)),
                        owed: prices.owed(&[(share.first, share.last)], q),
                        late_cap: None,
                        cost: Money::ZERO,
                        autotask: i.autotask,
                        service: None,
                        source_item: Some(i.id),
                        units: None,
                    });
                }
            }
            (ItemKind::Once, ItemStatus::Pending) => {
                let Some(period) = home else { continue };
                out.push(Candidate {
                    charge: Charge::Item { item: i.id, period },
                    kind: LineKind::OnceOff,
                    description: i.description.to_string(),
                    owed: i.amount.round_cents(),
                    late_cap: None,
                    cost: Money::ZERO,
                    autotask: i.autotask,
                    service: None,
                    source_item: Some(i.id),
                    units: None,
                });
            }
            _ => {}
        }
    }
    out
}

/// What this period's invoice bills for a candidate charge, if anything (see `compute_invoices`):
/// what is owed less what other documents bill (removed lines bill nothing). On the charge's home
/// invoice, or one that already carries it, that is the line's amount; on a later invoice only a
/// shortfall is billed (something entered after its home invoice was made). An excess is never
/// taken back here: that is a resync of the document that bills it.
fn billable_here(s: &Snapshot, c: CustomerId, period: Period, cand: &Candidate) -> Option<Money> {
    let same = |b: &&BilledCharge| b.customer_id == c && b.charge == cand.charge;
    let here = s.billed.iter().filter(same).any(|b| b.on_invoice == period);
    let elsewhere: Money = s
        .billed
        .iter()
        .filter(same)
        .filter(|b| b.on_invoice != period && !b.removed)
        .map(|b| b.amount)
        .sum();
    let mut rest = cand.owed - elsewhere;
    if cand.charge.home_period() != period
        && let Some(cap) = cand.late_cap
    {
        rest = rest.min(cap);
    }
    let wanted = if cand.charge.home_period() == period || here {
        !rest.is_zero()
    } else {
        rest.is_positive()
    };
    wanted.then_some(rest)
}

fn assemble(
    c: &Customer,
    period: Period,
    settings: &BillingSettings,
    lines: Vec<Line>,
) -> ComputedInvoice {
    let (destination, email) = match &c.target {
        BillingTarget::Autotask { company_id } => (
            Destination::Autotask {
                company_id: *company_id,
            },
            EmailDecision::DoNotSend(NoEmailReason::AutotaskCustomer),
        ),
        BillingTarget::Xero { contact_id } => {
            let email = if !c.enabled {
                EmailDecision::DoNotSend(NoEmailReason::CustomerDisabled)
            } else if !settings.auto_send {
                EmailDecision::DoNotSend(NoEmailReason::AutoSendOff)
            } else if c.email.is_none() {
                EmailDecision::DoNotSend(NoEmailReason::NoEmailAddress)
            } else {
                EmailDecision::Send
            };
            (
                Destination::Xero {
                    contact_id: contact_id.clone(),
                },
                email,
            )
        }
    };
    let terms = c.payment_terms_days.unwrap_or(settings.payment_terms_days);
    let issue_date = period.first_day();
    let total = lines.iter().map(|l| l.amount).sum();
    ComputedInvoice {
        customer_id: c.id,
        period,
        destination,
        email,
        issue_date,
        due_date: issue_date + Duration::days(i64::from(terms)),
        currency: settings.currency.clone(),
        lines,
        total,
    }
}

#[cfg(test)]
#[path = "billing_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "billing_model_tests.rs"]
mod model_tests;
