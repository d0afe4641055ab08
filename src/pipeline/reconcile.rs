//! `rebilld reconcile`: compare the ledger with what Xero and Autotask hold for a period — missing,
//! extra, amount or status differs — and report every difference. Per invoice, Xero's net (the
//! invoice and its extra invoices, less credit notes, each as Xero holds it now: paid, voided) and
//! Autotask's charges (each with its correcting charges) are compared with the local lines; the
//! statuses Xero reports are written back, so `invoice list` follows them.

use std::collections::BTreeMap;

use serde::Serialize;

use super::record::autotask_marker;
use super::{Pipeline, PipelineError};
use crate::domain::{ContractId, Money, OutboxAction, Period, RemoteSystem};
use crate::store::adjustments::AdjustmentKind;

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub system: RemoteSystem,
    pub kind: DifferenceKind,
    pub invoice: String,
    pub detail: String,
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
}

impl std::fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DifferenceKind::Missing => "missing",
            DifferenceKind::Extra => "extra",
            DifferenceKind::Amount => "amount",
            DifferenceKind::Status => "status",
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
        })
    };
    let mut charges_checked = 0;
    let mut contracts: BTreeMap<ContractId, Vec<(String, String, Money)>> = BTreeMap::new();
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
                contracts.entry(coding.contract_id).or_default().push((
                    inv.number.clone(),
                    marker,
                    amount,
                ));
            }
        }
    }
    if let Some(autotask) = &p.autotask {
        for (contract, expected) in &contracts {
            let remote = autotask
                .charges_of_contract(*contract, period.first_day())
                .await?;
            let prefix = format!("rb {period} ");
            let mut by_marker: BTreeMap<String, Money> = BTreeMap::new();
            for r in &remote {
                let Some(m) = r.marker.as_deref() else {
                    continue;
                };
                if !m.starts_with(&prefix) {
                    continue;
                }
                // Correcting charges carry the original marker plus a suffix: add them up.
                let base = m.split(" adj").next().unwrap_or(m).to_string();
                *by_marker.entry(base).or_default() +=
                    Money::new(r.unit_price.amount() * r.unit_quantity).round_cents();
            }
            for (number, marker, amount) in expected {
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
    Ok(ReconcileReport {
        period: period.to_string(),
        invoices_checked: checked,
        charges_checked,
        differences,
        skipped,
    })
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
                let billed: Money = autotask
                    .charges_with_marker(coding.contract_id, &marker)
                    .await?
                    .iter()
                    .map(|c| Money::new(c.unit_price.amount() * c.unit_quantity).round_cents())
                    .sum();
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
