//! What ops do to one invoice after it went out: email it again (`rebilld invoice email NUMBER`),
//! after an address was added in Xero or the customer was enabled again; void it (`rebilld invoice
//! void NUMBER --reason TEXT`). Through the outbox, so exactly-once holds as for every remote
//! action: new entries with their own keys, pushed at once.
//!
//! A void takes the invoice back wherever it went (what is taken back and what is cancelled is
//! `domain::void`; the push's update actions do the remote work: Xero VOIDED or DELETED while
//! unpaid, else a credit note for everything it bills, allocated to what is still due; each
//! Autotask charge deleted while unbilled, else a negative correcting charge) and settles its
//! charges: no later run or resync bills them again.

use super::{Pipeline, PipelineError, PushReport, lease, record};
use crate::domain::RemoteSystem;
use crate::domain::invoice::{OutboxEntry, StoredInvoice};
use crate::domain::void::{TakeBack, VoidWork, void_work};
use crate::store::Actor;
use crate::store::void::VoidRecorded;

/// What `invoice email` did: the queued entry and the push that sent it (or parked it: Xero's
/// daily email cap).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmailAgain {
    pub invoice: String,
    pub entry: OutboxEntry,
    pub pushed: PushReport,
}

/// Emails a Xero invoice again. Refused for an Autotask invoice (never emailed by rebill), a
/// voided invoice, an invoice not yet in Xero (its first email follows its create), a disabled
/// customer (never emailed; enable it first), and while `invoices.auto_send` is off.
pub async fn email_again(
    p: &Pipeline,
    number: &str,
    actor: &Actor,
) -> Result<EmailAgain, PipelineError> {
    let inv = p.store.invoice_by_number(number).await?;
    if inv.destination != RemoteSystem::Xero {
        return Err(PipelineError::Refused(format!(
            "invoice {number} is billed as Autotask contract charges: rebill does not email it"
        )));
    }
    if let Some(v) = &inv.voided {
        return Err(PipelineError::Refused(format!(
            "invoice {number} was voided by {} ({}): a voided invoice is not emailed",
            v.by, v.reason
        )));
    }
    if inv.xero_invoice_id.is_none() {
        return Err(PipelineError::Refused(format!(
            "invoice {number} is not in Xero yet: it is emailed once created (`rebilld status`)"
        )));
    }
    if !p.config.invoices.auto_send {
        return Err(PipelineError::Refused(
            "invoices.auto_send is off: rebill sends no invoice email".into(),
        ));
    }
    let customer = p.store.customer(inv.customer_id).await?;
    if !customer.enabled {
        return Err(PipelineError::Refused(format!(
            "customer {} ({}) is disabled and is never emailed; `rebilld customer enable {}` first",
            customer.id, customer.name, customer.id
        )));
    }
    let key = format!("xero-email:{}:{}", inv.period, inv.customer_id);
    let entry = p
        .store
        .queue_email_again(inv.id, &key, actor, p.now())
        .await?;
    let pushed = p.drain(p.now()).await?;
    let entry = p.store.outbox_entry(entry.id).await?;
    Ok(EmailAgain {
        invoice: inv.number,
        entry,
        pushed,
    })
}

/// What `invoice void` did, or with `--dry-run` would do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VoidOutcome {
    pub invoice: String,
    pub dry_run: bool,
    /// What the void does, one sentence per remote record or cancelled action.
    pub plan: Vec<String>,
    /// What was recorded (not on a dry run).
    pub recorded: Option<VoidRecorded>,
    /// The push that carried the take-back actions out (not on a dry run).
    pub pushed: Option<PushReport>,
}

/// Voids invoice `number` for `reason` (see the module), under the period lease so that no run or
/// resync of its period changes it meanwhile. Refused, with nothing changed, without a reason,
/// when it is voided already, or while one of its actions is unsettled. `dry_run` reads only.
pub async fn void(
    p: &Pipeline,
    number: &str,
    reason: &str,
    actor: &Actor,
    dry_run: bool,
) -> Result<VoidOutcome, PipelineError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(PipelineError::Refused(
            "a void needs a reason (--reason TEXT): it is kept with the invoice and audited".into(),
        ));
    }
    let inv = p.store.invoice_by_number(number).await?;
    if dry_run {
        let plan = plan(p, &inv).await?;
        return Ok(VoidOutcome {
            invoice: inv.number,
            dry_run,
            plan,
            recorded: None,
            pushed: None,
        });
    }
    let reason = reason.to_string();
    let actor = actor.clone();
    lease::with_period_lease(p, inv.period, |p| async move {
        let inv = p.store.invoice_by_id(inv.id).await?;
        let plan = plan(&p, &inv).await?;
        let recorded = p
            .store
            .void_invoice(inv.id, &actor, &reason, p.now())
            .await?;
        let pushed = p.drain(p.now()).await?;
        Ok(VoidOutcome {
            invoice: inv.number,
            dry_run,
            plan,
            recorded: Some(recorded),
            pushed: Some(pushed),
        })
    })
    .await
}

