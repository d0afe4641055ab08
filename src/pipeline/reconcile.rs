//! `rebilld reconcile`: compare the ledger with what Xero and Autotask hold for a period — missing,
//! extra, amount or status differs, a document twice, an email twice — and report every
//! difference. Per invoice, Xero's net (the invoice and its extra invoices, less credit notes, each
//! as Xero holds it now: paid, voided) and Autotask's charges (each with its correcting charges)
//! are compared with the local lines; the statuses Xero reports are written back, so `invoice
//! list` follows them.
//!
//! Everything is read in bulk first (`remote_view`): a period of N Xero invoices costs about N/100
//! Xero requests, not one or more per invoice. Emails are the exception: only an invoice's History
//! says how often it was emailed, one request per invoice, so reconcile reads it only where the
//! ledger says an email's outcome was ever in doubt, or, with `--emails`, for every invoice Xero
//! says was sent (`EmailCheck`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::duplicates::{DuplicateDoc, charge_amount, split_duplicates, xero_duplicates};
use super::record::autotask_marker;
use super::remote_view::RemoteView;
use super::{Pipeline, PipelineError};
use crate::autotask::RemoteCharge;
use crate::domain::{ContractId, LedgerOutcome, Money, OutboxAction, Period, RemoteSystem};
use crate::store::adjustments::AdjustmentKind;
use crate::store::billing::StoredInvoice;

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub system: RemoteSystem,
    pub kind: DifferenceKind,
    pub invoice: String,
    pub detail: String,
    /// For a `Duplicate`: the second document, which a resync removes while the remote allows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<DuplicateDoc>,
}

/// What kind of difference reconcile found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    /// In the ledger, not in the remote system.
    Missing,
    /// In the remote system, not in the ledger.
    Extra,
    /// In both, with different amounts.
    Amount,
    /// In both, in a state that no longer bills (voided, deleted) or under another reference.
    Status,
    /// Two documents for one Reference (Xero) or one marker (Autotask): the second is extra.
    Duplicate,
    /// An invoice emailed more often (Xero's History) than the ledger sent it.
    DuplicateEmail,
}

impl std::fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DifferenceKind::Missing => "missing",
            DifferenceKind::Extra => "extra",
            DifferenceKind::Amount => "amount",
            DifferenceKind::Status => "status",
            DifferenceKind::Duplicate => "duplicate",
            DifferenceKind::DuplicateEmail => "duplicate email",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub period: String,
    pub invoices_checked: usize,
    pub charges_checked: usize,
    pub differences: Vec<Difference>,
    /// Actions ops skipped (`outbox skip`): shown as such, not as differences. A skipped create
    /// is expected to be absent remotely.
    pub skipped: Vec<Skipped>,
}

/// One skipped action of the period, as reconcile reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub invoice: String,
    pub outbox_id: crate::domain::OutboxId,
    pub action: crate::domain::OutboxAction,
    pub skipped_by: String,
    pub reason: String,
}

impl ReconcileReport {
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty()
    }
}

/// Which invoices reconcile reads the History of, to count their emails (one request each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EmailCheck {
    /// Only invoices whose email's outcome was ever in doubt (an attempt that failed or whose
    /// answer was lost, more than one attempt, an email found already sent): the only ones this
    /// program can have emailed twice. Usually none, so reconcile stays a few bulk reads.
    #[default]
    InDoubt,
    /// Every invoice Xero says was sent (`--emails`): also finds a second email sent by hand or
    /// by another program, at one request per invoice.
    All,
}

/// How thorough a reconcile is.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReconcileOptions {
    pub emails: EmailCheck,
}

/// Reconciles `period` with the default options (emails checked only where in doubt).
pub async fn reconcile(p: &Pipeline, period: Period) -> Result<ReconcileReport, PipelineError> {
    reconcile_with(p, period, ReconcileOptions::default()).await
}

