//! Customers: enabled or disabled, billed either through Xero (a contact) or Autotask (a company).

use serde::{Deserialize, Serialize};

use super::{AutotaskCompanyId, CustomerId, Email, NonEmpty, XeroContactId};

/// Where a customer's charges go. An Xero customer may not be linked to a contact yet (it is
/// linked, or the contact created, before its first invoice is pushed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BillingTarget {
    Xero { contact_id: Option<XeroContactId> },
    Autotask { company_id: AutotaskCompanyId },
}

impl BillingTarget {
    pub fn kind(&self) -> &'static str {
        match self {
            BillingTarget::Xero { .. } => "xero",
            BillingTarget::Autotask { .. } => "autotask",
        }
    }

    pub fn xero_contact(&self) -> Option<&XeroContactId> {
        match self {
            BillingTarget::Xero { contact_id } => contact_id.as_ref(),
            BillingTarget::Autotask { .. } => None,
        }
    }

    pub fn is_autotask(&self) -> bool {
        matches!(self, BillingTarget::Autotask { .. })
    }
}

/// Postal and contact details, all optional (imports often have only some).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusinessDetails {
    pub phone: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
    pub tax_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    /// The importing system's key (CSV/JSON `external_ref`, or `autotask:<company id>`).
    pub external_ref: Option<String>,
    pub name: NonEmpty,
    pub enabled: bool,
    pub target: BillingTarget,
    pub email: Option<Email>,
    pub details: BusinessDetails,
    /// Overrides `invoices.payment_terms_days`.
    pub payment_terms_days: Option<u32>,
}

/// What it takes to create (or, for imports, update) a customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCustomer {
    pub external_ref: Option<String>,
    pub name: NonEmpty,
    pub enabled: bool,
    pub target: BillingTarget,
    pub email: Option<Email>,
    pub details: BusinessDetails,
    pub payment_terms_days: Option<u32>,
}
