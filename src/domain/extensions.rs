//! Per-extension pricing (issue 14): a service's users (extensions) each have a kind, and a rate
//! plan can set a monthly price per kind, with effective dates. Billed as one line per service,
//! kind and month ("Advanced extensions × 3 @ 8.00 — November 2026"), in advance like the fee and
//! prorated by the days the service was held, at the price in force on each day.
//!
//! Two rules keep a billed month as it was billed:
//! - **the count** of a month is the service's extensions of that kind when the month is first
//!   billed (its run freezes the counts, `store::extensions`); an extension added or removed
//!   during the month counts from the next month, and a resync of a billed month keeps the count;
//! - **the price** is the plan's, with effective dates (`[[extensions.advanced]]` with `from`, so
//!   a change mid-month is prorated by day like a service's price), frozen with the count when the
//!   month is first billed: a later plan version, or another plan, prices the months after.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::price_history::{PriceChange, PriceHistory};
use super::{DomainError, Money, Period};

/// The kind of an extension. Closed: the product sells standard and advanced extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum ExtensionKind {
    #[default]
    Standard,
    Advanced,
}

impl ExtensionKind {
    pub const ALL: [ExtensionKind; 2] = [ExtensionKind::Standard, ExtensionKind::Advanced];

    pub fn as_str(self) -> &'static str {
        match self {
            ExtensionKind::Standard => "standard",
            ExtensionKind::Advanced => "advanced",
        }
    }

    /// The words of an invoice line ("Advanced extensions").
    pub fn label(self) -> &'static str {
        match self {
            ExtensionKind::Standard => "Standard extensions",
            ExtensionKind::Advanced => "Advanced extensions",
        }
    }
}

impl FromStr for ExtensionKind {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let t = s.trim().to_ascii_lowercase();
        ExtensionKind::ALL
            .into_iter()
            .find(|k| k.as_str() == t)
            .ok_or(DomainError::UnknownValue {
                what: "extension kind (standard or advanced)",
                value: s.to_string(),
            })
    }
}

impl fmt::Display for ExtensionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExtensionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ExtensionKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A plan's monthly prices per extension kind, each with its effective dates. Written and read
/// in the plan file's form (kind → price, or kind → list of `{from, price}`), which is also how
/// the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionPrices(pub BTreeMap<ExtensionKind, PriceHistory>);

/// One dated price as a plan file writes it: `{ from = "2027-01-01", price = "9.00" }` (without
/// `from`: since the beginning).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatedPrice {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<NaiveDate>,
    price: Money,
}

impl Serialize for ExtensionPrices {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let out: BTreeMap<&str, Vec<DatedPrice>> = self
            .0
            .iter()
            .map(|(k, h)| {
                let list = h
                    .changes()
                    .iter()
                    .map(|c| DatedPrice {
                        from: c.from,
                        price: c.amount,
                    })
                    .collect();
                (k.as_str(), list)
            })
            .collect();
        out.serialize(s)
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PriceEntry {
    One(Money),
    Dated(Vec<DatedPrice>),
}

impl<'de> Deserialize<'de> for ExtensionPrices {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, PriceEntry>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (k, v) in raw {
            let kind: ExtensionKind = k
                .parse()
                .map_err(|e: DomainError| serde::de::Error::custom(format!("extensions: {e}")))?;
            let changes: Vec<PriceChange> = match v {
                PriceEntry::One(m) => vec![PriceChange {
                    from: None,
                    amount: m,
                }],
                PriceEntry::Dated(list) => list
                    .into_iter()
                    .map(|p| PriceChange {
                        from: p.from,
                        amount: p.price,
                    })
                    .collect(),
            };
            if changes.is_empty() {
                return Err(serde::de::Error::custom(format!(
                    "extensions.{kind}: give a price"
                )));
            }
            if changes.iter().any(|c| c.amount.is_negative()) {
                return Err(serde::de::Error::custom(format!(
                    "extensions.{kind}: a price cannot be negative"
                )));
            }
            if out.insert(kind, PriceHistory::new(changes)).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "extensions: {kind} is given twice"
                )));
            }
        }
        Ok(ExtensionPrices(out))
    }
}

impl ExtensionPrices {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn of(&self, kind: ExtensionKind) -> Option<&PriceHistory> {
        self.0.get(&kind)
    }
}

/// How many extensions of each kind a service has in a month.
pub type ExtensionCounts = BTreeMap<ExtensionKind, u32>;

/// What one kind of a service's extensions is owed for a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionsOwed {
    pub kind: ExtensionKind,
    pub count: u32,
    /// What one extension is owed: its monthly price for the days held, rounded once.
    pub unit: Money,
    /// `count × unit`: a line of `count` at `unit` bills it exactly.
    pub owed: Money,
    /// The most a later invoice bills of it (the days since a restore), like the fee's.
    pub late_cap: Option<Money>,
}

impl ExtensionsOwed {
    /// "Advanced extensions × 3 @ 8.00".
    pub fn describe(&self) -> String {
        format!("{} × {} @ {}", self.kind.label(), self.count, self.unit)
    }
}

impl ExtensionMonth {
    /// Each priced kind with extensions this month, owed for the days `spans` of month `p` it was
    /// held (each day at its price), per extension, times the count; `late` the days a later
    /// invoice may bill.
    pub fn owed(
        &self,
        p: Period,
        spans: &[(NaiveDate, NaiveDate)],
        late: Option<&[(NaiveDate, NaiveDate)]>,
    ) -> Vec<ExtensionsOwed> {
        let mut out = Vec::new();
        for (&kind, &count) in self.counts.iter().filter(|(_, n)| **n > 0) {
            let Some(prices) = self.prices.of(kind) else {
                continue;
            };
            let n = Decimal::from(count);
            let unit = prices.owed(spans, p);
            out.push(ExtensionsOwed {
                kind,
                count,
                unit,
                owed: Money::new(unit.amount() * n),
                late_cap: late.map(|l| Money::new(prices.owed(l, p).amount() * n)),
            });
        }
        out
    }
}

/// What one service's extensions are billed with in one month: how many of each kind, and the
/// plan's prices (frozen by the month's first run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExtensionMonth {
    pub counts: ExtensionCounts,
    pub prices: ExtensionPrices,
}

#[cfg(test)]
#[path = "extensions_tests.rs"]
mod tests;
