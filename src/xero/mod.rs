//! The Xero Accounting client: OAuth2 (`auth.rs`, `connect.rs`), the wire shapes (`wire.rs`), and
//! the calls the pipeline makes (`client.rs`): batched idempotent invoice creates, updates, credit notes,
//! email, contacts; and its reads (`reads.rs`): by id, in bulk by ids or References, history. Every write carries an `Idempotency-Key`, so
//! a retry after a timeout, a 5xx or a 429 never creates twice. Depends on `domain` and `store`.

pub mod auth;
mod client;
mod config;
pub mod connect;
mod contacts;
mod documents;
mod reads;
pub mod wire;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

pub use client::XeroClient;
pub use config::{InvoiceStatus, XeroConfig, XeroGrant};
pub use reads::HistoryEntry;

use crate::domain::{Money, XeroContactId};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum XeroError {
    #[error("the Xero connection must be renewed ({reason}): run `rebilld xero connect`")]
    Reauthorize { reason: String },
    #[error("Xero asked us to slow down (retry after {retry_after:?})")]
    RateLimited { retry_after: std::time::Duration },
    #[error("Xero's daily request budget is spent; the rest waits until {until}")]
    DayBudgetSpent { until: DateTime<Utc> },
    #[error("Xero refused the request: {}", .0.join("; "))]
    Validation(Vec<String>),
    #[error("Xero has no {what}")]
    NotFound { what: String },
    #[error("Xero is not configured: {0}")]
    NotConfigured(String),
    #[error("Xero authentication failed: {0}")]
    Auth(String),
    #[error("Xero could not be reached: {0}")]
    Transport(String),
    #[error("Xero answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("Xero answered something unreadable: {0}")]
    Decode(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A local invoice as it goes to Xero (status from `xero.invoice_status`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InvoiceDraft {
    pub contact_id: XeroContactId,
    pub reference: String,
    pub invoice_number: Option<String>,
    pub date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    pub lines: Vec<LineDraft>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineDraft {
    pub description: String,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub account_code: Option<String>,
    pub tax_type: Option<String>,
    pub item_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreditNoteDraft {
    pub contact_id: XeroContactId,
    pub reference: String,
    pub date: NaiveDate,
    pub currency: String,
    pub lines: Vec<LineDraft>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteInvoice {
    pub invoice_id: String,
    pub reference: String,
    pub invoice_number: Option<String>,
    pub status: String,
    pub total: Money,
    pub sub_total: Money,
    pub amount_paid: Money,
    pub amount_due: Money,
    /// Xero's `SentToContact`: the invoice was emailed (or marked sent).
    pub sent_to_contact: bool,
    /// The lines as Xero holds them (amounts ex tax, as Xero computed them).
    pub lines: Vec<RemoteLine>,
}

/// One line of a Xero document as Xero holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteLine {
    pub description: String,
    pub amount: Money,
    pub tax_type: Option<String>,
    pub account_code: Option<String>,
}

impl RemoteInvoice {
    /// Xero's status, as a value the pipeline can match on.
    pub fn state(&self) -> InvoiceState {
        InvoiceState::parse(&self.status)
    }

    /// Whether Xero still lets the invoice's lines be edited: draft, submitted or authorised with
    /// nothing paid.
    pub fn is_editable(&self) -> bool {
        self.state().is_editable() && self.amount_paid.is_zero()
    }
}

pub use crate::domain::invoice::InvoiceState;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RemoteCreditNote {
    pub credit_note_id: String,
    pub total: Money,
    /// The total ex tax (what the credit note takes off what was billed).
    pub sub_total: Money,
    pub status: String,
    /// What is left of it to allocate to invoices (with tax).
    pub remaining_credit: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum InvoiceOutcome {
    Created(RemoteInvoice),
    Invalid {
        reference: String,
        messages: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum EmailOutcome {
    Sent,
    NoEmailAddress,
    /// The organisation's daily email cap (by plan; none on a demo company): park until tomorrow.
    DailyLimitReached,
}

/// What `customer link-xero --create` sends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContactDraft {
    pub name: String,
    pub contact_number: Option<String>,
    pub email: Option<String>,
}
