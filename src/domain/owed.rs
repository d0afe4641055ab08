//! Who owes what — the one rule every run, resync and reconcile follows (DESIGN §2):
//!
//! - a **call** is owed by the customer who held its service on the day the call started
//!   (assignments keep their history: `starts_on` up to `ends_on`, which is the first day no longer
//!   held), so a reassignment never moves calls;
//! - a **fee** or **recurring item** is owed for the days of a month it was held or active, at the
//!   price in force on each of those days (a [`PriceHistory`]: prices have effective dates):
//!   `Σ price of the day ÷ days in month` — with one price, `price × days ÷ days in month` —
//!   rounded once, half away from zero;
//! - a **once-off item** is owed once;
//! - a service's **extensions** of one kind (`extensions.rs`) are owed like its fee, for the days
//!   held, at the plan's per-extension price of each day, times their count for the month.
//!
//! Each owed thing has an identity, a [`Charge`]: what is owed and for which month. A charge lands on
//! exactly one document of the customer that owes it: normally the invoice of its own period; one that
//! an earlier run could not have seen (a start date or calls entered after that period's run) goes on
//! the customer's next invoice as its own line (`svc-7-fee-2027-01`). `billing::compute_invoices`
//! decides which charges a period's invoice carries; this module says what each is worth.

use std::fmt;

use chrono::{Datelike, Duration, NaiveDate};
use serde::Serialize;

use super::extensions::ExtensionKind;
pub use super::price_history::{PriceChange, PriceHistory};
use super::{AssignmentState, AutotaskCoding, CustomerId, DomainError, ItemId, Period, ServiceId};

/// A line's key: stable and unique per customer, period and charge (the database's unique key, and
/// part of the Autotask marker). ASCII, at most 40 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ChargeKey(String);

impl ChargeKey {
    /// Built by `Charge::key_on` only.
    fn from_parts(key: String) -> Self {
        ChargeKey(key)
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

/// One period during which a customer held a service (a row of the assignment history).
#[derive(Debug, Clone)]
pub struct Holding {
    pub service_id: ServiceId,
    pub customer_id: CustomerId,
    /// ASSIGNED or EXCLUDED while live; UNASSIGNED once it has ended.
    pub state: AssignmentState,
    pub starts_on: NaiveDate,
    /// The first day no longer held; `None` while the customer still holds it.
    pub ends_on: Option<NaiveDate>,
    /// The day it last came back from the trash can. Runs left it off while it was excluded, so
    /// nothing from before this day is billed late.
    pub restored_on: Option<NaiveDate>,
    pub autotask: Option<AutotaskCoding>,
}

impl Holding {
    /// Whether the customer still holds the service but has it in the trash can: it is left off
    /// invoices, with its calls, until restored.
    pub fn is_excluded(&self) -> bool {
        self.ends_on.is_none() && self.state == AssignmentState::Excluded
    }

    /// The holding as far as late billing goes: from the day it last came back from the trash can.
    pub fn since_restore(&self) -> Holding {
        let mut h = self.clone();
        if let Some(r) = self.restored_on {
            h.starts_on = h.starts_on.max(r);
        }
        h
    }

    /// Whether the customer held the service on `day`.
    pub fn held_on(&self, day: NaiveDate) -> bool {
        day >= self.starts_on && self.ends_on.is_none_or(|e| day < e)
    }

    /// The days of `p` it was held: the first and last day, or `None`.
    pub fn days_in(&self, p: Period) -> Option<(NaiveDate, NaiveDate)> {
        let first = self.starts_on.max(p.first_day());
        let last = match self.ends_on {
            Some(e) => (e - Duration::days(1)).min(p.last_day()),
            None => p.last_day(),
        };
        (first <= last).then_some((first, last))
    }
}

/// The identity of one owed thing: what, and for which month. The same charge never appears on
/// two documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Charge {
    /// A service's monthly fee for `period`.
    Fee { service: ServiceId, period: Period },
    /// A service's rated calls made in `month` (billed in arrears, on the next month's invoice).
    Usage { service: ServiceId, month: Period },
    /// An item for `period`: a recurring item's month, or a once-off item's (it is owed once).
    Item { item: ItemId, period: Period },
    /// A service's extensions of one kind for `period` (a plan's per-extension price).
    Extensions {
        service: ServiceId,
        kind: ExtensionKind,
        period: Period,
    },
}

impl Charge {
    /// The period whose invoice normally carries the charge.
    pub fn home_period(&self) -> Period {
        match *self {
            Charge::Fee { period, .. }
            | Charge::Item { period, .. }
            | Charge::Extensions { period, .. } => period,
            Charge::Usage { month, .. } => month.next(),
        }
    }

