//! The Xero half of the push: invoices created in batches (looked for by `Reference` first when an
//! earlier attempt may have reached Xero), updates, and emails (sent only when Xero does not show
//! the invoice as sent already).

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::{
    PushReport, Renewal, about_to_send, claim, ledger, next_utc_midnight, retry_at, written,
};
use crate::domain::{LedgerOutcome, OutboxAction, RemoteSystem};
use crate::pipeline::drafts::{total_difference, xero_draft_for};
use crate::pipeline::{Pipeline, PipelineError};
use crate::store::billing::StoredInvoice;
use crate::store::outbox::{OutboxEntry, RemoteEffect};
use crate::xero::{EmailOutcome, InvoiceDraft, InvoiceOutcome, XeroError};

/// Creates a batch of Xero invoices in one request. Returns how many entries it handled.
pub(super) async fn invoices(
    p: &Pipeline,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let Some(xero) = &p.xero else { return Ok(0) };
    let batch = p.config.xero.batch_size.max(1) as i64;
    let entries = claim(p, OutboxAction::XeroInvoice, now, batch).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let handled = entries.len();
    let _renewal = Renewal::start(p, entries.iter().map(|e| e.id).collect());
    let requested_at = p.now();
    let mut to_create: Vec<(OutboxEntry, StoredInvoice, InvoiceDraft)> = Vec::new();
    for e in entries {
        let inv = p.store.invoice_by_id(e.invoice_id).await?;
        // An earlier attempt may have reached Xero (its answer lost, or its worker gone): look by
        // Reference before creating again. Uncertainty, not the attempt count, decides: a park gives
        // the attempt back, never the uncertainty.
        if e.uncertain_since.is_some() || e.attempts > 1 {
            match xero.find_invoice_by_reference(&inv.number).await {
                Ok(Some(found)) => {
                    let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
                    l.remote_id = Some(found.invoice_id.clone());
                    l.remote_status = Some(found.status.clone());
                    l.amount = Some(found.sub_total);
                    let effect = RemoteEffect::XeroInvoice {
                        invoice_id: found.invoice_id.clone(),
                        status: found.status.clone(),
                    };
                    if written(
                        p,
                        &e,
                        p.store.complete_outbox(&e, &p.owner, &l, &effect).await?,
                    ) {
                        report.xero_invoices_found_again.push(inv.number.clone());
                    }
                    continue;
                }
                Ok(None) => {}
                Err(err) => {
                    handle_xero_error(p, &e, err, requested_at, report).await?;
                    continue;
                }
            }
        }
        match xero_draft_for(p, &inv).await {
            Ok(d) => to_create.push((e, inv, d)),
            Err(PipelineError::NotSendable(why)) => {
                let mut l = ledger(
                    RemoteSystem::Xero,
                    LedgerOutcome::PermanentError,
                    requested_at,
                );
                l.error = Some(why.clone());
                if written(p, &e, p.store.fail_outbox(&e, &p.owner, &l, None).await?) {
                    report.failed.push(format!("{}: {why}", inv.number));
                }
            }
            Err(other) => return Err(other),
        }
    }
    // Only what this worker still holds is sent, each marked uncertain first.
    let mut held = Vec::with_capacity(to_create.len());
    for item in to_create {
        if about_to_send(p, &item.0).await? {
            held.push(item);
        }
    }
    let to_create = held;
    if to_create.is_empty() {
        return Ok(handled);
    }
    let drafts: Vec<InvoiceDraft> = to_create.iter().map(|(_, _, d)| d.clone()).collect();
    let mut keys: Vec<&str> = to_create
        .iter()
        .map(|(e, _, _)| e.idempotency_key.as_str())
        .collect();
    keys.sort_unstable();
    let key = batch_key(&keys);
    match xero.create_invoices(&drafts, &key).await {
        Ok(outcomes) => {
            for ((e, inv, _), outcome) in to_create.iter().zip(outcomes) {
                match outcome {
                    InvoiceOutcome::Created(remote) => {
                        let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
                        l.remote_id = Some(remote.invoice_id.clone());
                        l.remote_status = Some(remote.status.clone());
                        l.amount = Some(remote.sub_total);
                        let with_tax = p.total_with_tax(inv).await?;
                        if let Some(why) = total_difference(&remote, inv.total(), with_tax) {
                            tracing::error!(invoice = %inv.number, %why, "Xero computed a different total");
                            l.error = Some(why);
                        }
                        let effect = RemoteEffect::XeroInvoice {
                            invoice_id: remote.invoice_id.clone(),
                            status: remote.status.clone(),
                        };
                        crate::pipeline::crash_point("xero_created_before_ledger");
                        if written(
                            p,
                            e,
                            p.store.complete_outbox(e, &p.owner, &l, &effect).await?,
                        ) {
                            report.xero_invoices_created.push(inv.number.clone());
                        }
                        crate::pipeline::crash_point("xero_mid_batch");
                    }
                    InvoiceOutcome::Invalid { messages, .. } => {
                        let why = messages.join("; ");
                        let mut l = ledger(
                            RemoteSystem::Xero,
                            LedgerOutcome::PermanentError,
                            requested_at,
                        );
                        l.error = Some(why.clone());
                        if written(p, e, p.store.fail_outbox(e, &p.owner, &l, None).await?) {
                            tracing::warn!(invoice = %inv.number, error = %why, "Xero refused the invoice");
                            report.failed.push(format!("{}: {why}", inv.number));
                        }
                    }
                }
            }
        }
        Err(err) => {
            let err = std::sync::Arc::new(err);
            for (e, _, _) in &to_create {
                handle_xero_error_shared(p, e, &err, requested_at, report).await?;
            }
        }
    }
    Ok(handled)
}

