//! Invoices as recorded: what the store returns once a computed invoice has been written, typed
//! through and through (ids, money, period, destination), and the pure comparison of recorded lines
//! with recomputed ones that a resync turns into remote changes.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::billing::{ChargeKey, Line, LineKind};
use super::{
    AutotaskCoding, CustomerId, InvoiceId, ItemId, LedgerOutcome, LineId, Money, OutboxAction,
    OutboxId, OutboxStatus, Period, RemoteSystem,
};

/// A local invoice (one per customer and period).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredInvoice {
    pub id: InvoiceId,
    pub customer_id: CustomerId,
    pub customer_name: String,
    pub period: Period,
    pub number: String,
    pub destination: RemoteSystem,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    /// The sum of the live lines, ex tax.
    pub total: Money,
    /// "send", or "not emailed: <reason>" (for people; the push decides again at send time).
    pub email_decision: String,
    pub xero_contact_id: Option<String>,
    pub xero_invoice_id: Option<String>,
    pub xero_status: Option<String>,
    pub emailed_at: Option<DateTime<Utc>>,
    pub revision: i32,
    /// Set once ops voided it (`rebilld invoice void`): it bills nothing, and its charges are
    /// settled (no later run or resync bills them again).
    pub voided: Option<Voided>,
}

/// When, by whom and why an invoice was voided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Voided {
    pub at: DateTime<Utc>,
    pub by: String,
    pub reason: String,
}

impl StoredInvoice {
    pub fn total(&self) -> Money {
        self.total
    }

    /// Whether the invoice already exists in Xero (so a change is an update or an adjustment).
    pub fn in_xero(&self) -> bool {
        self.destination == RemoteSystem::Xero && self.xero_invoice_id.is_some()
    }
}

/// One line of a recorded invoice. A line a resync took away stays, flagged `removed`, so that its
/// remote counterpart can be undone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLine {
    pub id: LineId,
    pub invoice_id: InvoiceId,
    pub charge_key: ChargeKey,
    pub position: i32,
    pub kind: LineKind,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Money,
    pub amount: Money,
    pub unit_cost: Money,
    pub autotask: Option<AutotaskCoding>,
    pub account_code: Option<String>,
    pub tax_type: Option<String>,
    pub item_code: Option<String>,
    pub source_item: Option<ItemId>,
    pub autotask_charge_id: Option<i64>,
    pub removed: bool,
}

impl StoredLine {
    pub fn amount(&self) -> Money {
        self.amount
    }

    /// Whether the recorded line says what the recomputed one says: the figures, the words that
    /// reach the customer, and where it is charged (a re-coded line is a change). A calls line is
    /// compared by its money and coding only: calls imported after it was made are billed on a
    /// later invoice, and its count of calls and their wholesale cost then describe more calls than
    /// it bills, without anything owed having changed.
    pub fn same_as(&self, l: &Line) -> bool {
        let money = self.quantity == l.quantity
            && self.unit_price == l.unit_price
            && self.amount == l.amount;
        let coding = self.autotask == l.autotask
            && self.account_code == l.account_code
            && self.tax_type == l.tax_type
            && self.item_code == l.item_code;
        match l.kind {
            LineKind::Usage => money && coding,
            LineKind::ServiceFee | LineKind::OnceOff | LineKind::Recurring => {
                money
                    && coding
                    && self.description == l.description
                    && self.unit_cost == l.unit_cost
            }
        }
    }
}

/// The status of a Xero invoice or adjustment document (`Status` in the Accounting API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceState {
    Draft,
    Submitted,
    Authorised,
    Paid,
    Voided,
    Deleted,
    /// A status this version does not know: treated as not editable and not cancelled.
    Other(String),
}

impl InvoiceState {
    pub fn parse(s: &str) -> Self {
        match s {
            "DRAFT" => InvoiceState::Draft,
            "SUBMITTED" => InvoiceState::Submitted,
            "AUTHORISED" => InvoiceState::Authorised,
            "PAID" => InvoiceState::Paid,
            "VOIDED" => InvoiceState::Voided,
            "DELETED" => InvoiceState::Deleted,
            other => InvoiceState::Other(other.to_string()),
        }
    }

    pub fn is_editable(&self) -> bool {
        matches!(
            self,
            InvoiceState::Draft | InvoiceState::Submitted | InvoiceState::Authorised
        )
    }

    /// Voided or deleted: the invoice no longer bills anything.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, InvoiceState::Voided | InvoiceState::Deleted)
    }
}

/// One remote action and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEntry {
    pub id: OutboxId,
    pub idempotency_key: String,
    pub action: OutboxAction,
    pub invoice_id: InvoiceId,
    pub line_id: Option<LineId>,
    pub depends_on: Option<OutboxId>,
    pub status: OutboxStatus,
    pub attempts: i32,
    pub not_before: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
    /// Since when the action may have reached the remote without its outcome being known (a
    /// request sent and no answer, or a claim taken over from a worker that may have sent it): the
    /// remote is read before anything is sent again.
    pub uncertain_since: Option<DateTime<Utc>>,
}

