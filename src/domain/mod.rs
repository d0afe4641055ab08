//! The pure core: identifiers, money, periods, customers, the service catalogue, the assignment
//! life-cycle and items. No IO, no async, no sqlx: everything here is plain data and functions,
//! tested with plain unit tests. Every other module depends on this one; it depends on none.

pub mod assignment;
pub mod billing;
pub mod customer;
pub mod extensions;
pub mod ids;
pub mod invoice;
pub mod item;
pub mod money;
pub mod outbox;
pub mod owed;
pub mod period;
pub mod price_history;
pub mod rating;
pub mod service;
pub mod tax;
pub mod text;
pub mod void;

pub use assignment::{AssignmentState, AutotaskCoding, Transition};
pub use customer::{BillingTarget, Customer, NewCustomer};
pub use ids::*;
pub use item::{Item, ItemKind, ItemStatus};
pub use money::Money;
pub use outbox::{LedgerOutcome, OutboxAction, OutboxStatus, RemoteSystem, RunStatus};
pub use period::Period;
pub use service::{Service, ServiceUser};
pub use tax::TaxRates;
pub use text::{Email, NonEmpty};

/// A value that cannot be represented: the message names the thing and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("invalid {what} {value:?}: it must be a positive whole number")]
    InvalidId { what: &'static str, value: String },
    #[error("invalid amount {value:?}: {reason}")]
    InvalidMoney { value: String, reason: &'static str },
    #[error("invalid period {value:?}: expected YYYY-MM")]
    InvalidPeriod { value: String },
    #[error("invalid {what}: {reason}")]
    InvalidText { what: &'static str, reason: String },
    #[error("unknown {what} {value:?} (a newer version wrote it, or the row was edited by hand)")]
    UnknownValue { what: &'static str, value: String },
}
