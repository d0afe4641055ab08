//! Bringing what is already in Xero or Autotask in line with changed local lines: the update
//! actions a resync records, carried out by the push. Xero: the invoice is edited while draft or
//! unpaid, else a credit note or an extra invoice; Autotask: the charge is patched while unbilled,
//! else a correcting charge.

use super::drafts::xero_draft_for;
use super::{Pipeline, PipelineError};
use crate::autotask::{AutotaskClient, AutotaskError, ChargeDraft};
use crate::domain::Money;
use crate::domain::{LedgerOutcome, RemoteSystem};
use crate::store::billing::{StoredInvoice, StoredLine};
use crate::store::outbox::{LedgerEntry, OutboxEntry, RemoteEffect};
use crate::xero::{InvoiceDraft, InvoiceOutcome, LineDraft};

/// The result of one remote update, for the ledger.
pub struct UpdateOutcome {
    pub charge_id: i64,
    pub what: String,
    pub amount: Money,
}

/// Brings one Autotask charge in line with its (changed or removed) line: PATCH while unbilled,
/// a correcting charge once billed; a line never pushed is created.
pub async fn push_autotask_update(
    autotask: &AutotaskClient,
    inv: &StoredInvoice,
    line: &StoredLine,
    mut draft: ChargeDraft,
) -> Result<UpdateOutcome, AutotaskError> {
    if line.removed {
        draft.unit_quantity = rust_decimal::Decimal::ZERO;
    }
    let amount = Money::new(draft.unit_price.amount() * draft.unit_quantity).round_cents();
    match autotask
        .find_charge_by_marker(draft.contract_id, &draft.marker)
        .await?
    {
        Some(existing) => {
            let change = autotask.update_or_correct_charge(&existing, &draft).await?;
            Ok(UpdateOutcome {
                charge_id: change.charge_id(),
                what: change.describe(),
                amount,
            })
        }
        None if line.removed => Ok(UpdateOutcome {
            charge_id: 0,
            what: format!("nothing to remove for {}", inv.number),
            amount,
        }),
        None => {
            let created = autotask.push_charge(&draft).await?;
            Ok(UpdateOutcome {
                charge_id: created.id,
                what: "created".into(),
                amount,
            })
        }
    }
}

/// Brings a created Xero invoice in line with its recorded lines.
pub async fn push_xero_update(
    p: &Pipeline,
    e: &OutboxEntry,
) -> Result<(LedgerEntry, RemoteEffect), PipelineError> {
    let xero = p
        .xero
        .as_ref()
        .ok_or_else(|| PipelineError::Refused("Xero is not configured".into()))?;
    let inv = p.store.invoice_by_id(e.invoice_id).await?;
    let requested_at = p.now();
    let remote_id = inv.xero_invoice_id.clone().ok_or_else(|| {
        PipelineError::Refused(format!("invoice {} is not in Xero yet", inv.number))
    })?;
    let remote = xero.get_invoice(&remote_id).await?;
    let draft = xero_draft_for(p, &inv).await?;
    let mut l = LedgerEntry::new(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
    l.remote_id = Some(remote_id.clone());
    if remote.is_editable() {
        let updated = xero
            .update_invoice(&remote_id, &draft, &e.idempotency_key)
            .await?;
        l.remote_status = Some(format!("updated ({})", updated.status));
        l.amount = Some(updated.sub_total);
        return Ok((
            l,
            RemoteEffect::XeroInvoice {
                invoice_id: updated.invoice_id,
                status: updated.status,
            },
        ));
    }
    let difference = inv.total() - remote.sub_total;
    if difference.is_zero() {
        l.remote_status = Some("no change needed".into());
        l.amount = Some(remote.sub_total);
        return Ok((l, RemoteEffect::None));
    }
    let adjustment = adjustment(p, &inv, &draft, difference, &e.idempotency_key).await?;
    l.remote_id = Some(adjustment.0);
    l.remote_status = Some(adjustment.1);
    l.amount = Some(difference);
    Ok((l, RemoteEffect::None))
}

/// Makes the adjustment for a Xero invoice that can no longer be edited: a credit note for a
/// decrease, an extra invoice for an increase. Returns the remote id and what was done.
async fn adjustment(
    p: &Pipeline,
    inv: &StoredInvoice,
    draft: &InvoiceDraft,
    difference: Money,
    key: &str,
) -> Result<(String, String), PipelineError> {
    let xero = p
        .xero
        .as_ref()
        .ok_or_else(|| PipelineError::Refused("Xero is not configured".into()))?;
    let first = draft.lines.first();
    let line = |description: String, amount: Money| LineDraft {
        description,
        quantity: rust_decimal::Decimal::ONE,
        unit_amount: amount.amount(),
        account_code: first.and_then(|l| l.account_code.clone()),
        tax_type: first.and_then(|l| l.tax_type.clone()),
        item_code: None,
    };
    let reference = format!("{}-ADJ{}", inv.number, inv.revision);
    if difference.is_negative() {
        let note = crate::xero::CreditNoteDraft {
            contact_id: draft.contact_id.clone(),
            reference: reference.clone(),
            date: p.now().with_timezone(&p.config.business.tz()).date_naive(),
            currency: inv.currency.clone(),
            lines: vec![line(
                format!(
                    "Credit: correction to invoice {} ({})",
                    inv.number, inv.period
                ),
                -difference,
            )],
        };
        let created = xero.create_credit_note(&note, key).await?;
        Ok((
            created.credit_note_id,
            format!("credit note {reference} for {}", -difference),
        ))
    } else {
        let extra = InvoiceDraft {
            reference: reference.clone(),
            invoice_number: None,
            lines: vec![line(
                format!(
                    "Additional charges for invoice {} ({})",
                    inv.number, inv.period
                ),
                difference,
            )],
            ..draft.clone()
        };
        let outcomes = xero
            .create_invoices(std::slice::from_ref(&extra), key)
            .await?;
        match outcomes.into_iter().next() {
            Some(InvoiceOutcome::Created(r)) => Ok((
                r.invoice_id,
                format!("extra invoice {reference} for {difference}"),
            )),
            Some(InvoiceOutcome::Invalid { messages, .. }) => {
                Err(PipelineError::Refused(messages.join("; ")))
            }
            None => Err(PipelineError::Refused("Xero returned no invoice".into())),
        }
    }
}