fn batch_key(keys: &[&str]) -> String {
    let mut h = Sha256::new();
    for k in keys {
        h.update(k.as_bytes());
        h.update(b"\n");
    }
    let d = h.finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("rebill-batch-{hex}")
}

async fn handle_xero_error(
    p: &Pipeline,
    e: &OutboxEntry,
    err: XeroError,
    requested_at: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<(), PipelineError> {
    handle_xero_error_shared(p, e, &std::sync::Arc::new(err), requested_at, report).await
}

/// Sorts a Xero failure: a day budget or rate limit parks the entry (not a failure), a revoked grant
/// parks it until ops reconnect and stops the Xero push (returned as an error: the rest would be
/// refused too), a validation error waits for a fix, anything else is retried later. An entry marked uncertain before its request stays uncertain whichever way it is sorted.
async fn handle_xero_error_shared(
    p: &Pipeline,
    e: &OutboxEntry,
    err: &XeroError,
    requested_at: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<(), PipelineError> {
    let now = p.now();
    match err {
        XeroError::DayBudgetSpent { until } => {
            if written(
                p,
                e,
                p.store
                    .park_outbox(e, &p.owner, *until, &err.to_string())
                    .await?,
            ) {
                report.parked.push(format!("{}: {err}", e.idempotency_key));
            }
        }
        XeroError::RateLimited { retry_after } => {
            let until = now + Duration::from_std(*retry_after).unwrap_or(Duration::seconds(60));
            if written(
                p,
                e,
                p.store
                    .park_outbox(e, &p.owner, until, &err.to_string())
                    .await?,
            ) {
                report.parked.push(format!("{}: {err}", e.idempotency_key));
            }
        }
        XeroError::Reauthorize { .. } => {
            if written(
                p,
                e,
                p.store
                    .park_outbox(e, &p.owner, now, &err.to_string())
                    .await?,
            ) {
                report.parked.push(format!("{}: {err}", e.idempotency_key));
            }
            // Every other Xero request would be refused the same way: the Xero push stops here
            // (the drain releases the rest of its claims); Autotask goes on.
            return Err(PipelineError::Refused(err.to_string()));
        }
        XeroError::Validation(messages) => {
            let mut l = ledger(
                RemoteSystem::Xero,
                LedgerOutcome::PermanentError,
                requested_at,
            );
            l.error = Some(messages.join("; "));
            if written(p, e, p.store.fail_outbox(e, &p.owner, &l, None).await?) {
                report.failed.push(format!("{}: {err}", e.idempotency_key));
            }
        }
        other => {
            let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Error, requested_at);
            l.error = Some(other.to_string());
            let retry = retry_at(now, e.attempts);
            if written(
                p,
                e,
                p.store.fail_outbox(e, &p.owner, &l, Some(retry)).await?,
            ) {
                report
                    .failed
                    .push(format!("{}: {other} (will retry)", e.idempotency_key));
            }
        }
    }
    Ok(())
}

pub(super) async fn emails(
    p: &Pipeline,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let Some(xero) = &p.xero else { return Ok(0) };
    let entries = claim(p, OutboxAction::XeroEmail, now, 20).await?;
    let handled = entries.len();
    let _renewal = Renewal::start(p, entries.iter().map(|e| e.id).collect());
    for e in entries {
        let requested_at = p.now();
        if p.stopping() {
            // Shutdown: release the claims not yet started.
            p.store
                .park_outbox(&e, &p.owner, requested_at, "shutting down")
                .await?;
            continue;
        }
        let inv = p.store.invoice_by_id(e.invoice_id).await?;
        // Decided again at push time: the customer may have been disabled, or auto-send switched off.
        let customer = p.store.customer(inv.customer_id).await?;
        if !customer.enabled || !p.config.invoices.auto_send {
            let why = if !customer.enabled {
                "customer disabled"
            } else {
                "invoices.auto_send is off"
            };
            let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
            l.remote_status = Some(format!("not emailed: {why}"));
            written(
                p,
                &e,
                p.store
                    .complete_outbox(&e, &p.owner, &l, &RemoteEffect::None)
                    .await?,
            );
            continue;
        }
        let Some(invoice_id) = inv.xero_invoice_id.clone() else {
            written(
                p,
                &e,
                p.store
                    .park_outbox(
                        &e,
                        &p.owner,
                        now + Duration::minutes(1),
                        "the invoice is not in Xero yet",
                    )
                    .await?,
            );
            continue;
        };
        // An earlier send may have reached Xero: the invoice's sent state says whether it did.
        if e.uncertain_since.is_some() {
            match xero.get_invoice(&invoice_id).await {
                Ok(remote) if remote.sent_to_contact => {
                    let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
                    l.remote_id = Some(invoice_id);
                    l.remote_status = Some("emailed (found sent in Xero)".into());
                    if written(
                        p,
                        &e,
                        p.store
                            .complete_outbox(&e, &p.owner, &l, &RemoteEffect::Emailed)
                            .await?,
                    ) {
                        report.emailed.push(inv.number.clone());
                    }
                    continue;
                }
                Ok(_) => {}
                Err(err) => {
                    handle_xero_error(p, &e, err, requested_at, report).await?;
                    continue;
                }
            }
        }
        if !about_to_send(p, &e).await? {
            continue;
        }
        match xero.email_invoice(&invoice_id, &e.idempotency_key).await {
            Ok(EmailOutcome::Sent) => {
                let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
                l.remote_id = Some(invoice_id);
                l.remote_status = Some("emailed".into());
                crate::pipeline::crash_point("emailed_before_ledger");
                if written(
                    p,
                    &e,
                    p.store
                        .complete_outbox(&e, &p.owner, &l, &RemoteEffect::Emailed)
                        .await?,
                ) {
                    report.emailed.push(inv.number.clone());
                }
            }
            Ok(EmailOutcome::NoEmailAddress) => {
                let mut l = ledger(
                    RemoteSystem::Xero,
                    LedgerOutcome::PermanentError,
                    requested_at,
                );
                l.error = Some(format!(
                    "the Xero contact of customer {} ({}) has no email address; add one in Xero, then resync",
                    inv.customer_id, inv.customer_name
                ));
                if written(p, &e, p.store.fail_outbox(&e, &p.owner, &l, None).await?) {
                    report
                        .failed
                        .push(format!("{}: no email address", inv.number));
                }
            }
            Ok(EmailOutcome::DailyLimitReached) => {
                let until = next_utc_midnight(now);
                if written(
                    p,
                    &e,
                    p.store
                        .park_outbox(
                            &e,
                            &p.owner,
                            until,
                            "Xero's daily email limit reached; parked until tomorrow",
                        )
                        .await?,
                ) {
                    report
                        .parked
                        .push(format!("{}: email parked until {until}", inv.number));
                }
            }
            Err(err) => handle_xero_error(p, &e, err, requested_at, report).await?,
        }
    }
    Ok(handled)
}

/// Updates (`XeroUpdate`) and duplicate removals (`XeroRemoveDuplicate`): one request or a few
/// each, their outcomes written one by one.
pub(super) async fn updates(
    p: &Pipeline,
    action: OutboxAction,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let entries = claim(p, action, now, 10).await?;
    let handled = entries.len();
    let _renewal = Renewal::start(p, entries.iter().map(|e| e.id).collect());
    for e in entries {
        if p.stopping() {
            // Shutdown: the drain releases the claims not yet started.
            break;
        }
        let requested_at = p.now();
        if !about_to_send(p, &e).await? {
            continue;
        }
        let pushed = if action == OutboxAction::XeroRemoveDuplicate {
            crate::pipeline::duplicates::push_xero_removal(p, &e, requested_at).await
        } else {
            crate::pipeline::update::push_xero_update(p, &e).await
        };
        match pushed {
            Ok((l, effect)) => {
                if written(
                    p,
                    &e,
                    p.store.complete_outbox(&e, &p.owner, &l, &effect).await?,
                ) {
                    if action == OutboxAction::XeroRemoveDuplicate {
                        report.duplicates_removed += 1;
                    } else {
                        report.updated += 1;
                        report.xero_updated += 1;
                    }
                }
            }
            Err(PipelineError::Xero(err)) => {
                handle_xero_error(p, &e, err, requested_at, report).await?
            }
            Err(other) => return Err(other),
        }
    }
    Ok(handled)
}