/// One outcome in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerRow {
    pub id: i64,
    pub outbox_id: OutboxId,
    pub invoice_id: InvoiceId,
    pub line_id: Option<LineId>,
    pub system: RemoteSystem,
    pub action: OutboxAction,
    pub remote_id: Option<String>,
    pub remote_status: Option<String>,
    pub amount: Option<Money>,
    pub requested_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub outcome: LedgerOutcome,
    pub error: Option<String>,
}

/// How recomputed lines differ from the recorded ones, matched by charge key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineChanges {
    /// A recorded line (live or removed) whose recomputed figures or words differ.
    pub changed: Vec<(LineId, Line)>,
    /// A charge the recorded invoice never had.
    pub added: Vec<Line>,
    /// A live recorded line that is no longer owed.
    pub removed: Vec<LineId>,
}

impl LineChanges {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// Compares the recorded lines of one invoice with the recomputed ones. A recorded line that was
/// removed and is owed again counts as changed (it comes back).
pub fn diff_lines(recorded: &[StoredLine], recomputed: &[Line]) -> LineChanges {
    let mut c = LineChanges::default();
    let by_key: BTreeMap<&ChargeKey, &StoredLine> =
        recorded.iter().map(|l| (&l.charge_key, l)).collect();
    for l in recomputed {
        match by_key.get(&l.charge_key) {
            Some(o) if !o.removed && o.same_as(l) => {}
            Some(o) => c.changed.push((o.id, l.clone())),
            None => c.added.push(l.clone()),
        }
    }
    for o in recorded.iter().filter(|o| !o.removed) {
        if !recomputed.iter().any(|l| l.charge_key == o.charge_key) {
            c.removed.push(o.id);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    fn line(key: &str, amount: &str) -> Line {
        Line {
            charge_key: ChargeKey::parse(key).unwrap(),
            kind: LineKind::ServiceFee,
            description: format!("{key} — November 2026"),
            quantity: Decimal::ONE,
            unit_price: m(amount),
            amount: m(amount),
            unit_cost: m("10"),
            autotask: None,
            account_code: None,
            tax_type: None,
            item_code: None,
            source_item: None,
        }
    }

    fn stored(id: i64, l: &Line, removed: bool) -> StoredLine {
        StoredLine {
            id: LineId::new(id).unwrap(),
            invoice_id: InvoiceId::new(1).unwrap(),
            charge_key: l.charge_key.clone(),
            position: id as i32,
            kind: l.kind,
            description: l.description.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            amount: l.amount,
            unit_cost: l.unit_cost,
            autotask: l.autotask,
            account_code: l.account_code.clone(),
            tax_type: l.tax_type.clone(),
            item_code: l.item_code.clone(),
            source_item: l.source_item,
            autotask_charge_id: None,
            removed,
        }
    }

    fn id(n: i64) -> LineId {
        LineId::new(n).unwrap()
    }

    #[test]
    fn recorded_and_recomputed_lines_compare_by_charge_key() {
        let a = line("svc-1-fee", "49.95");
        let b = line("svc-2-fee", "30.00");
        let c = line("item-3", "150.00");
        let mut a_up = a.clone();
        a_up.amount = m("59.95");
        a_up.unit_price = m("59.95");
        let mut b_words = b.clone();
        b_words.description = "Trunk — November 2026 (12 of 30 days)".into();
        struct Case {
            name: &'static str,
            recorded: Vec<StoredLine>,
            recomputed: Vec<Line>,
            want: LineChanges,
        }
        let cases = [
            Case {
                name: "unchanged",
                recorded: vec![stored(1, &a, false), stored(2, &b, false)],
                recomputed: vec![b.clone(), a.clone()],
                want: LineChanges::default(),
            },
            Case {
                name: "an amount changed",
                recorded: vec![stored(1, &a, false)],
                recomputed: vec![a_up.clone()],
                want: LineChanges {
                    changed: vec![(id(1), a_up.clone())],
                    ..Default::default()
                },
            },
            Case {
                name: "only the words changed",
                recorded: vec![stored(2, &b, false)],
                recomputed: vec![b_words.clone()],
                want: LineChanges {
                    changed: vec![(id(2), b_words.clone())],
                    ..Default::default()
                },
            },
            Case {
                name: "a charge added and one removed",
                recorded: vec![stored(1, &a, false), stored(2, &b, false)],
                recomputed: vec![a.clone(), c.clone()],
                want: LineChanges {
                    added: vec![c.clone()],
                    removed: vec![id(2)],
                    ..Default::default()
                },
            },
            Case {
                name: "a removed line owed again comes back",
                recorded: vec![stored(1, &a, true)],
                recomputed: vec![a.clone()],
                want: LineChanges {
                    changed: vec![(id(1), a.clone())],
                    ..Default::default()
                },
            },
            Case {
                name: "a removed line still not owed stays removed",
                recorded: vec![stored(1, &a, true), stored(2, &b, false)],
                recomputed: vec![b.clone()],
                want: LineChanges::default(),
            },
            Case {
                name: "everything removed",
                recorded: vec![stored(1, &a, false), stored(2, &b, false)],
                recomputed: vec![],
                want: LineChanges {
                    removed: vec![id(1), id(2)],
                    ..Default::default()
                },
            },
        ];
        for case in cases {
            assert_eq!(
                diff_lines(&case.recorded, &case.recomputed),
                case.want,
                "{}",
                case.name
            );
        }
    }
}