    /// The line key on the invoice of `invoice`: the plain key at home, and the month added when it
    /// is billed late on a later invoice.
    pub fn key_on(&self, invoice: Period) -> ChargeKey {
        let late = invoice != self.home_period();
        let key = match *self {
            Charge::Fee { service, period } if late => format!("svc-{service}-fee-{period}"),
            Charge::Fee { service, .. } => format!("svc-{service}-fee"),
            Charge::Usage { service, month } => format!("svc-{service}-calls-{month}"),
            Charge::Item { item, period } if late => format!("item-{item}-{period}"),
            Charge::Item { item, .. } => format!("item-{item}"),
            Charge::Extensions {
                service,
                kind,
                period,
            } if late => format!("svc-{service}-ext-{kind}-{period}"),
            Charge::Extensions { service, kind, .. } => format!("svc-{service}-ext-{kind}"),
        };
        ChargeKey::from_parts(key)
    }

    /// Reads a recorded line's key on the invoice of `invoice` back into the charge it bills.
    pub fn from_key(key: &ChargeKey, invoice: Period) -> Option<Charge> {
        let k = key.as_str();
        let id = |s: &str| s.parse::<i64>().ok();
        if let Some(rest) = k.strip_prefix("svc-") {
            let (service, tail) = rest.split_once('-')?;
            let service = ServiceId::new(id(service)?).ok()?;
            if tail == "fee" {
                return Some(Charge::Fee {
                    service,
                    period: invoice,
                });
            }
            if let Some(ext) = tail.strip_prefix("ext-") {
                let (kind, period) = match ext.split_once('-') {
                    Some((kind, p)) => (kind, Period::parse(p).ok()?),
                    None => (ext, invoice),
                };
                return Some(Charge::Extensions {
                    service,
                    kind: kind.parse().ok()?,
                    period,
                });
            }
            if let Some(p) = tail.strip_prefix("fee-") {
                return Some(Charge::Fee {
                    service,
                    period: Period::parse(p).ok()?,
                });
            }
            let month = Period::parse(tail.strip_prefix("calls-")?).ok()?;
            return Some(Charge::Usage { service, month });
        }
        let rest = k.strip_prefix("item-")?;
        let (item, period) = match rest.split_once('-') {
            Some((item, p)) => (item, Period::parse(p).ok()?),
            None => (rest, invoice),
        };
        Some(Charge::Item {
            item: ItemId::new(id(item)?).ok()?,
            period,
        })
    }
}

impl fmt::Display for Charge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key_on(self.home_period()).as_str())
    }
}

/// The days of a month something was held or active: `used` of `days`, from `first` to `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub used: u32,
    pub days: u32,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl Share {
    pub fn whole(p: Period) -> Share {
        Share {
            used: p.days(),
            days: p.days(),
            first: p.first_day(),
            last: p.last_day(),
        }
    }

    pub fn is_whole(&self) -> bool {
        self.used == self.days
    }

    /// The share of `p` from `first` to `last` (both inside `p`).
    pub fn of(p: Period, first: NaiveDate, last: NaiveDate) -> Share {
        Share {
            used: (last - first).num_days() as u32 + 1,
            days: p.days(),
            first,
            last,
        }
    }

    /// "20–31 January 2027 (12 of 31 days)", or "January 2027" for the whole month.
    pub fn describe(&self, p: Period) -> String {
        let month = p.first_day().format("%B %Y");
        if self.is_whole() {
            month.to_string()
        } else if self.first == self.last {
            format!("{} {month} (1 of {} days)", self.first.day(), self.days)
        } else {
            format!(
                "{}–{} {month} ({} of {} days)",
                self.first.day(),
                self.last.day(),
                self.used,
                self.days
            )
        }
    }
}