pub async fn reconcile_with(
    p: &Pipeline,
    period: Period,
    options: ReconcileOptions,
) -> Result<ReconcileReport, PipelineError> {
    let invoices = p.store.invoices(Some(period), None).await?;
    let view = RemoteView::read(p, period, &invoices).await?;
    let mut differences: Vec<Difference> = Vec::new();
    let mut diff = |system, kind, invoice: &str, detail: String| {
        differences.push(Difference {
            system,
            kind,
            invoice: invoice.to_string(),
            detail,
            duplicate: None,
        })
    };
    let mut duplicates: Vec<Difference> = Vec::new();
    let mut charges_checked = 0;
    let mut contracts: BTreeMap<ContractId, Vec<Expected>> = BTreeMap::new();
    let mut checked = 0;
    let mut skipped = Vec::new();
    for inv in &invoices {
        let skips = p.store.skipped_actions(inv.id).await?;
        let create_skipped = |line: Option<crate::domain::LineId>| {
            skips.iter().any(|s| {
                s.line_id == line
                    && matches!(
                        s.action,
                        OutboxAction::XeroInvoice | OutboxAction::AutotaskCharge
                    )
            })
        };
        skipped.extend(skips.iter().map(|s| Skipped {
            invoice: inv.number.clone(),
            outbox_id: s.outbox_id,
            action: s.action,
            skipped_by: s.skipped_by.clone(),
            reason: s.reason.clone(),
        }));
        if inv.destination == RemoteSystem::Xero {
            if p.xero.is_none() {
                continue;
            }
            checked += 1;
            let Some(id) = &inv.xero_invoice_id else {
                if create_skipped(None) {
                    continue;
                }
                diff(
                    RemoteSystem::Xero,
                    DifferenceKind::Missing,
                    &inv.number,
                    "not yet created in Xero (see `rebilld status`)".into(),
                );
                continue;
            };
            let Some(remote) = view.invoice(id) else {
                diff(
                    RemoteSystem::Xero,
                    DifferenceKind::Missing,
                    &inv.number,
                    format!("Xero has no invoice {id}"),
                );
                continue;
            };
            // Follow Xero: `invoice list` shows PAID (or VOIDED) once Xero says so.
            p.store
                .set_invoice_xero_status(inv.id, &remote.status)
                .await?;
            if let Some((kind, why)) = xero_difference(p, &view, inv, remote).await? {
                diff(RemoteSystem::Xero, kind, &inv.number, why);
            }
            if remote.reference != inv.number {
                diff(
                    RemoteSystem::Xero,
                    DifferenceKind::Status,
                    &inv.number,
                    format!("Xero reference is {:?}", remote.reference),
                );
            }
            for d in xero_duplicates(&view, &inv.number, id) {
                duplicates.push(duplicate(RemoteSystem::Xero, &inv.number, d));
            }
            if let Some(why) = second_email(p, inv, remote, options.emails).await? {
                duplicates.push(Difference {
                    system: RemoteSystem::Xero,
                    kind: DifferenceKind::DuplicateEmail,
                    invoice: inv.number.clone(),
                    detail: why,
                    duplicate: None,
                });
            }
        } else {
            // Removed lines are expected at 0.00: a charge deleted, or corrected to nothing.
            for l in p.store.invoice_lines(inv.id).await?.iter() {
                let Some(coding) = l.autotask else {
                    continue;
                };
                let marker = autotask_marker(inv.period, inv.customer_id, &l.charge_key, 1);
                let amount = if l.removed
                    || (l.autotask_charge_id.is_none() && create_skipped(Some(l.id)))
                {
                    Money::ZERO
                } else {
                    l.amount()
                };
                contracts
                    .entry(coding.contract_id)
                    .or_default()
                    .push(Expected {
                        invoice: inv.number.clone(),
                        marker,
                        amount,
                        charge_id: l.autotask_charge_id,
                    });
            }
        }
    }
    if p.autotask.is_some() {
        for (contract, expected) in &contracts {
            let (found, dups) = autotask_contract(&view, *contract, expected);
            charges_checked += expected.len();
            differences.extend(found);
            duplicates.extend(dups);
        }
    }
    differences.extend(duplicates);
    Ok(ReconcileReport {
        period: period.to_string(),
        invoices_checked: checked,
        charges_checked,
        differences,
        skipped,
    })
}

/// One contract's charges against what the ledger expects on it: the differences, and the
/// duplicates (a second charge with one line's marker).
fn autotask_contract(
    view: &RemoteView,
    contract: ContractId,
    expected: &[Expected],
) -> (Vec<Difference>, Vec<Difference>) {
    let mut differences = Vec::new();
    let mut duplicates = Vec::new();
    let mut diff = |kind, invoice: &str, detail: String| {
        differences.push(Difference {
            system: RemoteSystem::Autotask,
            kind,
            invoice: invoice.to_string(),
            detail,
            duplicate: None,
        })
    };
    // Per original marker: the charges carrying it exactly, and its correcting charges' total
    // (their markers carry the original plus a suffix).
    let mut originals: BTreeMap<String, Vec<RemoteCharge>> = BTreeMap::new();
    let mut corrections: BTreeMap<String, Money> = BTreeMap::new();
    for r in view.charges_of_contract(contract) {
        let Some(m) = r.marker.as_deref() else {
            continue;
        };
        let base = m.split(" adj").next().unwrap_or(m).to_string();
        if base == m {
            originals.entry(base).or_default().push(r.clone());
        } else {
            *corrections.entry(base).or_default() += charge_amount(r);
        }
    }
    let known: BTreeMap<&str, Option<i64>> = expected
        .iter()
        .map(|e| (e.marker.as_str(), e.charge_id))
        .collect();
    let mut by_marker: BTreeMap<String, Money> = corrections;
    for (marker, same) in originals {
        let invoice = expected
            .iter()
            .find(|e| e.marker == marker)
            .map(|e| e.invoice.clone())
            .unwrap_or_else(|| "-".into());
        let (kept, extra) = split_duplicates(same, known.get(marker.as_str()).copied().flatten());
        for c in extra {
            duplicates.push(duplicate(
                RemoteSystem::Autotask,
                &invoice,
                DuplicateDoc::AutotaskCharge(c),
            ));
        }
        if let Some(c) = kept {
            *by_marker.entry(marker).or_default() += charge_amount(&c);
        }
    }
    for Expected {
        invoice: number,
        marker,
        amount,
        ..
    } in expected
    {
        match by_marker.remove(marker) {
            None if amount.is_zero() => {}
            None => diff(
                DifferenceKind::Missing,
                number,
                format!("no charge {marker:?} on contract {contract}"),
            ),
            Some(remote) if remote != *amount => diff(
                DifferenceKind::Amount,
                number,
                format!("charge {marker:?} totals {remote} in Autotask but {amount} in the ledger"),
            ),
            Some(_) => {}
        }
    }
    for (marker, amount) in by_marker {
        // A charge with our marker that the ledger does not hold: an orphan.
        diff(
            DifferenceKind::Extra,
            "-",
            format!("charge {marker:?} ({amount}) on contract {contract} is not in the ledger"),
        );
    }
    (differences, duplicates)
}

