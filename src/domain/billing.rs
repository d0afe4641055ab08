//! The monthly invoice computation (DESIGN §1–§2), pure: the same snapshot and period give the same
//! invoices, to the cent.
//!
//! For period P each customer's invoice holds: the monthly fee of every ASSIGNED service and every
//! ACTIVE recurring item, for P, in advance; the rated calls of the month before P, in arrears, one
//! line per service; and the once-off items not yet invoiced. A service or recurring item that
//! starts part-way through P is prorated by days: `price × (days in month − start day + 1) ÷ days in
//! month`, rounded once on the line, half away from zero (never via a rounded day rate). EXCLUDED
//! services are left out (their calls too: an excluded service is off the invoice). Disabled
//! customers are invoiced but not emailed; a customer with nothing billable gets no invoice and a
//! recorded reason. Autotask customers' lines carry contract, product and material code; a line
//! that has none cannot be charged, so the customer is skipped with that reason rather than billed
//! partly.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{
    AssignmentState, AutotaskCoding, AutotaskCompanyId, BillingTarget, Customer, CustomerId,
    DomainError, Item, ItemId, ItemKind, ItemStatus, Money, Period, Service, ServiceId,
    XeroContactId,
};

/// What the computation reads.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub customers: Vec<Customer>,
    pub services: Vec<Service>,
    pub assignments: Vec<LiveAssignment>,
    pub items: Vec<Item>,
    pub usage: Vec<UsageTotal>,
}

#[derive(Debug, Clone)]
pub struct LiveAssignment {
    pub service_id: ServiceId,
    pub customer_id: CustomerId,
    pub state: AssignmentState,
    pub starts_on: NaiveDate,
    pub autotask: Option<AutotaskCoding>,
}

/// The rated calls of one service in one month (unrounded sums).
#[derive(Debug, Clone)]
pub struct UsageTotal {
    pub service_id: ServiceId,
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
}

/// A line's key: stable and unique per customer, period and charge (the database's unique key, and
/// part of the Autotask marker). ASCII, at most 40 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ChargeKey(String);

