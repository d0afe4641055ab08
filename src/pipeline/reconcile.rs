//! `rebilld reconcile`: compare the ledger with what Xero and Autotask hold for a period — missing,
//! extra, amount or status differs, or a document twice — and report every difference. Per invoice, Xero's net (the
//! invoice and its extra invoices, less credit notes, each as Xero holds it now: paid, voided) and
//! Autotask's charges (each with its correcting charges) are compared with the local lines; the
//! statuses Xero reports are written back, so `invoice list` follows them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::record::autotask_marker;
use super::{Pipeline, PipelineError};
use crate::autotask::RemoteCharge;
use crate::domain::{ContractId, Money, OutboxAction, Period, RemoteSystem};
use crate::store::adjustments::AdjustmentKind;
use crate::xero::InvoiceState;

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
}

fn charge_amount(c: &RemoteCharge) -> Money {
    Money::new(c.unit_price.amount() * c.unit_quantity).round_cents()
}

/// Of the charges carrying one line's exact marker, the one that counts (the ledger's, else the
/// first created) and the duplicates.
fn split_duplicates(
    mut same_marker: Vec<RemoteCharge>,
    known: Option<i64>,
) -> (Option<RemoteCharge>, Vec<RemoteCharge>) {
    same_marker.sort_by_key(|c| (Some(c.id) != known, c.id));
    let mut it = same_marker.into_iter();
    let kept = it.next();
    (kept, it.collect())
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
}

impl std::fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DifferenceKind::Missing => "missing",
            DifferenceKind::Extra => "extra",
            DifferenceKind::Amount => "amount",
            DifferenceKind::Status => "status",
            DifferenceKind::Duplicate => "duplicate",
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