/// What one line of a ledger's Autotask invoice expects on its contract.
struct Expected {
    invoice: String,
    marker: String,
    amount: Money,
    charge_id: Option<i64>,
}

fn duplicate(system: RemoteSystem, invoice: &str, d: DuplicateDoc) -> Difference {
    let detail = match d.why_kept() {
        None => format!("{}; a resync removes it", d.describe()),
        Some(why) => format!("{}; {why}", d.describe()),
    };
    Difference {
        system,
        kind: DifferenceKind::Duplicate,
        invoice: invoice.to_string(),
        detail,
        duplicate: Some(d),
    }
}

/// Whether Xero's History shows the invoice emailed more often than the ledger sent it (each
/// `invoice email` is one more send the ledger expects), for the invoices `check` reads.
async fn second_email(
    p: &Pipeline,
    inv: &StoredInvoice,
    remote: &crate::xero::RemoteInvoice,
    check: EmailCheck,
) -> Result<Option<String>, PipelineError> {
    let Some(xero) = &p.xero else {
        return Ok(None);
    };
    let ledger = p.store.ledger(Some(inv.id)).await?;
    let emails: Vec<_> = ledger
        .iter()
        .filter(|r| r.action == OutboxAction::XeroEmail)
        .collect();
    let sent = emails
        .iter()
        .filter(|r| {
            r.outcome == LedgerOutcome::Ok
                && r.remote_status
                    .as_deref()
                    .is_some_and(|s| s.starts_with("emailed"))
        })
        .count();
    let in_doubt = || async {
        let doubtful_row = emails.iter().any(|r| {
            r.outcome != LedgerOutcome::Ok
                || r.remote_status
                    .as_deref()
                    .is_some_and(|s| s.contains("found sent"))
        });
        let retried = p.store.outbox(Some(inv.id)).await?.iter().any(|e| {
            e.action == OutboxAction::XeroEmail && (e.attempts > 1 || e.uncertain_since.is_some())
        });
        Ok::<bool, PipelineError>(doubtful_row || retried)
    };
    let read = match check {
        EmailCheck::All => remote.sent_to_contact || sent > 0,
        EmailCheck::InDoubt => in_doubt().await?,
    };
    if !read {
        return Ok(None);
    }
    let history = xero.invoice_history(&remote.invoice_id).await?;
    let emailed = history.iter().filter(|h| h.is_email()).count();
    Ok((emailed > sent).then(|| {
        format!(
            "Xero's history shows invoice {} emailed {emailed} time(s), the ledger sent it {sent} time(s): a second email reached the customer",
            remote.invoice_id
        )
    }))
}