impl ChargeKey {
    fn service_fee(s: ServiceId) -> Self {
        ChargeKey(format!("svc-{s}-fee"))
    }
    fn usage(s: ServiceId, p: Period) -> Self {
        ChargeKey(format!("svc-{s}-calls-{p}"))
    }
    fn item(i: ItemId) -> Self {
        ChargeKey(format!("item-{i}"))
    }
    /// A key read back from the store: ASCII, 1 to 40 characters.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        if s.is_empty() || s.len() > 40 || !s.is_ascii() {
            return Err(DomainError::InvalidText {
                what: "charge key",
                reason: format!("{s:?} must be 1 to 40 ASCII characters"),
            });
        }
        Ok(ChargeKey(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChargeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
pub struct InvoiceDraft {
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
    pub invoices: Vec<InvoiceDraft>,
    pub skipped: Vec<Skipped>,
}

/// The share of period `p` from `starts_on` on: None when it starts after `p`.
fn share_from(starts_on: Option<NaiveDate>, p: Period) -> Option<(u32, u32)> {
    let days = p.days();
    match starts_on {
        Some(d) if d > p.last_day() => None,
        Some(d) if d >= p.first_day() => Some((days - d.day() + 1, days)),
        _ => Some((days, days)),
    }
}

/// A monthly price for the share of the month, rounded once.
pub fn prorate(price: Money, share: (u32, u32)) -> Money {
    let (used, days) = share;
    if used == days {
        return price.round_cents();
    }
    Money::new(price.amount() * Decimal::from(used) / Decimal::from(days)).round_cents()
}

fn described(base: &str, share: (u32, u32), p: Period) -> String {
    if share.0 == share.1 {
        format!("{base} — {}", month_name(p))
    } else {
        format!(
            "{base} — {} ({} of {} days)",
            month_name(p),
            share.0,
            share.1
        )
    }
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

pub fn compute_invoices(s: &Snapshot, period: Period, settings: &BillingSettings) -> Computed {
    let services: BTreeMap<ServiceId, &Service> = s.services.iter().map(|x| (x.id, x)).collect();
    let mut customers: Vec<&Customer> = s.customers.iter().collect();
    customers.sort_by_key(|c| c.id);
    let mut out = Computed::default();
    let usage_period = period.previous();
    for c in customers {
        let autotask_customer = c.target.is_autotask();
        let mut lines: Vec<Line> = Vec::new();
        let mut missing_coding: Option<String> = None;
        let mut assignments: Vec<&LiveAssignment> = s
            .assignments
            .iter()
            .filter(|a| a.customer_id == c.id && a.state == AssignmentState::Assigned)
            .collect();
        assignments.sort_by_key(|a| a.service_id);
        for a in &assignments {
            let Some(svc) = services.get(&a.service_id) else {
                continue;
            };
            if autotask_customer && a.autotask.is_none() {
                missing_coding.get_or_insert_with(|| format!("service {} ({})", svc.id, svc.name));
            }
            if let Some(share) = share_from(Some(a.starts_on), period) {
                let amount = prorate(svc.monthly_price, share);
                let cost = prorate(svc.monthly_cost, share);
                lines.push(line(
                    ChargeKey::service_fee(svc.id),
                    LineKind::ServiceFee,
                    described(svc.name.as_str(), share, period),
                    amount,
                    cost,
                    a.autotask,
                    Some(svc),
                    settings,
                    None,
                ));
            }
            let mut usage: Vec<&UsageTotal> = s
                .usage
                .iter()
                .filter(|u| u.service_id == svc.id && u.period == usage_period && u.calls > 0)
                .collect();
            usage.sort_by_key(|u| u.period);
            for u in usage {
                let amount = u.price.round_cents();
                lines.push(line(
                    ChargeKey::usage(svc.id, u.period),
                    LineKind::Usage,
                    format!(
                        "{} — calls in {} ({} calls, {} min)",
                        svc.name,
                        month_name(u.period),
                        u.calls,
                        (u.seconds + 59) / 60
                    ),
                    amount,
                    u.cost,
                    a.autotask,
                    Some(svc),
                    settings,
                    None,
                ));
            }
        }
        let mut items: Vec<&Item> = s.items.iter().filter(|i| i.customer_id == c.id).collect();
        items.sort_by_key(|i| i.id);
        for i in items {
            let billable = match (i.kind, i.status) {
                (ItemKind::Recurring, ItemStatus::Active) => share_from(i.starts_on, period),
                (ItemKind::Once, ItemStatus::Pending) => Some((1, 1)),
                _ => None,
            };
            let Some(share) = billable else { continue };
            if autotask_customer && i.autotask.is_none() {
                missing_coding.get_or_insert_with(|| format!("item {} ({})", i.id, i.description));
            }
            let (kind, description, amount) = match i.kind {
                ItemKind::Once => (
                    LineKind::OnceOff,
                    i.description.to_string(),
                    i.amount.round_cents(),
                ),
                ItemKind::Recurring => (
                    LineKind::Recurring,
                    described(i.description.as_str(), share, period),
                    prorate(i.amount, share),
                ),
            };
            lines.push(line(
                ChargeKey::item(i.id),
                kind,
                description,
                amount,
                Money::ZERO,
                i.autotask,
                None,
                settings,
                Some(i.id),
            ));
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
        out.invoices.push(InvoiceDraft {
            customer_id: c.id,
            period,
            destination,
            email,
            issue_date,
            due_date: issue_date + Duration::days(i64::from(terms)),
            currency: settings.currency.clone(),
            lines,
            total,
        });
    }
    out
}

#[cfg(test)]
#[path = "billing_tests.rs"]
mod tests;
