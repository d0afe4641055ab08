//! Bringing what is already in Xero or Autotask in line with changed local lines: the update
//! actions a resync records, carried out by the push.
//!
//! Xero: the invoice is edited while draft or unpaid (voided or deleted when every line was taken
//! away: never an update without lines); once paid, each line is adjusted by what it is owed now
//! less what it has billed so far — the original invoice's line plus every earlier credit note and
//! extra invoice of it (`store::adjustments`). Increases go on an extra invoice (its own date, due
//! after the customer's payment terms, emailed under the same rules as invoices), decreases on a
//! credit note, each line with its own tax type and account. An earlier extra invoice still unpaid
//! is updated (or voided) rather than another stacked on it.
//!
//! Autotask: the charge is patched while unbilled; once billed, a correcting charge for what the
//! line is owed less the original and every earlier correction.

use std::collections::BTreeMap;

use super::drafts::{dates, xero, xero_draft_for};
use super::{Pipeline, PipelineError};
use crate::autotask::{AutotaskClient, AutotaskError, ChargeChange, ChargeDraft};
use crate::domain::Money;
use crate::domain::{LedgerOutcome, RemoteSystem};
use crate::store::adjustments::{Adjustment, AdjustmentKind, AdjustmentLine, NewAdjustment};
use crate::store::billing::{StoredInvoice, StoredLine};
use crate::store::outbox::{LedgerEntry, OutboxEntry, RemoteEffect};
use crate::xero::{
    CreditNoteDraft, InvoiceDraft, InvoiceOutcome, InvoiceState, LineDraft, RemoteInvoice,
};

/// The result of one remote update, for the ledger.
pub struct UpdateOutcome {
    pub charge_id: i64,
    pub what: String,
    pub amount: Money,
}

