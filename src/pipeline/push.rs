//! Step 4: drain the outbox. Each entry is claimed (the attempt is counted before any remote call),
//! sent through an idempotent request, and finished in one transaction that writes the ledger row,
//! marks the entry done and stores the remote id. A crash anywhere leaves the entry claimed; when
//! its claim expires it is taken again, and the retry first looks for what the lost attempt may have
//! created (Xero: by `Reference`; Autotask: by the charge's marker) before creating anything.

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::drafts::{charge_draft, total_difference, xero_draft_for};
use super::{Pipeline, PipelineError};
use crate::autotask::AutotaskError;
use crate::domain::{LedgerOutcome, Money, OutboxAction, OutboxStatus, RemoteSystem};
use crate::store::billing::StoredInvoice;
use crate::store::outbox::{LedgerEntry, OutboxEntry, RemoteEffect};
use crate::xero::{EmailOutcome, InvoiceDraft, InvoiceOutcome, XeroError};

/// Why an Autotask action did not finish: the remote said so (recorded in the ledger, retried or
/// not by its kind), or something local failed (propagated: nothing is recorded against the
/// remote for it).
enum ChargeError {
    Remote(AutotaskError),
    Local(PipelineError),
}

impl From<AutotaskError> for ChargeError {
    fn from(e: AutotaskError) -> Self {
        ChargeError::Remote(e)
    }
}

impl From<crate::store::StoreError> for ChargeError {
    fn from(e: crate::store::StoreError) -> Self {
        ChargeError::Local(e.into())
    }
}

/// An Autotask action's entry, its outcome and when it was requested.
type ChargeResult = (
    OutboxEntry,
    Result<(LedgerEntry, RemoteEffect), ChargeError>,
    DateTime<Utc>,
);

#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    pub xero_invoices_created: Vec<String>,
    pub xero_invoices_found_again: Vec<String>,
    pub emailed: Vec<String>,
    pub autotask_charges: usize,
    pub updated: usize,
    pub failed: Vec<String>,
    pub parked: Vec<String>,
    pub waiting_for_config: usize,
}

/// The order the outbox is drained in: Xero creates before updates before emails (an email waits
/// for its invoice), Autotask creates before updates.
const PUSH_ORDER: [OutboxAction; 5] = [
    OutboxAction::XeroInvoice,
    OutboxAction::XeroUpdate,
    OutboxAction::XeroEmail,
    OutboxAction::AutotaskCharge,
    OutboxAction::AutotaskUpdate,
];

pub async fn drain(p: &Pipeline, now: DateTime<Utc>) -> Result<PushReport, PipelineError> {
    let mut report = PushReport::default();
    if let Some(at) = &p.autotask
        && let Err(e) = at.prepare_run().await
    {
        tracing::warn!(error = %e, "could not read Autotask's thresholds; pacing to the configured budget");
    }
    for action in PUSH_ORDER {
        if !configured(p, action.system()) {
            continue;
        }
        // Between batches the loop checks for shutdown: what is in flight finishes, nothing new starts.
        while !p.stopping() && push_batch(p, action, now, &mut report).await? > 0 {}
    }
    let pending = p.store.outbox(None).await?;
    report.waiting_for_config = pending
        .iter()
        .filter(|o| o.status == OutboxStatus::Pending && !configured(p, o.action.system()))
        .count();
    Ok(report)
}

fn configured(p: &Pipeline, system: RemoteSystem) -> bool {
    match system {
        RemoteSystem::Xero => p.xero.is_some(),
        RemoteSystem::Autotask => p.autotask.is_some(),
    }
}

/// Pushes one batch of due entries of `action`. Returns how many entries it handled. Every action
/// is handled here, by an exhaustive match: a new one does not compile until it is pushed.
async fn push_batch(
    p: &Pipeline,
    action: OutboxAction,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    match action {
        OutboxAction::XeroInvoice => xero_invoices(p, now, report).await,
        OutboxAction::XeroUpdate => xero_updates(p, now, report).await,
        OutboxAction::XeroEmail => xero_emails(p, now, report).await,
        OutboxAction::AutotaskCharge | OutboxAction::AutotaskUpdate => {
            autotask_charges(p, action, now, report).await
        }
    }
}

