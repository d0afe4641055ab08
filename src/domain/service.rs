//! The catalogue of purchased services. A provider entry may be a parent of child services; a
//! parent is never assignable itself.

use serde::{Deserialize, Serialize};

use super::{Money, NonEmpty, ServiceId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub id: ServiceId,
    pub external_ref: String,
    pub parent_id: Option<ServiceId>,
    pub name: NonEmpty,
    /// "voip", "network", … (free text from the catalogue; VoIP services carry calls).
    pub kind: String,
    pub rebill_enabled: bool,
    /// True when other services name this one as their parent.
    pub is_parent: bool,
    pub monthly_price: Money,
    pub monthly_cost: Money,
    pub xero_account_code: Option<String>,
    pub xero_tax_type: Option<String>,
    pub xero_item_code: Option<String>,
    pub users: Vec<ServiceUser>,
}

/// An extension or number whose calls are recorded against its service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUser {
    pub user_ref: String,
    pub label: Option<String>,
}

/// Why a service cannot be assigned, whatever the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAssignable {
    IsParent,
    NotEnabledForRebilling,
}

impl Service {
    pub fn assignability(&self) -> Result<(), NotAssignable> {
        if self.is_parent {
            Err(NotAssignable::IsParent)
        } else if !self.rebill_enabled {
            Err(NotAssignable::NotEnabledForRebilling)
        } else {
            Ok(())
        }
    }
}

/// Normalises a user reference (number or extension) so that "+61 2 9999 0000", "02 9999 0000"
/// written the same way in the catalogue and in a CDR match: spaces, dashes, dots and brackets go.
pub fn normalise_user_ref(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(is_parent: bool, enabled: bool) -> Service {
        Service {
            id: ServiceId::new(1).unwrap(),
            external_ref: "s1".into(),
            parent_id: None,
            name: NonEmpty::parse("name", "SIP trunk").unwrap(),
            kind: "voip".into(),
            rebill_enabled: enabled,
            is_parent,
            monthly_price: Money::ZERO,
            monthly_cost: Money::ZERO,
            xero_account_code: None,
            xero_tax_type: None,
            xero_item_code: None,
            users: vec![],
        }
    }

    #[test]
    fn parents_and_disabled_services_are_not_assignable() {
        assert_eq!(
            service(true, true).assignability(),
            Err(NotAssignable::IsParent)
        );
        assert_eq!(
            service(false, false).assignability(),
            Err(NotAssignable::NotEnabledForRebilling)
        );
        assert_eq!(service(false, true).assignability(), Ok(()));
    }

    #[test]
    fn user_refs_lose_punctuation() {
        assert_eq!(normalise_user_ref("(02) 9999-0000"), "0299990000");
        assert_eq!(normalise_user_ref("+61 2 9999 0000"), "+61299990000");
    }
}