/// The share of `p` a customer held a service, over all its holdings of it (a service can come back
/// to the same customer within a month): days summed, first and last day overall.
pub fn held_share<'a>(holdings: impl IntoIterator<Item = &'a Holding>, p: Period) -> Option<Share> {
    let mut share: Option<Share> = None;
    for (first, last) in holdings.into_iter().filter_map(|h| h.days_in(p)) {
        let used = (last - first).num_days() as u32 + 1;
        share = Some(match share {
            None => Share::of(p, first, last),
            Some(s) => Share {
                used: (s.used + used).min(s.days),
                days: s.days,
                first: s.first.min(first),
                last: s.last.max(last),
            },
        });
    }
    share
}

/// The share of `p` a recurring item starting on `starts_on` is active (it runs until removed).
pub fn active_share(starts_on: Option<NaiveDate>, p: Period) -> Option<Share> {
    match starts_on {
        Some(d) if d > p.last_day() => None,
        Some(d) if d >= p.first_day() => Some(Share::of(p, d, p.last_day())),
        _ => Some(Share::whole(p)),
    }
}

/// The spans of `p` a customer held a service, over its holdings of it (see `held_share`).
pub fn held_spans<'a>(
    holdings: impl IntoIterator<Item = &'a Holding>,
    p: Period,
) -> Vec<(NaiveDate, NaiveDate)> {
    holdings.into_iter().filter_map(|h| h.days_in(p)).collect()
}

