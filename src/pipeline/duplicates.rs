//! Duplicates: a second document for one invoice's Reference (Xero) or one line's marker
//! (Autotask), and an invoice emailed more often than the ledger sent it. Reconcile reports them;
//! a resync queues the removal of each duplicate document the remote still lets go as an outbox
//! action of its own (`xero_remove_duplicate`, `autotask_remove_duplicate`: keyed by the
//! duplicate's id, so queued once however often it is planned, audited, listed by `outbox
//! list`), and the push carries it out, reading the remote again first.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::record::autotask_marker;
use super::remote_view::RemoteView;
use super::{Pipeline, PipelineError};
use crate::autotask::{AutotaskClient, AutotaskError, RemoteCharge};
use crate::domain::{LedgerOutcome, LineId, Money, OutboxAction, RemoteSystem};
use crate::store::billing::{StoredInvoice, StoredLine};
use crate::store::outbox::{LedgerEntry, OutboxEntry, RemoteEffect};
use crate::store::removals::Removal;
use crate::xero::{InvoiceState, XeroClient, XeroError};

/// A second document for one invoice's Reference (Xero) or one line's marker (Autotask): the one
/// the ledger does not hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateDoc {
    XeroInvoice {
        invoice_id: String,
        reference: String,
        status: String,
        sub_total: Money,
        amount_paid: Money,
    },
    AutotaskCharge(RemoteCharge),
}

impl DuplicateDoc {
    /// What it is, in the words of a report.
    pub fn describe(&self) -> String {
        match self {
            DuplicateDoc::XeroInvoice {
                invoice_id,
                reference,
                status,
                sub_total,
                ..
            } => format!(
                "Xero invoice {invoice_id} ({status}, {sub_total} ex tax) is a second invoice with Reference {reference:?}"
            ),
            DuplicateDoc::AutotaskCharge(c) => format!(
                "Autotask charge {} ({}, {}) on contract {} is a second charge with marker {:?}",
                c.id,
                if c.is_billed { "billed" } else { "not billed" },
                charge_amount(c),
                c.contract_id,
                c.marker.as_deref().unwrap_or("")
            ),
        }
    }

    /// Why the remote does not let it be removed, if it does not: Xero voids (or deletes) an
    /// invoice only while nothing is paid on it, Autotask deletes a charge only until it is billed.
    pub fn why_kept(&self) -> Option<String> {
        match self {
            DuplicateDoc::XeroInvoice {
                status,
                amount_paid,
                ..
            } => {
                let state = InvoiceState::parse(status);
                (!state.is_editable() || !amount_paid.is_zero()).then(|| {
                    format!("it is {status} with {amount_paid} paid: Xero does not let it be voided; credit it in Xero")
                })
            }
            DuplicateDoc::AutotaskCharge(c) => c.is_billed.then(|| {
                "it is billed: Autotask does not let it be deleted; correct it in Autotask".into()
            }),
        }
    }

    /// The outbox action that removes it.
    pub(super) fn action(&self) -> OutboxAction {
        match self {
            DuplicateDoc::XeroInvoice { .. } => OutboxAction::XeroRemoveDuplicate,
            DuplicateDoc::AutotaskCharge(_) => OutboxAction::AutotaskRemoveDuplicate,
        }
    }

    /// Its id in its remote system (what the outbox entry that removes it carries).
    pub(super) fn remote_id(&self) -> String {
        match self {
            DuplicateDoc::XeroInvoice { invoice_id, .. } => invoice_id.clone(),
            DuplicateDoc::AutotaskCharge(c) => c.id.to_string(),
        }
    }
}

/// A duplicate found for one invoice, with the line whose marker it carries (Autotask).
#[derive(Debug, Clone)]
pub(super) struct Found {
    pub doc: DuplicateDoc,
    pub line: Option<LineId>,
}

pub(super) fn charge_amount(c: &RemoteCharge) -> Money {
    Money::new(c.unit_price.amount() * c.unit_quantity).round_cents()
}

/// Of the charges carrying one line's exact marker, the one that counts (the ledger's, else the
/// first created) and the duplicates.
pub(super) fn split_duplicates(
    mut same_marker: Vec<RemoteCharge>,
    known: Option<i64>,
) -> (Option<RemoteCharge>, Vec<RemoteCharge>) {
    same_marker.sort_by_key(|c| (Some(c.id) != known, c.id));
    let mut it = same_marker.into_iter();
    let kept = it.next();
    (kept, it.collect())
}

/// The live Xero invoices with `reference` other than the ledger's `ledger_id`.
pub(super) fn xero_duplicates(
    view: &RemoteView,
    reference: &str,
    ledger_id: &str,
) -> Vec<DuplicateDoc> {
    view.live_with_reference(reference)
        .into_iter()
        .filter(|r| r.invoice_id != ledger_id)
        .map(|r| DuplicateDoc::XeroInvoice {
            invoice_id: r.invoice_id.clone(),
            reference: r.reference.clone(),
            status: r.status.clone(),
            sub_total: r.sub_total,
            amount_paid: r.amount_paid,
        })
        .collect()
}