/// Brings one Autotask charge in line with its (changed, removed or restored) line: PATCH (or
/// DELETE) while unbilled; once billed, a correcting charge for the line's amount less everything
/// its charges already bill; a line without a charge (never pushed, or deleted remotely) is
/// created.
pub async fn push_autotask_update(
    p: &Pipeline,
    autotask: &AutotaskClient,
    inv: &StoredInvoice,
    line: &StoredLine,
    mut draft: ChargeDraft,
) -> Result<UpdateOutcome, AutotaskError> {
    if line.removed {
        draft.unit_quantity = rust_decimal::Decimal::ZERO;
    }
    let amount = Money::new(draft.unit_price.amount() * draft.unit_quantity).round_cents();
    let charges = autotask
        .charges_with_marker(draft.contract_id, &draft.marker)
        .await?;
    let original = charges
        .iter()
        .find(|c| c.marker.as_deref() == Some(draft.marker.as_str()));
    match original {
        Some(existing) if existing.is_billed || charges.len() > 1 => {
            let change = autotask
                .correct_billed_charge(existing, &charges, &draft)
                .await?;
            if let ChargeChange::Corrected {
                correction,
                amount: difference,
                ..
            } = &change
            {
                let record = NewAdjustment {
                    invoice_id: inv.id,
                    kind: AdjustmentKind::CorrectingCharge,
                    remote_id: correction.to_string(),
                    reference: crate::autotask::correction_marker(
                        &draft.marker,
                        charges.len(),
                        *difference,
                    ),
                    status: "created".into(),
                    lines: vec![AdjustmentLine {
                        charge_key: line.charge_key.as_str().to_string(),
                        description: line.description.clone(),
                        amount: *difference,
                        tax_type: None,
                        account_code: None,
                    }],
                };
                p.store
                    .record_adjustment(&record, p.now())
                    .await
                    .map_err(|e| AutotaskError::Local(e.to_string()))?;
            }
            Ok(UpdateOutcome {
                charge_id: change.charge_id(),
                what: change.describe(),
                amount,
            })
        }
        Some(existing) => {
            let change = autotask.update_or_correct_charge(existing, &draft).await?;
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
    let xero = xero(p)?;
    let inv = p.store.invoice_by_id(e.invoice_id).await?;
    let requested_at = p.now();
    let remote_id = inv.xero_invoice_id.clone().ok_or_else(|| {
        PipelineError::Refused(format!("invoice {} is not in Xero yet", inv.number))
    })?;
    let remote = xero.get_invoice(&remote_id).await?;
    let lines = p.store.invoice_lines(inv.id).await?;
    let mut l = LedgerEntry::new(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
    l.remote_id = Some(remote_id.clone());
    let state = remote.state();
    if remote.is_editable() && !state.is_cancelled() {
        if lines.iter().all(|x| x.removed) {
            // Every line taken away: the invoice no longer bills anything. Xero keeps an invoice
            // sent without LineItems as it was, so it is voided (or, as a draft, deleted).
            let status = if state == InvoiceState::Authorised {
                "VOIDED"
            } else {
                "DELETED"
            };
            let done = xero
                .set_invoice_status(&remote_id, status, &e.idempotency_key)
                .await?;
            l.remote_status = Some(format!("{} (every line removed)", done.status));
            l.amount = Some(Money::ZERO);
            return Ok((
                l,
                RemoteEffect::XeroInvoice {
                    invoice_id: done.invoice_id,
                    status: done.status,
                },
            ));
        }
        let draft = xero_draft_for(p, &inv).await?;
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
    let mut done = adjust(p, e, &inv, &lines, &remote).await?;
    if inv.voided.is_some() {
        done.extend(super::allocate::allocate_void_credit(p, e, &inv, &remote_id).await?);
    }
    email_extra_invoices(p, e, &inv).await?;
    l.remote_status = Some(if done.is_empty() {
        "no change needed".into()
    } else {
        done.join("; ")
    });
    l.amount = Some(inv.total());
    if state.is_cancelled() {
        return Ok((l, RemoteEffect::None));
    }
    Ok((
        l,
        RemoteEffect::XeroInvoice {
            invoice_id: remote.invoice_id.clone(),
            status: remote.status.clone(),
        },
    ))
}

/// One line's part of what was billed or is owed.
#[derive(Debug, Clone)]
pub(super) struct Part {
    pub(super) description: String,
    pub(super) amount: Money,
    tax_type: Option<String>,
    account_code: Option<String>,
}

/// What each line (by charge key) is owed now: the live lines; removed lines owe nothing.
pub(super) fn owed(lines: &[StoredLine]) -> BTreeMap<String, Part> {
    let mut out: BTreeMap<String, Part> = BTreeMap::new();
    for x in lines {
        let e = out
            .entry(x.charge_key.as_str().to_string())
            .or_insert(Part {
                description: x.description.clone(),
                amount: Money::ZERO,
                tax_type: x.tax_type.clone(),
                account_code: x.account_code.clone(),
            });
        if !x.removed {
            e.amount += x.amount;
            e.description = x.description.clone();
        }
    }
    out
}

/// What the original invoice bills per line, as Xero holds it (nothing once voided). Xero's lines
/// carry no charge key: each is matched to the local line of the same description; a line that
/// matches none keeps a key of its own (it is owed nothing, so it is credited, and the local line
/// is billed in full: the net is right either way).
pub(super) fn original(remote: &RemoteInvoice, lines: &[StoredLine]) -> BTreeMap<String, Part> {
    let mut out: BTreeMap<String, Part> = BTreeMap::new();
    if remote.state().is_cancelled() {
        return out;
    }
    let mut used = vec![false; lines.len()];
    for (i, r) in remote.lines.iter().enumerate() {
        let found = lines
            .iter()
            .enumerate()
            .find(|(j, x)| !used[*j] && x.description == r.description)
            .map(|(j, x)| {
                used[j] = true;
                x.charge_key.as_str().to_string()
            });
        let key = found.unwrap_or_else(|| format!("xero-line-{i}"));
        let e = out.entry(key).or_insert(Part {
            description: r.description.clone(),
            amount: Money::ZERO,
            tax_type: r.tax_type.clone(),
            account_code: r.account_code.clone(),
        });
        e.amount += r.amount;
    }
    out
}

pub(super) fn add(into: &mut BTreeMap<String, Part>, a: &Adjustment) {
    for x in &a.lines {
        let e = into.entry(x.charge_key.clone()).or_insert(Part {
            description: x.description.clone(),
            amount: Money::ZERO,
            tax_type: x.tax_type.clone(),
            account_code: x.account_code.clone(),
        });
        e.amount += x.amount;
    }
}

fn line_draft(part: &Part, amount: Money, what: &str, inv: &StoredInvoice) -> LineDraft {
    LineDraft {
        description: format!(
            "{} — {what} invoice {} ({})",
            part.description, inv.number, inv.period
        ),
        quantity: rust_decimal::Decimal::ONE,
        unit_amount: amount.amount(),
        account_code: part.account_code.clone(),
        tax_type: part.tax_type.clone(),
        item_code: None,
    }
}

/// Adjusts an invoice Xero no longer lets us edit, line by line. Returns what was done.
async fn adjust(
    p: &Pipeline,
    e: &OutboxEntry,
    inv: &StoredInvoice,
    lines: &[StoredLine],
    remote: &RemoteInvoice,
) -> Result<Vec<String>, PipelineError> {
    let xero = xero(p)?;
    let owed = owed(lines);
    let mut fixed = original(remote, lines);
    let mut adjustments: Vec<Adjustment> = p
        .store
        .adjustments(inv.id)
        .await?
        .into_iter()
        .filter(|a| a.kind != AdjustmentKind::CorrectingCharge)
        .collect();
    // An extra invoice still unpaid can be revised; one paid (or voided) is fixed.
    let mut open: Option<(Adjustment, RemoteInvoice)> = None;
    for a in adjustments.iter_mut() {
        if a.kind == AdjustmentKind::ExtraInvoice && !a.is_cancelled() {
            let now = xero.get_invoice(&a.remote_id).await?;
            if now.status != a.status {
                p.store
                    .set_adjustment_status(a.id, &now.status, p.now())
                    .await?;
                a.status = now.status.clone();
            }
            if now.is_editable() && !now.state().is_cancelled() {
                if let Some((earlier, _)) = open.replace((a.clone(), now)) {
                    add(&mut fixed, &earlier);
                }
                continue;
            }
        }
        if !a.is_cancelled() {
            add(&mut fixed, a);
        }
    }
    let keys: std::collections::BTreeSet<&String> = owed.keys().chain(fixed.keys()).collect();
    let mut increases: Vec<(String, Part, Money)> = Vec::new();
    let mut decreases: Vec<(String, Part, Money)> = Vec::new();
    for key in keys {
        let now = owed.get(key).map(|x| x.amount).unwrap_or_default();
        let billed = fixed.get(key).map(|x| x.amount).unwrap_or_default();
        let part = owed
            .get(key)
            .or_else(|| fixed.get(key))
            .cloned()
            .ok_or_else(|| PipelineError::Refused(format!("line {key} vanished")))?;
        let needed = now - billed;
        if needed.is_negative() {
            decreases.push((key.clone(), part, needed));
        } else if !needed.is_zero() {
            increases.push((key.clone(), part, needed));
        }
    }
    let mut done = Vec::new();
    let n = adjustments.len() + 1;
    let (date, due_date) = dates(p, inv).await?;
    let contact = xero_draft_for(p, inv).await?.contact_id;
    let extra_lines = |what: &str| -> (Vec<LineDraft>, Vec<AdjustmentLine>) {
        increases
            .iter()
            .map(|(key, part, amount)| {
                (
                    line_draft(part, *amount, what, inv),
                    AdjustmentLine {
                        charge_key: key.clone(),
                        description: part.description.clone(),
                        amount: *amount,
                        tax_type: part.tax_type.clone(),
                        account_code: part.account_code.clone(),
                    },
                )
            })
            .unzip()
    };
    match open {
        Some((a, now)) if increases.is_empty() => {
            let status = if now.state() == InvoiceState::Authorised {
                "VOIDED"
            } else {
                "DELETED"
            };
            let voided = xero
                .set_invoice_status(
                    &a.remote_id,
                    status,
                    &format!("{}:void{}", e.idempotency_key, a.id),
                )
                .await?;
            p.store
                .set_adjustment_status(a.id, &voided.status, p.now())
                .await?;
            done.push(format!("extra invoice {} {}", a.reference, voided.status));
        }
        Some((a, now)) => {
            let (drafts, record) = extra_lines("additional charges on");
            let same = record.len() == a.lines.len()
                && record.iter().all(|r| {
                    a.lines
                        .iter()
                        .any(|x| x.charge_key == r.charge_key && x.amount == r.amount)
                });
            if !same {
                let draft = InvoiceDraft {
                    contact_id: contact.clone(),
                    reference: a.reference.clone(),
                    invoice_number: now.invoice_number.clone(),
                    date,
                    due_date,
                    currency: inv.currency.clone(),
                    lines: drafts,
                };
                let updated = xero
                    .update_invoice(
                        &a.remote_id,
                        &draft,
                        &format!("{}:extra{}", e.idempotency_key, a.id),
                    )
                    .await?;
                p.store
                    .record_adjustment(
                        &NewAdjustment {
                            invoice_id: inv.id,
                            kind: AdjustmentKind::ExtraInvoice,
                            remote_id: a.remote_id.clone(),
                            reference: a.reference.clone(),
                            status: updated.status.clone(),
                            lines: record,
                        },
                        p.now(),
                    )
                    .await?;
                done.push(format!(
                    "extra invoice {} updated to {}",
                    a.reference, updated.sub_total
                ));
            }
        }
        None if !increases.is_empty() => {
            let (drafts, record) = extra_lines("additional charges on");
            let reference = format!("{}-A{n}", inv.number);
            let draft = InvoiceDraft {
                contact_id: contact.clone(),
                reference: reference.clone(),
                invoice_number: None,
                date,
                due_date,
                currency: inv.currency.clone(),
                lines: drafts,
            };
            // A lost answer of an earlier attempt: find the document again by its reference.
            let created = match xero.find_invoice_by_reference(&reference).await? {
                Some(found) => found,
                None => {
                    let outcomes = xero
                        .create_invoices(
                            std::slice::from_ref(&draft),
                            &format!("{}:extra", e.idempotency_key),
                        )
                        .await?;
                    match outcomes.into_iter().next() {
                        Some(InvoiceOutcome::Created(r)) => r,
                        Some(InvoiceOutcome::Invalid { messages, .. }) => {
                            return Err(crate::xero::XeroError::Validation(messages).into());
                        }
                        None => {
                            return Err(PipelineError::Refused("Xero returned no invoice".into()));
                        }
                    }
                }
            };
            p.store
                .record_adjustment(
                    &NewAdjustment {
                        invoice_id: inv.id,
                        kind: AdjustmentKind::ExtraInvoice,
                        remote_id: created.invoice_id.clone(),
                        reference: reference.clone(),
                        status: created.status.clone(),
                        lines: record,
                    },
                    p.now(),
                )
                .await?;
            done.push(format!(
                "extra invoice {reference} for {}",
                created.sub_total
            ));
        }
        None => {}
    }
    if !decreases.is_empty() {
        let reference = format!("{}-C{n}", inv.number);
        let (drafts, record): (Vec<LineDraft>, Vec<AdjustmentLine>) = decreases
            .iter()
            .map(|(key, part, amount)| {
                (
                    line_draft(part, -*amount, "credit on", inv),
                    AdjustmentLine {
                        charge_key: key.clone(),
                        description: part.description.clone(),
                        amount: *amount,
                        tax_type: part.tax_type.clone(),
                        account_code: part.account_code.clone(),
                    },
                )
            })
            .unzip();
        let note = CreditNoteDraft {
            contact_id: contact,
            reference: reference.clone(),
            date,
            currency: inv.currency.clone(),
            lines: drafts,
        };
        // A lost answer of an earlier attempt: find the credit note again by its reference.
        let created = match xero.find_credit_note_by_reference(&reference).await? {
            Some(found) => found,
            None => {
                xero.create_credit_note(&note, &format!("{}:credit", e.idempotency_key))
                    .await?
            }
        };
        let total: Money = record.iter().map(|r| r.amount).sum();
        p.store
            .record_adjustment(
                &NewAdjustment {
                    invoice_id: inv.id,
                    kind: AdjustmentKind::CreditNote,
                    remote_id: created.credit_note_id.clone(),
                    reference: reference.clone(),
                    status: if created.status.is_empty() {
                        "AUTHORISED".into()
                    } else {
                        created.status.clone()
                    },
                    lines: record,
                },
                p.now(),
            )
            .await?;
        done.push(format!("credit note {reference} for {}", -total));
    }
    Ok(done)
}

/// Emails the invoice's extra invoices not yet emailed, under the rules invoices follow: an
/// enabled customer, and `invoices.auto_send` on. Decided at send time, like an invoice's email.
async fn email_extra_invoices(
    p: &Pipeline,
    e: &OutboxEntry,
    inv: &StoredInvoice,
) -> Result<(), PipelineError> {
    let xero = xero(p)?;
    let customer = p.store.customer(inv.customer_id).await?;
    if !customer.enabled || !p.config.invoices.auto_send {
        return Ok(());
    }
    for a in p.store.adjustments(inv.id).await? {
        if a.kind != AdjustmentKind::ExtraInvoice || a.is_cancelled() || a.emailed_at.is_some() {
            continue;
        }
        // An earlier send may have reached Xero with its answer lost (and its Idempotency-Key
        // since forgotten): the extra invoice's sent state says whether it did. One read per
        // extra invoice not yet known to be emailed; they are rare, a second email is not.
        if xero.get_invoice(&a.remote_id).await?.sent_to_contact {
            p.store.mark_adjustment_emailed(a.id, p.now()).await?;
            continue;
        }
        match xero
            .email_invoice(
                &a.remote_id,
                &format!("{}:email{}", e.idempotency_key, a.id),
            )
            .await?
        {
            crate::xero::EmailOutcome::Sent => {
                p.store.mark_adjustment_emailed(a.id, p.now()).await?;
            }
            other => {
                tracing::warn!(invoice = %inv.number, extra = %a.reference, outcome = ?other, "extra invoice not emailed");
            }
        }
    }
    Ok(())
}