/// How long a claim holds before another worker (or this one, restarted) may take the entry over.
fn claim_until(p: &Pipeline, now: DateTime<Utc>) -> DateTime<Utc> {
    now + Duration::seconds(p.config.schedule.claim_secs as i64)
}

/// Exponential back-off for failed entries: 1, 2, 4 … minutes, at most 6 hours.
fn retry_at(now: DateTime<Utc>, attempts: i32) -> DateTime<Utc> {
    let minutes = 1i64 << attempts.clamp(0, 9);
    now + Duration::minutes(minutes.min(360))
}

fn ledger(system: RemoteSystem, outcome: LedgerOutcome, at: DateTime<Utc>) -> LedgerEntry {
    LedgerEntry::new(system, outcome, at)
}

fn next_utc_midnight(now: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = now.date_naive() + Duration::days(1);
    tomorrow
        .and_hms_opt(0, 5, 0)
        .map(|t| t.and_utc())
        .unwrap_or(now + Duration::days(1))
}

/// Creates a batch of Xero invoices in one request. Returns how many entries it handled.
async fn xero_invoices(
    p: &Pipeline,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let Some(xero) = &p.xero else { return Ok(0) };
    let batch = p.config.xero.batch_size.max(1) as i64;
    let entries = p
        .store
        .claim_outbox(
            OutboxAction::XeroInvoice,
            &p.owner,
            now,
            claim_until(p, now),
            batch,
        )
        .await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let handled = entries.len();
    let requested_at = p.now();
    let mut to_create: Vec<(OutboxEntry, StoredInvoice, InvoiceDraft)> = Vec::new();
    for e in entries {
        let inv = p.store.invoice_by_id(e.invoice_id).await?;
        // A retry may follow an attempt whose response was lost: look before creating again.
        if e.attempts > 1 {
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
                    p.store.complete_outbox(&e, &l, &effect).await?;
                    report.xero_invoices_found_again.push(inv.number.clone());
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
                p.store.fail_outbox(&e, &l, None).await?;
                report.failed.push(format!("{}: {why}", inv.number));
            }
            Err(other) => return Err(other),
        }
    }
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
                        super::crash_point("xero_created_before_ledger");
                        p.store.complete_outbox(e, &l, &effect).await?;
                        report.xero_invoices_created.push(inv.number.clone());
                        super::crash_point("xero_mid_batch");
                    }
                    InvoiceOutcome::Invalid { messages, .. } => {
                        let why = messages.join("; ");
                        let mut l = ledger(
                            RemoteSystem::Xero,
                            LedgerOutcome::PermanentError,
                            requested_at,
                        );
                        l.error = Some(why.clone());
                        p.store.fail_outbox(e, &l, None).await?;
                        tracing::warn!(invoice = %inv.number, error = %why, "Xero refused the invoice");
                        report.failed.push(format!("{}: {why}", inv.number));
                    }
                }
            }
        }
        Err(err) => {
            let err = std::sync::Arc::new(err);
            for (e, _, _) in &to_create {
                handle_xero_error_shared(p, e, &err, requested_at, report).await?;
            }
            if matches!(*err, XeroError::Reauthorize { .. }) {
                return Err(PipelineError::Refused(err.to_string()));
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
/// parks it until ops reconnect, a validation error waits for a fix, anything else is retried later.
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
            p.store.park_outbox(e, *until, &err.to_string()).await?;
            report.parked.push(format!("{}: {err}", e.idempotency_key));
        }
        XeroError::RateLimited { retry_after } => {
            let until = now + Duration::from_std(*retry_after).unwrap_or(Duration::seconds(60));
            p.store.park_outbox(e, until, &err.to_string()).await?;
            report.parked.push(format!("{}: {err}", e.idempotency_key));
        }
        XeroError::Reauthorize { .. } => {
            p.store.park_outbox(e, now, &err.to_string()).await?;
            report.parked.push(format!("{}: {err}", e.idempotency_key));
        }
        XeroError::Validation(messages) => {
            let mut l = ledger(
                RemoteSystem::Xero,
                LedgerOutcome::PermanentError,
                requested_at,
            );
            l.error = Some(messages.join("; "));
            p.store.fail_outbox(e, &l, None).await?;
            report.failed.push(format!("{}: {err}", e.idempotency_key));
        }
        other => {
            let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Error, requested_at);
            l.error = Some(other.to_string());
            p.store
                .fail_outbox(e, &l, Some(retry_at(now, e.attempts)))
                .await?;
            report
                .failed
                .push(format!("{}: {other} (will retry)", e.idempotency_key));
        }
    }
    Ok(())
}

