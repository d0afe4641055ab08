//! Voiding a recorded invoice (`rebilld invoice void NUMBER --reason TEXT`), decided from its
//! outbox alone, so the dry run and the real void (which decides again inside its transaction)
//! agree.
//!
//! What was never sent is not sent: every open action (pending or failed) is cancelled, but for
//! the removal of a duplicate, which still goes (the second document bills too). What
//! reached the remote is taken back by the update actions a resync uses when every line goes:
//! the Xero invoice is voided (deleted as a draft) while unpaid, else credited in full; each
//! Autotask charge is deleted while unbilled, else corrected by a negative charge. An action whose
//! outcome is not known yet (in flight, or sent without an answer) refuses the void: it could
//! create after the void was decided, so it is settled first (`rebilld push`).

use std::fmt;

use super::invoice::{OutboxEntry, StoredInvoice, Voided};
use super::{LineId, OutboxAction, OutboxId, OutboxStatus, RemoteSystem};

/// What a void does to the outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoidWork {
    /// Open actions that never reached the remote: cancelled.
    pub cancel: Vec<OutboxId>,
    /// Remote records to take back, one update action each.
    pub take_back: Vec<TakeBack>,
}

/// One remote record a void takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TakeBack {
    /// The Xero invoice (voided or deleted while unpaid, else a credit note for all of it).
    XeroInvoice,
    /// The Autotask charge of one line (deleted while unbilled, else a correcting charge).
    AutotaskLine(LineId),
}

impl TakeBack {
    pub fn action(self) -> OutboxAction {
        match self {
            TakeBack::XeroInvoice => OutboxAction::XeroUpdate,
            TakeBack::AutotaskLine(_) => OutboxAction::AutotaskUpdate,
        }
    }

    pub fn line(self) -> Option<LineId> {
        match self {
            TakeBack::XeroInvoice => None,
            TakeBack::AutotaskLine(l) => Some(l),
        }
    }

    /// The update's idempotency key: one void per invoice, so the invoice (and line) name it.
    pub fn key(self, invoice: super::InvoiceId) -> String {
        match self {
            TakeBack::XeroInvoice => format!("xero-void:{invoice}"),
            TakeBack::AutotaskLine(l) => format!("at-void:{invoice}:{l}"),
        }
    }
}

/// Why an invoice cannot be voided now. Nothing changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidRefused {
    AlreadyVoided {
        number: String,
        voided: Voided,
    },
    /// An action may have reached the remote without its outcome being known.
    Unsettled {
        number: String,
        entry: OutboxId,
        action: OutboxAction,
        status: OutboxStatus,
    },
}

impl fmt::Display for VoidRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VoidRefused::AlreadyVoided { number, voided } => write!(
                f,
                "invoice {number} is already voided (on {} by {}: {}); nothing was changed",
                voided.at.format("%Y-%m-%d %H:%M UTC"),
                voided.by,
                voided.reason
            ),
            VoidRefused::Unsettled {
                number,
                entry,
                action,
                status,
            } => write!(
                f,
                "invoice {number} has a remote action whose outcome is not known yet (outbox entry \
                 {entry}, {action}, {}): run `rebilld push` to settle it, then void",
                status.as_str().replace('_', " ")
            ),
        }
    }
}

/// Decides what voiding `inv` does, from its outbox entries.
pub fn void_work(inv: &StoredInvoice, outbox: &[OutboxEntry]) -> Result<VoidWork, VoidRefused> {
    if let Some(v) = &inv.voided {
        return Err(VoidRefused::AlreadyVoided {
            number: inv.number.clone(),
            voided: v.clone(),
        });
    }
    let mine = outbox.iter().filter(|e| e.invoice_id == inv.id);
    let mut work = VoidWork::default();
    for e in mine {
        let unsettled = e.status == OutboxStatus::InFlight
            || (e.status.is_open() && e.uncertain_since.is_some());
        if unsettled {
            return Err(VoidRefused::Unsettled {
                number: inv.number.clone(),
                entry: e.id,
                action: e.action,
                status: e.status,
            });
        }
        // A duplicate's removal still goes: the second document bills the customer too.
        let removes_duplicate = matches!(
            e.action,
            OutboxAction::XeroRemoveDuplicate | OutboxAction::AutotaskRemoveDuplicate
        );
        if e.status.is_open() && !removes_duplicate {
            work.cancel.push(e.id);
        }
        if e.status != OutboxStatus::Done {
            continue;
        }
        let back = match (inv.destination, e.action, e.line_id) {
            (RemoteSystem::Xero, OutboxAction::XeroInvoice | OutboxAction::XeroUpdate, _) => {
                Some(TakeBack::XeroInvoice)
            }
            (
                RemoteSystem::Autotask,
                OutboxAction::AutotaskCharge | OutboxAction::AutotaskUpdate,
                Some(l),
            ) => Some(TakeBack::AutotaskLine(l)),
            _ => None,
        };
        if let Some(b) = back
            && !work.take_back.contains(&b)
        {
            work.take_back.push(b);
        }
    }
    if inv.in_xero() && !work.take_back.contains(&TakeBack::XeroInvoice) {
        work.take_back.push(TakeBack::XeroInvoice);
    }
    work.take_back.sort();
    work.cancel.sort();
    Ok(work)
}

#[cfg(test)]
#[path = "void_tests.rs"]
mod tests;
