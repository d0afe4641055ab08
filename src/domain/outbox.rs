//! The vocabulary of the billing half once an invoice is recorded: which remote system an action
//! goes to, what the action is, where it stands, and how it ended in the ledger. Each is an enum
//! parsed once at the store boundary; nothing downstream compares strings to decide a money path.
//! Adding an action is a compile error until every `match` on it (push, resync, reconcile, the CLI)
//! handles it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::DomainError;

/// Declares a closed set of values stored as text: `as_str` for the database, `FromStr` for
/// reading it back (an unknown value is an error naming the column), `Display` and `Serialize` as
/// the same text.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(DomainError::UnknownValue { what: $what, value: other.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

text_enum!(
    /// Where an invoice, and so each of its actions, goes.
    RemoteSystem, "remote system" {
        Xero = "xero",
        Autotask = "autotask",
    }
);

text_enum!(
    /// One kind of remote action in the outbox.
    OutboxAction, "outbox action" {
        /// Create the Xero invoice (batched).
        XeroInvoice = "xero_invoice",
        /// Email the created Xero invoice through Xero.
        XeroEmail = "xero_email",
        /// Bring a created Xero invoice in line with changed lines.
        XeroUpdate = "xero_update",
        /// Create one Autotask contract charge for a line.
        AutotaskCharge = "autotask_charge",
        /// Bring a line's Autotask charge in line (patch, or a correcting charge).
        AutotaskUpdate = "autotask_update",
        /// Void (or delete) a second Xero invoice with an invoice's Reference, while unpaid. The
        /// entry's `remote_id` is the duplicate's InvoiceID.
        XeroRemoveDuplicate = "xero_remove_duplicate",
        /// Delete a second Autotask charge with a line's marker, while unbilled. The entry's
        /// `remote_id` is the duplicate charge's id.
        AutotaskRemoveDuplicate = "autotask_remove_duplicate",
    }
);

impl OutboxAction {
    /// The system the action calls.
    pub fn system(self) -> RemoteSystem {
        match self {
            OutboxAction::XeroInvoice
            | OutboxAction::XeroEmail
            | OutboxAction::XeroUpdate
            | OutboxAction::XeroRemoveDuplicate => RemoteSystem::Xero,
            OutboxAction::AutotaskCharge
            | OutboxAction::AutotaskUpdate
            | OutboxAction::AutotaskRemoveDuplicate => RemoteSystem::Autotask,
        }
    }

    /// Whether the action is about one line (the Autotask ones) rather than the whole invoice.
    pub fn per_line(self) -> bool {
        match self {
            OutboxAction::XeroInvoice
            | OutboxAction::XeroEmail
            | OutboxAction::XeroUpdate
            | OutboxAction::XeroRemoveDuplicate => false,
            OutboxAction::AutotaskCharge
            | OutboxAction::AutotaskUpdate
            | OutboxAction::AutotaskRemoveDuplicate => true,
        }
    }
}

text_enum!(
    /// Where an outbox entry stands.
    OutboxStatus, "outbox status" {
        /// Waiting for its time (and for the entry it depends on).
        Pending = "pending",
        /// Claimed by a worker; taken over by another once the claim expires.
        InFlight = "in_flight",
        /// Finished; its ledger row says how.
        Done = "done",
        /// Refused for good (validation): waits for a fix and a resync.
        Failed = "failed",
        /// Made pointless by a later change (never sent).
        Cancelled = "cancelled",
        /// Skipped by ops (`outbox skip ID --reason`): never sent, audited, and shown as skipped by
        /// reconcile. Stored as `cancelled` with `skipped_at` set (see the migration).
        Skipped = "skipped",
    }
);

impl OutboxStatus {
    /// Whether the entry still has work to do.
    pub fn is_open(self) -> bool {
        match self {
            OutboxStatus::Pending | OutboxStatus::InFlight | OutboxStatus::Failed => true,
            OutboxStatus::Done | OutboxStatus::Cancelled | OutboxStatus::Skipped => false,
        }
    }
}

text_enum!(
    /// How one attempt of a remote action ended, as the ledger records it.
    LedgerOutcome, "ledger outcome" {
        /// Done remotely (or decided locally, such as an email not sent to a disabled customer).
        Ok = "ok",
        /// Failed; retried later.
        Error = "error",
        /// Refused by the remote for a reason a retry cannot fix.
        PermanentError = "permanent_error",
    }
);

text_enum!(
    /// Where a period's billing run stands (`billing_runs.status`).
    RunStatus, "billing run status" {
        /// Known (its lease was taken) but not started.
        Due = "due",
        Running = "running",
        Done = "done",
        /// The last attempt failed; the next tick tries again.
        Failed = "failed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_reads_back_as_itself() {
        for a in OutboxAction::ALL {
            assert_eq!(a.as_str().parse::<OutboxAction>().unwrap(), *a);
        }
        for s in OutboxStatus::ALL {
            assert_eq!(s.as_str().parse::<OutboxStatus>().unwrap(), *s);
        }
        for o in LedgerOutcome::ALL {
            assert_eq!(o.as_str().parse::<LedgerOutcome>().unwrap(), *o);
        }
        for r in RemoteSystem::ALL {
            assert_eq!(r.as_str().parse::<RemoteSystem>().unwrap(), *r);
        }
    }

    #[test]
    fn an_unknown_value_is_refused_naming_what_it_should_be() {
        let e = "xero_invioce".parse::<OutboxAction>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown outbox action \"xero_invioce\" (a newer version wrote it, or the row was edited by hand)"
        );
    }

    #[test]
    fn actions_belong_to_their_system() {
        let cases = [
            (OutboxAction::XeroInvoice, RemoteSystem::Xero, false),
            (OutboxAction::XeroEmail, RemoteSystem::Xero, false),
            (OutboxAction::XeroUpdate, RemoteSystem::Xero, false),
            (OutboxAction::AutotaskCharge, RemoteSystem::Autotask, true),
            (OutboxAction::AutotaskUpdate, RemoteSystem::Autotask, true),
            (OutboxAction::XeroRemoveDuplicate, RemoteSystem::Xero, false),
            (
                OutboxAction::AutotaskRemoveDuplicate,
                RemoteSystem::Autotask,
                true,
            ),
        ];
        for (a, system, per_line) in cases {
            assert_eq!(a.system(), system, "{a}");
            assert_eq!(a.per_line(), per_line, "{a}");
        }
    }
}