/// What voiding `inv` does, in words: reads the outbox and the remote records, writes nothing.
async fn plan(p: &Pipeline, inv: &StoredInvoice) -> Result<Vec<String>, PipelineError> {
    let outbox = p.store.outbox(Some(inv.id)).await?;
    let VoidWork { cancel, take_back } =
        void_work(inv, &outbox).map_err(|r| PipelineError::Refused(r.to_string()))?;
    let mut out = Vec::new();
    for id in &cancel {
        if let Some(e) = outbox.iter().find(|e| e.id == *id) {
            out.push(format!(
                "outbox entry {} ({}, {}) cancelled: never sent",
                e.id, e.action, e.status
            ));
        }
    }
    let lines = p.store.invoice_lines(inv.id).await?;
    for b in &take_back {
        out.push(match b {
            TakeBack::XeroInvoice => xero_plan(p, inv).await,
            TakeBack::AutotaskLine(id) => match lines.iter().find(|l| l.id == *id) {
                Some(line) => autotask_plan(p, inv, line).await,
                None => format!("line {id}: not found"),
            },
        });
    }
    if take_back.is_empty() {
        out.push(format!(
            "nothing of invoice {} reached {}: it is voided locally only",
            inv.number, inv.destination
        ));
    }
    Ok(out)
}

async fn xero_plan(p: &Pipeline, inv: &StoredInvoice) -> String {
    let (Some(xero), Some(id)) = (&p.xero, &inv.xero_invoice_id) else {
        return format!(
            "Xero invoice {}: voided while unpaid, else a credit note for all it bills",
            inv.number
        );
    };
    match xero.get_invoice(id).await {
        Ok(r) if r.state().is_cancelled() => format!(
            "Xero invoice {} is {} already: nothing to send",
            inv.number, r.status
        ),
        Ok(r) if r.is_editable() && r.status == "AUTHORISED" => {
            format!(
                "Xero invoice {} (AUTHORISED, unpaid) set to VOIDED",
                inv.number
            )
        }
        Ok(r) if r.is_editable() => format!(
            "Xero invoice {} ({}) set to DELETED (Xero voids only an approved invoice)",
            inv.number, r.status
        ),
        Ok(r) if r.amount_due.is_positive() => format!(
            "Xero invoice {} is {} with {} paid: it cannot be voided, so a credit note for \
             everything it bills ({} ex tax) is raised and allocated to the {} still due",
            inv.number, r.status, r.amount_paid, inv.total, r.amount_due
        ),
        Ok(r) => format!(
            "Xero invoice {} is {} with {} paid: it cannot be voided, so a credit note for \
             everything it bills ({} ex tax) is raised",
            inv.number, r.status, r.amount_paid, inv.total
        ),
        Err(e) => format!(
            "Xero invoice {}: voided while unpaid, else a credit note for all it bills (Xero \
             could not be asked now: {e})",
            inv.number
        ),
    }
}

async fn autotask_plan(
    p: &Pipeline,
    inv: &StoredInvoice,
    line: &crate::domain::invoice::StoredLine,
) -> String {
    let what = format!(
        "Autotask charge of \"{}\" ({})",
        line.description, line.amount
    );
    let (Some(autotask), Some(coding)) = (&p.autotask, line.autotask) else {
        return format!("{what}: deleted while unbilled, else a correcting charge");
    };
    let marker = record::autotask_marker(inv.period, inv.customer_id, &line.charge_key, 1);
    match autotask
        .charges_with_marker(coding.contract_id, &marker)
        .await
    {
        Ok(c) if c.is_empty() => format!("{what}: not in Autotask, nothing to take back"),
        Ok(c) if c.iter().any(|x| x.is_billed) => format!(
            "{what}: billed already, so a correcting charge of {} is added",
            -line.amount
        ),
        Ok(c) => format!(
            "{what}: charge {} deleted (not billed yet)",
            c.iter()
                .map(|x| x.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(e) => format!(
            "{what}: deleted while unbilled, else a correcting charge (Autotask could not be \
             asked now: {e})"
        ),
    }
}
