//! What ops do to one invoice after it went out: email it again (`rebilld invoice email NUMBER`),
//! after an address was added in Xero or the customer was enabled again. Through the outbox, so
//! exactly-once holds as for every email: a new entry with its own key, pushed at once.

use super::{Pipeline, PipelineError, PushReport};
use crate::domain::RemoteSystem;
use crate::domain::invoice::OutboxEntry;
use crate::store::Actor;

/// What `invoice email` did: the queued entry and the push that sent it (or parked it: Xero's
/// daily email cap).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmailAgain {
    pub invoice: String,
    pub entry: OutboxEntry,
    pub pushed: PushReport,
}

/// Emails a Xero invoice again. Refused for an Autotask invoice (never emailed by rebill), an
/// invoice not yet in Xero (its first email follows its create), a disabled customer (never
/// emailed; enable it first), and while `invoices.auto_send` is off.
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
