//! What Xero and Autotask hold for some of a period's invoices, read in bulk once before anything
//! is compared: reconcile and a resync's plan look each document up here instead of asking the
//! remote per invoice, per adjustment or per line. What it costs:
//! - Xero: one read per 100 References (`where Reference=="…" OR …`), which finds each ledger
//!   invoice and any second invoice with its Reference; one `IDs=` read per 100 ids for what the
//!   References did not find (extra invoices, an invoice whose Reference was edited in Xero); one
//!   read per 50 credit notes. Each read pages by 100.
//! - Autotask: one query per 200 contracts for every charge whose marker begins with the period's
//!   prefix (`rb 2026-11 `): originals, correcting charges and duplicates alike.
//!
//! A remote that is not configured is not read (its documents are simply absent).

use std::collections::{BTreeSet, HashMap};

use super::{Pipeline, PipelineError};
use crate::autotask::RemoteCharge;
use crate::domain::{ContractId, Period, RemoteSystem};
use crate::store::adjustments::AdjustmentKind;
use crate::store::billing::StoredInvoice;
use crate::xero::{InvoiceState, RemoteCreditNote, RemoteInvoice};

#[derive(Debug, Default)]
pub(super) struct RemoteView {
    /// Xero invoices by InvoiceID, whatever their status.
    invoices: HashMap<String, RemoteInvoice>,
    /// InvoiceIDs per Reference, in the order Xero listed them.
    by_reference: HashMap<String, Vec<String>>,
    credit_notes: HashMap<String, RemoteCreditNote>,
    /// The period's marked charges, by contract, in the order Autotask listed them.
    charges: HashMap<i64, Vec<RemoteCharge>>,
}

impl RemoteView {
    /// Reads what the remotes hold for `invoices` (all of `period`).
    pub(super) async fn read(
        p: &Pipeline,
        period: Period,
        invoices: &[StoredInvoice],
    ) -> Result<Self, PipelineError> {
        let mut view = RemoteView::default();
        if let Some(xero) = &p.xero {
            let in_xero: Vec<&StoredInvoice> = invoices
                .iter()
                .filter(|i| i.destination == RemoteSystem::Xero && i.xero_invoice_id.is_some())
                .collect();
            let references: Vec<String> = in_xero.iter().map(|i| i.number.clone()).collect();
            for r in xero.invoices_with_references(&references).await? {
                view.add_invoice(r);
            }
            let (mut ids, mut notes) = (Vec::new(), Vec::new());
            for inv in &in_xero {
                ids.extend(inv.xero_invoice_id.clone());
                for a in p.store.adjustments(inv.id).await? {
                    match a.kind {
                        AdjustmentKind::ExtraInvoice => ids.push(a.remote_id),
                        AdjustmentKind::CreditNote => notes.push(a.remote_id),
                        AdjustmentKind::CorrectingCharge => {}
                    }
                }
            }
            ids.retain(|id| !view.invoices.contains_key(id));
            ids.sort();
            ids.dedup();
            for r in xero.invoices_by_ids(&ids).await? {
                view.add_invoice(r);
            }
            notes.sort();
            notes.dedup();
            for n in xero.credit_notes_by_ids(&notes).await? {
                view.credit_notes.insert(n.credit_note_id.clone(), n);
            }
        }
        if let Some(autotask) = &p.autotask {
            let mut contracts = BTreeSet::new();
            for inv in invoices
                .iter()
                .filter(|i| i.destination == RemoteSystem::Autotask)
            {
                for l in p.store.invoice_lines(inv.id).await? {
                    contracts.extend(l.autotask.map(|c| c.contract_id));
                }
            }
            let contracts: Vec<ContractId> = contracts.into_iter().collect();
            let prefix = format!("rb {period} ");
            for c in autotask
                .charges_with_marker_prefix(&contracts, &prefix)
                .await?
            {
                view.charges.entry(c.contract_id).or_default().push(c);
            }
        }
        Ok(view)
    }

    fn add_invoice(&mut self, r: RemoteInvoice) {
        if self.invoices.contains_key(&r.invoice_id) {
            return;
        }
        self.by_reference
            .entry(r.reference.clone())
            .or_default()
            .push(r.invoice_id.clone());
        self.invoices.insert(r.invoice_id.clone(), r);
    }

    /// The Xero invoice with this id; `None` when Xero has none.
    pub(super) fn invoice(&self, id: &str) -> Option<&RemoteInvoice> {
        self.invoices.get(id)
    }

    /// The live (not voided or deleted) Xero invoices whose Reference is `reference`.
    pub(super) fn live_with_reference(&self, reference: &str) -> Vec<&RemoteInvoice> {
        self.by_reference
            .get(reference)
            .into_iter()
            .flatten()
            .filter_map(|id| self.invoices.get(id))
            .filter(|r| !InvoiceState::parse(&r.status).is_cancelled())
            .collect()
    }

    /// The Xero credit note with this id; `None` when Xero has none.
    pub(super) fn credit_note(&self, id: &str) -> Option<&RemoteCreditNote> {
        self.credit_notes.get(id)
    }

    /// The period's marked charges on a contract.
    pub(super) fn charges_of_contract(&self, contract: ContractId) -> &[RemoteCharge] {
        self.charges
            .get(&contract.get())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// A line's charges on a contract: the ones with exactly `marker`, and its correcting charges
    /// (`marker` + " adj…"), as `AutotaskClient::charges_with_marker` answers.
    pub(super) fn charges_with_marker(
        &self,
        contract: ContractId,
        marker: &str,
    ) -> Vec<RemoteCharge> {
        let adj = format!("{marker} adj");
        self.charges_of_contract(contract)
            .iter()
            .filter(|c| {
                c.marker
                    .as_deref()
                    .is_some_and(|m| m == marker || m.starts_with(&adj))
            })
            .cloned()
            .collect()
    }
}