pub async fn reconcile(p: &Pipeline, period: Period) -> Result<ReconcileReport, PipelineError> {
    let invoices = p.store.invoices(Some(period), None).await?;
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
            let Some(xero) = &p.xero else { continue };
            checked += 1;
            let Some(id) = &inv.xero_invoice_id else {
                // Voided before it was sent: its create was cancelled, Xero owes nothing of it.
                if create_skipped(None) || inv.voided.is_some() {
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
            match xero.get_invoice(id).await {
                Ok(remote) => {
                    // Follow Xero: `invoice list` shows PAID (or VOIDED) once Xero says so.
                    p.store
                        .set_invoice_xero_status(inv.id, &remote.status)
                        .await?;
                    if let Some((kind, why)) = xero_difference(p, xero, inv, &remote).await? {
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
                    for d in xero_duplicates(xero, &inv.number, id).await? {
                        duplicates.push(duplicate(RemoteSystem::Xero, &inv.number, d));
                    }
                }
                Err(crate::xero::XeroError::NotFound { .. }) => diff(
                    RemoteSystem::Xero,
                    DifferenceKind::Missing,
                    &inv.number,
                    format!("Xero has no invoice {id}"),
                ),
                Err(e) => return Err(e.into()),
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
    if let Some(autotask) = &p.autotask {
        for (contract, expected) in &contracts {
            let remote = autotask
                .charges_of_contract(*contract, period.first_day())
                .await?;
            let prefix = format!("rb {period} ");
            // Per original marker: the charges carrying it exactly, and its correcting charges'
            // total (their markers carry the original plus a suffix).
            let mut originals: BTreeMap<String, Vec<RemoteCharge>> = BTreeMap::new();
            let mut corrections: BTreeMap<String, Money> = BTreeMap::new();
            for r in &remote {
                let Some(m) = r.marker.as_deref() else {
                    continue;
                };
                if !m.starts_with(&prefix) {
                    continue;
                }
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
                let (kept, extra) =
                    split_duplicates(same, known.get(marker.as_str()).copied().flatten());
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
                charges_checked += 1;
                match by_marker.remove(marker) {
                    None if amount.is_zero() => {}
                    None => diff(
                        RemoteSystem::Autotask,
                        DifferenceKind::Missing,
                        number,
                        format!("no charge {marker:?} on contract {contract}"),
                    ),
                    Some(remote) if remote != *amount => diff(
                        RemoteSystem::Autotask,
                        DifferenceKind::Amount,
                        number,
                        format!(
                            "charge {marker:?} totals {remote} in Autotask but {amount} in the ledger"
                        ),
                    ),
                    Some(_) => {}
                }
            }
            for (marker, amount) in by_marker {
                // A charge with our marker that the ledger does not hold: an orphan.
                diff(
                    RemoteSystem::Autotask,
                    DifferenceKind::Extra,
                    "-",
                    format!(
                        "charge {marker:?} ({amount}) on contract {contract} is not in the ledger"
                    ),
                );
            }
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

/// The live Xero invoices with `reference` other than the ledger's `ledger_id`.
async fn xero_duplicates(
    xero: &crate::xero::XeroClient,
    reference: &str,
    ledger_id: &str,
) -> Result<Vec<DuplicateDoc>, PipelineError> {
    Ok(xero
        .invoices_with_reference(reference)
        .await?
        .into_iter()
        .filter(|r| r.invoice_id != ledger_id)
        .map(|r| DuplicateDoc::XeroInvoice {
            invoice_id: r.invoice_id,
            reference: r.reference,
            status: r.status,
            sub_total: r.sub_total,
            amount_paid: r.amount_paid,
        })
        .collect())
}

/// The duplicates of one invoice's documents (what reconcile reports as `Duplicate`), for a
/// resync's plan.
pub(super) async fn duplicates(
    p: &Pipeline,
    inv: &crate::store::billing::StoredInvoice,
) -> Result<Vec<DuplicateDoc>, PipelineError> {
    match inv.destination {
        RemoteSystem::Xero => match (&p.xero, &inv.xero_invoice_id) {
            (Some(xero), Some(id)) => xero_duplicates(xero, &inv.number, id).await,
            _ => Ok(Vec::new()),
        },
        RemoteSystem::Autotask => {
            let Some(autotask) = &p.autotask else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for l in p.store.invoice_lines(inv.id).await? {
                let Some(coding) = l.autotask else { continue };
                let marker = autotask_marker(inv.period, inv.customer_id, &l.charge_key, 1);
                let same: Vec<RemoteCharge> = autotask
                    .charges_with_marker(coding.contract_id, &marker)
                    .await?
                    .into_iter()
                    .filter(|c| c.marker.as_deref() == Some(marker.as_str()))
                    .collect();
                let (_, extra) = split_duplicates(same, l.autotask_charge_id);
                out.extend(extra.into_iter().map(DuplicateDoc::AutotaskCharge));
            }
            Ok(out)
        }
    }
}

/// Removes a duplicate while the remote allows it: voids an unpaid Xero invoice (deletes a draft
/// one), deletes an unbilled Autotask charge. Returns what was done. The remote is read again
/// first: a duplicate paid or billed since the plan is left alone, and one already gone is done.
pub(super) async fn remove_duplicate(
    p: &Pipeline,
    d: &DuplicateDoc,
) -> Result<String, PipelineError> {
    match d {
        DuplicateDoc::XeroInvoice { invoice_id, .. } => {
            let xero = p.xero.as_ref().ok_or_else(|| {
                PipelineError::Refused("Xero is not configured: the duplicate stays".into())
            })?;
            let now = match xero.get_invoice(invoice_id).await {
                Ok(r) => r,
                Err(crate::xero::XeroError::NotFound { .. }) => {
                    return Ok(format!("Xero invoice {invoice_id} is gone already"));
                }
                Err(e) => return Err(e.into()),
            };
            let state = now.state();
            if state.is_cancelled() {
                return Ok(format!(
                    "Xero invoice {invoice_id} is {} already",
                    now.status
                ));
            }
            if !now.is_editable() {
                return Err(PipelineError::Refused(format!(
                    "duplicate Xero invoice {invoice_id} is {} with {} paid: Xero does not let it be voided; credit it in Xero",
                    now.status, now.amount_paid
                )));
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
        DuplicateDoc::AutotaskCharge(c) => {
            let autotask = p.autotask.as_ref().ok_or_else(|| {
                PipelineError::Refused("Autotask is not configured: the duplicate stays".into())
            })?;
            let contract = ContractId::new(c.contract_id)
                .map_err(|e| PipelineError::Refused(format!("charge {}: contract {e}", c.id)))?;
            let marker = c.marker.clone().unwrap_or_default();
            let Some(now) = autotask
                .charges_with_marker(contract, &marker)
                .await?
                .into_iter()
                .find(|x| x.id == c.id)
            else {
                return Ok(format!("Autotask charge {} is gone already", c.id));
            };
            autotask.delete_unbilled_charge(&now).await?;
            Ok(format!("Autotask charge {} deleted", c.id))
        }
    }
}

/// How Xero's documents for one invoice differ from the ledger, if they do. The net of the invoice
/// (unless voided or deleted), its extra invoices (likewise) less its credit notes (unless voided),
/// ex tax, must equal the local total; with no adjustment, Xero's Total with tax is checked too. A
/// difference names the lines that differ.
async fn xero_difference(
    p: &Pipeline,
    xero: &crate::xero::XeroClient,
    inv: &crate::store::billing::StoredInvoice,
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
            AdjustmentKind::ExtraInvoice => match xero.get_invoice(&a.remote_id).await {
                Ok(r) => (r.status.clone(), r.sub_total),
                Err(crate::xero::XeroError::NotFound { .. }) => {
                    ("DELETED".to_string(), Money::ZERO)
                }
                Err(e) => return Err(e.into()),
            },
            _ => match xero.get_credit_note(&a.remote_id).await {
                Ok(n) => (n.status.clone(), -n.sub_total),
                Err(crate::xero::XeroError::NotFound { .. }) => {
                    ("DELETED".to_string(), Money::ZERO)
                }
                Err(e) => return Err(e.into()),
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
/// documents drifted (what reconcile reports): a Xero update (edit while unpaid, else adjust) and,
/// per Autotask line whose charges no longer total its amount, an update (create, patch or
/// correct). Each with the reason, for the plan.
pub(super) async fn drift(
    p: &Pipeline,
    inv: &crate::store::billing::StoredInvoice,
) -> Result<
    Vec<(
        crate::domain::OutboxAction,
        Option<crate::domain::LineId>,
        String,
    )>,
    PipelineError,
> {
    use crate::domain::OutboxAction;
    let mut out = Vec::new();
    match inv.destination {
        RemoteSystem::Xero => {
            let (Some(xero), Some(id)) = (&p.xero, &inv.xero_invoice_id) else {
                return Ok(out);
            };
            let remote = match xero.get_invoice(id).await {
                Ok(r) => r,
                Err(crate::xero::XeroError::NotFound { .. }) => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            if let Some((_, why)) = xero_difference(p, xero, inv, &remote).await? {
                out.push((OutboxAction::XeroUpdate, None, why));
            }
        }
        RemoteSystem::Autotask => {
            let Some(autotask) = &p.autotask else {
                return Ok(out);
            };
            for l in p.store.invoice_lines(inv.id).await? {
                let Some(coding) = l.autotask else { continue };
                let marker = autotask_marker(inv.period, inv.customer_id, &l.charge_key, 1);
                // A duplicate is not a drift: a resync removes it on its own.
                let (same, corrections): (Vec<RemoteCharge>, Vec<RemoteCharge>) = autotask
                    .charges_with_marker(coding.contract_id, &marker)
                    .await?
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