/// The months an invoice for `period` looks back over for charges no document carries yet: the
/// `catch_up_months` before it, never before `billing_start` (the first period this installation
/// billed: nothing before it is back-billed).
pub fn catch_up_window(
    period: Period,
    billing_start: Option<Period>,
    catch_up_months: u32,
) -> Vec<Period> {
    let Some(start) = billing_start else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut q = period;
    for _ in 0..catch_up_months {
        q = q.previous();
        if q < start {
            break;
        }
        out.push(q);
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Money;

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }
    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn holding(starts: &str, ends: Option<&str>) -> Holding {
        Holding {
            service_id: ServiceId::new(7).unwrap(),
            customer_id: CustomerId::new(3).unwrap(),
            state: if ends.is_some() {
                AssignmentState::Unassigned
            } else {
                AssignmentState::Assigned
            },
            starts_on: d(starts),
            ends_on: ends.map(d),
            restored_on: None,
            autotask: None,
        }
    }

    #[test]
    fn charges_read_back_from_their_keys_on_any_invoice() {
        let s = ServiceId::new(7).unwrap();
        let i = ItemId::new(4).unwrap();
        let charges = [
            Charge::Fee {
                service: s,
                period: p("2027-01"),
            },
            Charge::Usage {
                service: s,
                month: p("2026-12"),
            },
            Charge::Item {
                item: i,
                period: p("2027-01"),
            },
        ];
        for c in charges {
            for invoice in [p("2027-01"), p("2027-02"), p("2027-04")] {
                let key = c.key_on(invoice);
                assert_eq!(
                    Charge::from_key(&key, invoice),
                    Some(c),
                    "{key} on {invoice}"
                );
            }
        }
        assert_eq!(
            Charge::Fee {
                service: s,
                period: p("2027-01")
            }
            .key_on(p("2027-02"))
            .as_str(),
            "svc-7-fee-2027-01"
        );
        assert_eq!(
            Charge::Fee {
                service: s,
                period: p("2027-01")
            }
            .key_on(p("2027-01"))
            .as_str(),
            "svc-7-fee"
        );
    }

    #[test]
    fn the_days_held_run_from_the_start_to_the_day_before_the_end() {
        let cases = [
            (
                "2027-01-20",
                None,
                "2027-01",
                Some(("2027-01-20", "2027-01-31")),
            ),
            (
                "2026-10-01",
                Some("2027-01-11"),
                "2027-01",
                Some(("2027-01-01", "2027-01-10")),
            ),
            ("2026-10-01", Some("2027-01-01"), "2027-01", None),
            ("2027-02-01", None, "2027-01", None),
            (
                "2027-01-31",
                Some("2027-02-01"),
                "2027-01",
                Some(("2027-01-31", "2027-01-31")),
            ),
        ];
        for (starts, ends, period, want) in cases {
            let got = holding(starts, ends).days_in(p(period));
            assert_eq!(
                got,
                want.map(|(a, b)| (d(a), d(b))),
                "{starts}..{ends:?} in {period}"
            );
        }
    }

    #[test]
    fn a_part_month_is_described_by_its_days() {
        let jan = p("2027-01");
        let share = held_share([&holding("2027-01-20", None)], jan).unwrap();
        assert_eq!(share.describe(jan), "20–31 January 2027 (12 of 31 days)");
        let whole = held_share([&holding("2026-01-01", None)], jan).unwrap();
        assert_eq!(whole.describe(jan), "January 2027");
        let two = held_share(
            [
                &holding("2027-01-01", Some("2027-01-06")),
                &holding("2027-01-21", None),
            ],
            jan,
        )
        .unwrap();
        assert_eq!(two.used, 5 + 11);
    }

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn a_price_change_mid_month_bills_each_day_at_its_price_rounded_once() {
        let jan = p("2027-01");
        let prices = PriceHistory::new([
            PriceChange {
                from: None,
                amount: m("31.00"),
            },
            PriceChange {
                from: Some(d("2027-01-21")),
                amount: m("62.00"),
            },
        ]);
        // 20 days at 31.00 and 11 at 62.00, of 31: (620 + 682) ÷ 31 = 42.00.
        let whole = [(jan.first_day(), jan.last_day())];
        assert_eq!(prices.owed(&whole, jan), m("42.00"));
        // Before the change: the old price for the whole month; after it: the new one.
        let dec = p("2026-12");
        assert_eq!(
            prices.owed(&[(dec.first_day(), dec.last_day())], dec),
            m("31.00")
        );
        let feb = p("2027-02");
        assert_eq!(
            prices.owed(&[(feb.first_day(), feb.last_day())], feb),
            m("62.00")
        );
        // 10 of 31 days of 100, no change: 32.258… → 32.26, the same as one price prorated.
        let one = PriceHistory::constant(m("100"));
        assert_eq!(
            one.owed(&[(d("2027-01-22"), d("2027-01-31"))], jan),
            m("32.26")
        );
        // Part of the month on each side of the change: 5 × 31 + 5 × 62 = 465, ÷ 31 = 15.00.
        assert_eq!(
            prices.owed(&[(d("2027-01-16"), d("2027-01-25"))], jan),
            m("15.00")
        );
    }

    #[test]
    fn a_later_change_on_the_same_day_replaces_the_earlier_one() {
        let prices = PriceHistory::new([
            PriceChange {
                from: Some(d("2027-02-01")),
                amount: m("20"),
            },
            PriceChange {
                from: None,
                amount: m("10"),
            },
            PriceChange {
                from: Some(d("2027-02-01")),
                amount: m("25"),
            },
        ]);
        assert_eq!(prices.changes().len(), 2);
        assert_eq!(prices.on(d("2027-01-31")), m("10"));
        assert_eq!(prices.on(d("2027-02-01")), m("25"));
        assert_eq!(prices.newest(), m("25"));
    }

    #[test]
    fn the_catch_up_window_never_reaches_before_the_first_billed_period() {
        assert!(catch_up_window(p("2027-02"), None, 3).is_empty());
        assert_eq!(
            catch_up_window(p("2027-02"), Some(p("2027-01")), 3),
            vec![p("2027-01")]
        );
        assert_eq!(
            catch_up_window(p("2027-04"), Some(p("2026-01")), 2),
            vec![p("2027-02"), p("2027-03")]
        );
        assert!(catch_up_window(p("2027-01"), Some(p("2027-01")), 3).is_empty());
    }
}