/// The duplicates of one invoice's documents (what reconcile reports as `Duplicate`), as the view
/// shows them.
pub(super) async fn duplicates(
    p: &Pipeline,
    view: &RemoteView,
    inv: &StoredInvoice,
) -> Result<Vec<Found>, PipelineError> {
    match inv.destination {
        RemoteSystem::Xero => Ok(match &inv.xero_invoice_id {
            Some(id) => xero_duplicates(view, &inv.number, id)
                .into_iter()
                .map(|doc| Found { doc, line: None })
                .collect(),
            None => Vec::new(),
        }),
        RemoteSystem::Autotask => {
            let mut out = Vec::new();
            for l in p.store.invoice_lines(inv.id).await? {
                let Some(coding) = l.autotask else { continue };
                let marker = autotask_marker(inv.period, inv.customer_id, &l.charge_key, 1);
                let same: Vec<RemoteCharge> = view
                    .charges_with_marker(coding.contract_id, &marker)
                    .into_iter()
                    .filter(|c| c.marker.as_deref() == Some(marker.as_str()))
                    .collect();
                let (_, extra) = split_duplicates(same, l.autotask_charge_id);
                out.extend(extra.into_iter().map(|c| Found {
                    doc: DuplicateDoc::AutotaskCharge(c),
                    line: Some(l.id),
                }));
            }
            Ok(out)
        }
    }
}

/// Voids a duplicate Xero invoice while it is unpaid (deletes a draft one), reading it again
/// first: one already voided or gone is done; one paid since the plan is refused (a validation
/// error: the entry fails for good, for ops to credit it in Xero). Returns what was done.
pub(super) async fn remove_xero_invoice(
    xero: &XeroClient,
    invoice_id: &str,
) -> Result<String, XeroError> {
    let now = match xero.get_invoice(invoice_id).await {
        Ok(r) => r,
        Err(XeroError::NotFound { .. }) => {
            return Ok(format!("Xero invoice {invoice_id} is gone already"));
        }
        Err(e) => return Err(e),
    };
    let state = now.state();
    if state.is_cancelled() {
        return Ok(format!(
            "Xero invoice {invoice_id} is {} already",
            now.status
        ));
    }
    if !now.is_editable() {
        return Err(XeroError::Validation(vec![format!(
            "duplicate Xero invoice {invoice_id} is {} with {} paid: Xero does not let it be voided; credit it in Xero",
            now.status, now.amount_paid
        )]));
    }
    let status = if state == InvoiceState::Authorised {
        "VOIDED"
    } else {
        "DELETED"
    };
    xero.set_invoice_status(
        invoice_id,
        status,
        &format!("rebill-duplicate-{invoice_id}"),
    )
    .await?;
    Ok(format!(
        "Xero invoice {invoice_id} {}",
        status.to_lowercase()
    ))
}

/// Deletes a duplicate Autotask charge of `line` while it is unbilled, reading the line's charges
/// again first: one gone already is done; one billed since the plan is refused (for good: ops
/// correct it in Autotask). Returns what was done.
pub(super) async fn remove_autotask_charge(
    autotask: &AutotaskClient,
    inv: &StoredInvoice,
    line: &StoredLine,
    charge_id: i64,
) -> Result<String, AutotaskError> {
    let coding = line.autotask.ok_or_else(|| {
        AutotaskError::Local(format!(
            "line {} of invoice {} has no Autotask coding",
            line.id, inv.number
        ))
    })?;
    let marker = autotask_marker(inv.period, inv.customer_id, &line.charge_key, 1);
    let Some(now) = autotask
        .charges_with_marker(coding.contract_id, &marker)
        .await?
        .into_iter()
        .find(|c| c.id == charge_id)
    else {
        return Ok(format!("Autotask charge {charge_id} is gone already"));
    };
    if now.is_billed {
        return Err(AutotaskError::Refused(vec![format!(
            "duplicate Autotask charge {charge_id} is billed: Autotask does not let it be deleted; correct it in Autotask"
        )]));
    }
    autotask.delete_unbilled_charge(&now).await?;
    Ok(format!("Autotask charge {charge_id} deleted"))
}

/// Carries out a `XeroRemoveDuplicate` entry: the duplicate is the entry's `remote_id`.
pub(super) async fn push_xero_removal(
    p: &Pipeline,
    e: &OutboxEntry,
    requested_at: DateTime<Utc>,
) -> Result<(LedgerEntry, RemoteEffect), PipelineError> {
    let xero = p
        .xero
        .as_ref()
        .ok_or_else(|| PipelineError::Refused("Xero is not configured".into()))?;
    let id = e.remote_id.clone().ok_or_else(|| {
        PipelineError::Refused(format!("outbox entry {} names no duplicate invoice", e.id))
    })?;
    let what = remove_xero_invoice(xero, &id).await?;
    let mut l = LedgerEntry::new(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
    l.remote_id = Some(id);
    l.remote_status = Some(what.clone());
    Ok((l, RemoteEffect::DuplicateRemoved { what }))
}

/// What the store queues for the duplicates of `invoice` a resync removes.
pub(super) fn removals(found: &[Found]) -> Vec<Removal> {
    found
        .iter()
        .map(|f| Removal {
            action: f.doc.action(),
            line: f.line,
            remote_id: f.doc.remote_id(),
            what: f.doc.describe(),
        })
        .collect()
}
