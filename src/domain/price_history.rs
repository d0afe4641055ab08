//! A monthly price that changes over time: a service's fee, a recurring item's or an extension
//! kind's. Each day is billed at the price in force that day, so a change from a given day (even a
//! retroactive one) bills every day once at its own price, and a billed month keeps its figure.

use std::collections::BTreeSet;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{Money, Period};

/// A monthly price in force from a day on (`from = None`: since the beginning).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PriceChange {
    pub from: Option<NaiveDate>,
    pub amount: Money,
}

/// What a service's fee or a recurring item costs a month, day by day: its price changes, oldest
/// first, at most one a day. A change applies from its day until the next change; a day before the
/// first change takes the first price (the history of a priced thing begins at the beginning).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PriceHistory(Vec<PriceChange>);

impl PriceHistory {
    /// The history from its changes in any order; of two changes on the same day, the later one
    /// in the list stands.
    pub fn new(changes: impl IntoIterator<Item = PriceChange>) -> Self {
        let mut out: Vec<PriceChange> = Vec::new();
        for c in changes {
            out.retain(|x| x.from != c.from);
            out.push(c);
        }
        out.sort_by_key(|c| c.from);
        PriceHistory(out)
    }

    /// One price, always.
    pub fn constant(amount: Money) -> Self {
        PriceHistory(vec![PriceChange { from: None, amount }])
    }

    pub fn changes(&self) -> &[PriceChange] {
        &self.0
    }

    /// The price in force on `day`.
    pub fn on(&self, day: NaiveDate) -> Money {
        self.0
            .iter()
            .rev()
            .find(|c| c.from.is_none_or(|f| f <= day))
            .or_else(|| self.0.first())
            .map(|c| c.amount)
            .unwrap_or(Money::ZERO)
    }

    /// The newest price (the catalogue's current entry).
    pub fn newest(&self) -> Money {
        self.0.last().map(|c| c.amount).unwrap_or(Money::ZERO)
    }

    /// What the days `spans` (first and last day, inside `p`) of month `p` are owed: each day at
    /// its own price, over the days in the month, rounded once (never through a rounded day rate).
    /// A change mid-month makes two segments of one line: `(d₁ × p₁ + d₂ × p₂) ÷ days`.
    pub fn owed(&self, spans: &[(NaiveDate, NaiveDate)], p: Period) -> Money {
        let mut days: BTreeSet<NaiveDate> = BTreeSet::new();
        for &(first, last) in spans {
            let mut d = first.max(p.first_day());
            while d <= last.min(p.last_day()) {
                days.insert(d);
                d += Duration::days(1);
            }
        }
        let sum: Decimal = days.iter().map(|d| self.on(*d).amount()).sum();
        Money::new(sum / Decimal::from(p.days())).round_cents()
    }
}