async fn xero_emails(
    p: &Pipeline,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let Some(xero) = &p.xero else { return Ok(0) };
    let entries = p
        .store
        .claim_outbox(
            OutboxAction::XeroEmail,
            &p.owner,
            now,
            claim_until(p, now),
            20,
        )
        .await?;
    let handled = entries.len();
    for e in entries {
        let requested_at = p.now();
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
            p.store.complete_outbox(&e, &l, &RemoteEffect::None).await?;
            continue;
        }
        let Some(invoice_id) = inv.xero_invoice_id.clone() else {
            p.store
                .park_outbox(
                    &e,
                    now + Duration::minutes(1),
                    "the invoice is not in Xero yet",
                )
                .await?;
            continue;
        };
        match xero.email_invoice(&invoice_id, &e.idempotency_key).await {
            Ok(EmailOutcome::Sent) => {
                let mut l = ledger(RemoteSystem::Xero, LedgerOutcome::Ok, requested_at);
                l.remote_id = Some(invoice_id);
                l.remote_status = Some("emailed".into());
                super::crash_point("emailed_before_ledger");
                p.store
                    .complete_outbox(&e, &l, &RemoteEffect::Emailed)
                    .await?;
                report.emailed.push(inv.number.clone());
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
                p.store.fail_outbox(&e, &l, None).await?;
                report
                    .failed
                    .push(format!("{}: no email address", inv.number));
            }
            Ok(EmailOutcome::DailyLimitReached) => {
                let until = next_utc_midnight(now);
                p.store
                    .park_outbox(
                        &e,
                        until,
                        "Xero's daily email limit reached; parked until tomorrow",
                    )
                    .await?;
                report
                    .parked
                    .push(format!("{}: email parked until {until}", inv.number));
            }
            Err(err) => handle_xero_error(p, &e, err, requested_at, report).await?,
        }
    }
    Ok(handled)
}

async fn xero_updates(
    p: &Pipeline,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let entries = p
        .store
        .claim_outbox(
            OutboxAction::XeroUpdate,
            &p.owner,
            now,
            claim_until(p, now),
            10,
        )
        .await?;
    let handled = entries.len();
    for e in entries {
        let requested_at = p.now();
        match super::update::push_xero_update(p, &e).await {
            Ok((l, effect)) => {
                p.store.complete_outbox(&e, &l, &effect).await?;
                report.updated += 1;
            }
            Err(PipelineError::Xero(err)) => {
                handle_xero_error(p, &e, err, requested_at, report).await?
            }
            Err(other) => return Err(other),
        }
    }
    Ok(handled)
}

