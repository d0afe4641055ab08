//! `rebilld reconcile`: compare the ledger with what Xero and Autotask hold for a period — missing,
//! extra, amount or status differs — and report every difference.

use std::collections::BTreeMap;

use serde::Serialize;

use super::record::autotask_marker;
use super::{Pipeline, PipelineError};
use crate::domain::{ContractId, Money, Period, RemoteSystem};

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
    for inv in &invoices {
        if inv.destination == RemoteSystem::Xero {
            let Some(xero) = &p.xero else { continue };
            checked += 1;
            let Some(id) = &inv.xero_invoice_id else {
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
                    let with_tax = p.total_with_tax(inv).await?;
                    if let Some(why) =
                        super::drafts::total_difference(&remote, inv.total(), with_tax)
                    {
                        diff(RemoteSystem::Xero, DifferenceKind::Amount, &inv.number, why);
                    }
                    if remote.state().is_cancelled() {
                        diff(
                            RemoteSystem::Xero,
                            DifferenceKind::Status,
                            &inv.number,
                            format!("Xero status is {}", remote.status),
                        );
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
            for l in p
                .store
                .invoice_lines(inv.id)
                .await?
                .iter()
                .filter(|l| !l.removed)
            {
                let Some(coding) = l.autotask else {
                    continue;
                };
                let marker = autotask_marker(inv.period, inv.customer_id, &l.charge_key, 1);
                contracts.entry(coding.contract_id).or_default().push((
                    inv.number.clone(),
                    marker,
                    l.amount(),
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
    })
}