/// How Xero's documents for one invoice differ from the ledger, if they do. The net of the invoice
/// (unless voided or deleted), its extra invoices (likewise) less its credit notes (unless voided),
/// ex tax, must equal the local total; with no adjustment, Xero's Total with tax is checked too. A
/// difference names the lines that differ.
async fn xero_difference(
    p: &Pipeline,
    view: &RemoteView,
    inv: &StoredInvoice,
    remote: &crate::xero::RemoteInvoice,
) -> Result<Option<(DifferenceKind, String)>, PipelineError> {
    let lines = p.store.invoice_lines(inv.id).await?;
    let adjustments: Vec<_> = p
        .store
        .adjustments(inv.id)
        .await?
        .into_iter()
        .filter(|a| a.kind != AdjustmentKind::CorrectingCharge)
        .collect();
    let cancelled = remote.state().is_cancelled();
    let mut net = if cancelled {
        Money::ZERO
    } else {
        remote.sub_total
    };
    let mut billed = super::update::original(remote, &lines);
    for a in &adjustments {
        let (status, sub_total) = match a.kind {
            AdjustmentKind::ExtraInvoice => match view.invoice(&a.remote_id) {
                Some(r) => (r.status.clone(), r.sub_total),
                None => ("DELETED".to_string(), Money::ZERO),
            },
            _ => match view.credit_note(&a.remote_id) {
                Some(n) => (n.status.clone(), -n.sub_total),
                None => ("DELETED".to_string(), Money::ZERO),
            },
        };
        if status != a.status && !status.is_empty() {
            p.store
                .set_adjustment_status(a.id, &status, p.now())
                .await?;
        }
        if !crate::xero::InvoiceState::parse(&status).is_cancelled() {
            net += sub_total;
            super::update::add(&mut billed, a);
        }
    }
    if cancelled && !inv.total().is_zero() {
        return Ok(Some((
            DifferenceKind::Status,
            format!(
                "Xero status is {}: it bills nothing, but the ledger says {}",
                remote.status,
                inv.total()
            ),
        )));
    }
    if net != inv.total() {
        let owed = super::update::owed(&lines);
        let keys: std::collections::BTreeSet<&String> = owed.keys().chain(billed.keys()).collect();
        let lines: Vec<String> = keys
            .into_iter()
            .filter_map(|k| {
                let o = owed.get(k).map(|x| x.amount).unwrap_or_default();
                let b = billed.get(k).map(|x| x.amount).unwrap_or_default();
                let name = owed.get(k).or_else(|| billed.get(k))?.description.clone();
                (o != b).then(|| format!("{name}: Xero {b}, ledger {o}"))
            })
            .collect();
        let what = if adjustments.is_empty() {
            format!(
                "Xero subtotal (ex tax) {net} but the local total is {}",
                inv.total()
            )
        } else {
            format!(
                "Xero nets {net} (invoice, extra invoices less credit notes, ex tax) but the local total is {}",
                inv.total()
            )
        };
        let detail = if lines.is_empty() {
            what
        } else {
            format!("{what} ({})", lines.join("; "))
        };
        return Ok(Some((DifferenceKind::Amount, detail)));
    }
    if adjustments.is_empty() && !cancelled {
        let with_tax = p.total_with_tax(inv).await?;
        if let Some(why) = super::drafts::total_difference(remote, inv.total(), with_tax) {
            return Ok(Some((DifferenceKind::Amount, why)));
        }
    }
    Ok(None)
}

/// What a resync must send again to repair an invoice whose lines did not change but whose remote
/// documents drifted (what reconcile reports), as the view shows them: a Xero update (edit while
/// unpaid, else adjust) and, per Autotask line whose charges no longer total its amount, an update
/// (create, patch or correct). Each with the reason, for the plan.
pub(super) async fn drift(
    p: &Pipeline,
    view: &RemoteView,
    inv: &StoredInvoice,
) -> Result<Vec<(OutboxAction, Option<crate::domain::LineId>, String)>, PipelineError> {
    let mut out = Vec::new();
    match inv.destination {
        RemoteSystem::Xero => {
            let (Some(_), Some(id)) = (&p.xero, &inv.xero_invoice_id) else {
                return Ok(out);
            };
            let Some(remote) = view.invoice(id) else {
                return Ok(out);
            };
            if let Some((_, why)) = xero_difference(p, view, inv, remote).await? {
                out.push((OutboxAction::XeroUpdate, None, why));
            }
        }
        RemoteSystem::Autotask => {
            if p.autotask.is_none() {
                return Ok(out);
            }
            for l in p.store.invoice_lines(inv.id).await? {
                let Some(coding) = l.autotask else { continue };
                let marker = autotask_marker(inv.period, inv.customer_id, &l.charge_key, 1);
                // A duplicate is not a drift: a resync removes it on its own.
                let (same, corrections): (Vec<RemoteCharge>, Vec<RemoteCharge>) = view
                    .charges_with_marker(coding.contract_id, &marker)
                    .into_iter()
                    .partition(|c| c.marker.as_deref() == Some(marker.as_str()));
                let (kept, _) = split_duplicates(same, l.autotask_charge_id);
                let billed: Money = kept.iter().chain(&corrections).map(charge_amount).sum();
                let owed = if l.removed { Money::ZERO } else { l.amount() };
                if billed != owed {
                    out.push((
                        OutboxAction::AutotaskUpdate,
                        Some(l.id),
                        format!(
                            "{}: Autotask bills {billed}, the ledger {owed}",
                            l.description
                        ),
                    ));
                }
            }
        }
    }
    Ok(out)
}
