//! The Autotask PSA REST client: zone discovery (`zoneInformation`, cached, re-resolved on 401), a
//! typed query builder with paging, per-endpoint concurrency and hourly pacing, and contract charges
//! that are never created twice (each carries a marker that is queried before any create).
//! Depends on `domain` and `store`.

mod charges;
mod client;
mod config;
mod lookups;
pub mod query;
mod reads;
mod server_errors;
pub mod wire;

use rust_decimal::Decimal;
use serde::Serialize;

pub use charges::{common_prefix, correction_marker};
pub use client::AutotaskClient;
pub use config::AutotaskConfig;
pub use lookups::{CodingCheck, CodingNames, CompanyImport, Named, import_companies};

use crate::domain::{ContractId, MaterialCodeId, Money, ProductId};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AutotaskError {
    /// Autotask's own words (validation errors arrive as HTTP 500 with `{"errors": [...]}`).
    #[error("Autotask refused the request: {}", .0.join("; "))]
    Refused(Vec<String>),
    #[error("{0}")]
    InvalidCoding(String),
    #[error("Autotask rejected the API user's credentials (HTTP {status})")]
    Unauthorized { status: u16 },
    #[error("Autotask's request threshold is reached; retry after {retry_after:?}")]
    Throttled { retry_after: std::time::Duration },
    #[error(
        "this daemon's share of the Autotask hourly budget is spent; the rest continues in the next window (about {retry_after:?})"
    )]
    BudgetSpent { retry_after: std::time::Duration },
    #[error("Autotask has no {0}")]
    NotFound(String),
    #[error("Autotask is not configured: {0}")]
    NotConfigured(String),
    #[error("Autotask could not be reached: {0}")]
    Transport(String),
    #[error("Autotask answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("Autotask answered something unreadable: {0}")]
    Decode(String),
    #[error(
        "refusing to follow a page link to another host ({0}): credentials go to the zone's host only"
    )]
    ForeignHost(String),
    #[error("{0}")]
    Local(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AutotaskError {
    /// Waiting and retrying will not help: a person must fix something first.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            AutotaskError::Refused(_)
                | AutotaskError::InvalidCoding(_)
                | AutotaskError::NotFound(_)
                | AutotaskError::NotConfigured(_)
                | AutotaskError::ForeignHost(_)
                | AutotaskError::Local(_)
        )
    }

    /// Budget and threshold waits: park the work, it is not a failure.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            AutotaskError::Throttled { retry_after }
            | AutotaskError::BudgetSpent { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// One charge line as it goes to `POST /V1.0/Contracts/{id}/Charges`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChargeDraft {
    pub contract_id: ContractId,
    pub product_id: ProductId,
    pub material_code_id: MaterialCodeId,
    pub name: String,
    pub description: String,
    pub unit_quantity: Decimal,
    pub unit_price: Money,
    pub unit_cost: Money,
    pub date_purchased: chrono::NaiveDate,
    /// In `purchaseOrderNumber` (≤ 50 characters): how a lost create is found again.
    pub marker: String,
    pub billable: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteCharge {
    pub id: i64,
    pub contract_id: i64,
    pub marker: Option<String>,
    pub unit_quantity: Decimal,
    pub unit_price: Money,
    pub unit_cost: Money,
    pub is_billed: bool,
}

/// What `update_or_correct_charge` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ChargeChange {
    Unchanged {
        id: i64,
    },
    Updated {
        id: i64,
    },
    Deleted {
        id: i64,
    },
    /// The charge was billed: a correcting charge for the difference was added.
    Corrected {
        original: i64,
        correction: i64,
        amount: Money,
    },
}

impl ChargeChange {
    pub fn charge_id(&self) -> i64 {
        match self {
            ChargeChange::Unchanged { id }
            | ChargeChange::Updated { id }
            | ChargeChange::Deleted { id } => *id,
            ChargeChange::Corrected { correction, .. } => *correction,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ChargeChange::Unchanged { id } => format!("charge {id} unchanged"),
            ChargeChange::Updated { id } => format!("charge {id} updated (not yet billed)"),
            ChargeChange::Deleted { id } => format!("charge {id} deleted (not yet billed)"),
            ChargeChange::Corrected {
                original,
                correction,
                amount,
            } => {
                format!("charge {original} was billed: correcting charge {correction} of {amount}")
            }
        }
    }
}

/// The contract types (`Contracts.contractType`, Autotask's picklist) that Autotask refuses
/// contract charges on, with their names: Block Hours (4), Retainer (6) and Per Ticket (8).
/// Recurring Service (7), Fixed Price (3) and Time and Materials (1) take charges.
pub fn chargeless_contract_type(contract_type: i64) -> Option<&'static str> {
    match contract_type {
        4 => Some("Block Hours"),
        6 => Some("Retainer"),
        8 => Some("Per Ticket"),
        _ => None,
    }
}
