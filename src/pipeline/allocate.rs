//! A voided invoice's credit notes allocated to what its Xero invoice still has due (the void's
//! part of `update`: a part-paid invoice credited in full must not be chased for the rest).

use super::drafts::{dates, xero};
use super::{Pipeline, PipelineError};
use crate::store::adjustments::AdjustmentKind;
use crate::store::billing::StoredInvoice;
use crate::store::outbox::OutboxEntry;

/// A voided invoice that was part paid still shows an amount due in Xero until its credit notes
/// are allocated to it: each is allocated up to what is due (what is left of the credit is what
/// the customer paid, for the accountant to refund). Xero is read first, so a retry after a lost
/// answer never allocates twice.
pub(super) async fn allocate_void_credit(
    p: &Pipeline,
    e: &OutboxEntry,
    inv: &StoredInvoice,
    remote_id: &str,
) -> Result<Vec<String>, PipelineError> {
    let xero = xero(p)?;
    let now = xero.get_invoice(remote_id).await?;
    let mut due = now.amount_due;
    let mut done = Vec::new();
    if !due.is_positive() || now.state().is_cancelled() {
        return Ok(done);
    }
    let (date, _) = dates(p, inv).await?;
    for a in p.store.adjustments(inv.id).await? {
        if a.kind != AdjustmentKind::CreditNote || a.is_cancelled() || !due.is_positive() {
            continue;
        }
        let note = xero.get_credit_note(&a.remote_id).await?;
        let amount = note.remaining_credit.min(due);
        if !amount.is_positive() {
            continue;
        }
        let key = format!("{}:allocate{}", e.idempotency_key, a.id);
        xero.allocate_credit_note(&a.remote_id, remote_id, amount, date, &key)
            .await?;
        due = due - amount;
        done.push(format!(
            "credit note {} allocated to the {amount} still due",
            a.reference
        ));
    }
    Ok(done)
}
