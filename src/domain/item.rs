//! Once-off and recurring items: extra invoice lines a customer is charged.
//!
//! A once-off item is PENDING ("not yet invoiced") until a run bills it, then INVOICED and frozen.
//! A recurring item is ACTIVE every run until REMOVED; a removed recurring item can be re-enabled.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{AutotaskCoding, CustomerId, ItemId, Money, NonEmpty, Period};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    Once,
    Recurring,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Once => "once",
            ItemKind::Recurring => "recurring",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "once" => Some(ItemKind::Once),
            "recurring" => Some(ItemKind::Recurring),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Once-off, not yet invoiced.
    Pending,
    /// Once-off, billed by the run of `Item::invoiced_period`. Frozen.
    Invoiced,
    /// Recurring, billed every run.
    Active,
    /// Removed: a recurring item can be re-enabled; a pending once-off item is withdrawn.
    Removed,
}

impl ItemStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::Invoiced => "invoiced",
            ItemStatus::Active => "active",
            ItemStatus::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(ItemStatus::Pending),
            "invoiced" => Some(ItemStatus::Invoiced),
            "active" => Some(ItemStatus::Active),
            "removed" => Some(ItemStatus::Removed),
            _ => None,
        }
    }

    /// The users' words.
    pub fn label(self) -> &'static str {
        match self {
            ItemStatus::Pending => "not yet invoiced",
            ItemStatus::Invoiced => "invoiced",
            ItemStatus::Active => "active",
            ItemStatus::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: ItemId,
    pub customer_id: CustomerId,
    pub kind: ItemKind,
    pub description: NonEmpty,
    /// The full monthly (recurring) or once-off value, before any proration.
    pub amount: Money,
    /// Recurring: the first day it is billed (a part month is prorated). Once-off: None.
    pub starts_on: Option<NaiveDate>,
    /// Required for Autotask customers, absent for Xero customers.
    pub autotask: Option<AutotaskCoding>,
    pub status: ItemStatus,
    pub invoiced_period: Option<Period>,
}

/// What an edit or removal would do to an item, or why it may not.
pub fn check_editable(item: &Item) -> Result<(), String> {
    match item.status {
        ItemStatus::Invoiced => Err(format!(
            "once-off item {} was invoiced in {} and can no longer be changed or removed",
            item.id,
            item.invoiced_period
                .map(|p| p.to_string())
                .unwrap_or_else(|| "an earlier run".into())
        )),
        _ => Ok(()),
    }
}

pub fn check_removable(item: &Item) -> Result<(), String> {
    check_editable(item)?;
    if item.status == ItemStatus::Removed {
        return Err(format!("item {} is removed already", item.id));
    }
    Ok(())
}

pub fn check_restorable(item: &Item) -> Result<(), String> {
    match (item.kind, item.status) {
        (ItemKind::Recurring, ItemStatus::Removed) => Ok(()),
        (ItemKind::Recurring, _) => Err(format!("recurring item {} is active already", item.id)),
        (ItemKind::Once, _) => Err(format!(
            "item {} is a once-off item: add it again instead of re-enabling it",
            item.id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: ItemKind, status: ItemStatus) -> Item {
        Item {
            id: ItemId::new(3).unwrap(),
            customer_id: CustomerId::new(1).unwrap(),
            kind,
            description: NonEmpty::parse("description", "Install").unwrap(),
            amount: Money::parse("100").unwrap(),
            starts_on: None,
            autotask: None,
            status,
            invoiced_period: Period::parse("2026-11").ok(),
        }
    }

    #[test]
    fn invoiced_once_off_items_are_frozen() {
        let i = item(ItemKind::Once, ItemStatus::Invoiced);
        assert!(check_editable(&i).unwrap_err().contains("2026-11"));
        assert!(check_removable(&i).is_err());
        assert!(check_removable(&item(ItemKind::Once, ItemStatus::Pending)).is_ok());
    }

    #[test]
    fn only_removed_recurring_items_are_restored() {
        assert!(check_restorable(&item(ItemKind::Recurring, ItemStatus::Removed)).is_ok());
        assert!(check_restorable(&item(ItemKind::Recurring, ItemStatus::Active)).is_err());
        assert!(check_restorable(&item(ItemKind::Once, ItemStatus::Removed)).is_err());
    }
}