async fn autotask_charges(
    p: &Pipeline,
    action: OutboxAction,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let Some(autotask) = &p.autotask else {
        return Ok(0);
    };
    let entries = p
        .store
        .claim_outbox(action, &p.owner, now, claim_until(p, now), 50)
        .await?;
    let handled = entries.len();
    let concurrency = p.config.autotask.max_concurrent.max(1) as usize;
    let results: Vec<ChargeResult> = futures::stream::iter(entries)
        .map(|e| async move {
            let requested_at = p.now();
            let r = push_charge(p, autotask, &e).await;
            (e, r, requested_at)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for (e, r, requested_at) in results {
        match r {
            Ok((l, effect)) => {
                super::crash_point("charge_created_before_ledger");
                p.store.complete_outbox(&e, &l, &effect).await?;
                match e.action {
                    OutboxAction::AutotaskCharge => report.autotask_charges += 1,
                    OutboxAction::AutotaskUpdate => report.updated += 1,
                    OutboxAction::XeroInvoice
                    | OutboxAction::XeroEmail
                    | OutboxAction::XeroUpdate => {}
                }
            }
            Err(ChargeError::Local(err)) => return Err(err),
            Err(ChargeError::Remote(err)) => {
                let permanent = err.is_permanent();
                let outcome = if permanent {
                    LedgerOutcome::PermanentError
                } else {
                    LedgerOutcome::Error
                };
                let mut l = ledger(RemoteSystem::Autotask, outcome, requested_at);
                l.error = Some(err.to_string());
                if let Some(wait) = err.retry_after() {
                    let until = p.now() + Duration::from_std(wait).unwrap_or(Duration::minutes(5));
                    p.store.park_outbox(&e, until, &err.to_string()).await?;
                    report.parked.push(format!("{}: {err}", e.idempotency_key));
                } else {
                    let retry = (!permanent).then(|| retry_at(p.now(), e.attempts));
                    p.store.fail_outbox(&e, &l, retry).await?;
                    report.failed.push(format!("{}: {err}", e.idempotency_key));
                }
            }
        }
    }
    Ok(handled)
}

async fn push_charge(
    p: &Pipeline,
    autotask: &crate::autotask::AutotaskClient,
    e: &OutboxEntry,
) -> Result<(LedgerEntry, RemoteEffect), ChargeError> {
    let requested_at = p.now();
    let inv = p.store.invoice_by_id(e.invoice_id).await?;
    let line_id = e.line_id.ok_or_else(|| {
        ChargeError::Local(PipelineError::Refused(format!(
            "outbox entry {} ({}) has no invoice line",
            e.id, e.action
        )))
    })?;
    let line = p.store.line(line_id).await?;
    let draft = charge_draft(&inv, &line, 1)
        .map_err(|why| ChargeError::Remote(AutotaskError::Local(why)))?;
    let amount = Money::new(draft.unit_price.amount() * draft.unit_quantity).round_cents();
    // A create for a line taken off since it was queued is superseded: it must not create a
    // charge now. Like an update, it looks for the charge by marker (an earlier attempt may have
    // made it) and takes it back if so.
    let update = e.action == OutboxAction::AutotaskUpdate
        || (e.action == OutboxAction::AutotaskCharge && line.removed);
    match e.action {
        _ if update => {
            let change = super::update::push_autotask_update(autotask, &inv, &line, draft).await?;
            let mut l = ledger(RemoteSystem::Autotask, LedgerOutcome::Ok, requested_at);
            l.remote_id = Some(change.charge_id.to_string());
            l.remote_status = Some(change.what.clone());
            l.amount = Some(change.amount);
            Ok((
                l,
                RemoteEffect::AutotaskCharge {
                    charge_id: change.charge_id,
                },
            ))
        }
        OutboxAction::AutotaskCharge | OutboxAction::AutotaskUpdate => {
            let remote = autotask.push_charge(&draft).await?;
            let mut l = ledger(RemoteSystem::Autotask, LedgerOutcome::Ok, requested_at);
            l.remote_id = Some(remote.id.to_string());
            l.remote_status = Some(if remote.is_billed {
                "billed".into()
            } else {
                "not billed".into()
            });
            l.amount = Some(amount);
            Ok((
                l,
                RemoteEffect::AutotaskCharge {
                    charge_id: remote.id,
                },
            ))
        }
        OutboxAction::XeroInvoice | OutboxAction::XeroEmail | OutboxAction::XeroUpdate => {
            Err(ChargeError::Local(PipelineError::Refused(format!(
                "outbox entry {} is a Xero action, not an Autotask one",
                e.id
            ))))
        }
    }
}
