//! Step 4: drain the outbox. Each entry is claimed (the attempt is counted before any remote call),
//! sent through an idempotent request, and finished in one transaction that writes the ledger row,
//! marks the entry done and stores the remote id, as soon as its outcome is known.
//!
//! Exactly once rests on three rules, each enforced here and in `store::outbox`:
//! - **Owned claims.** A claim's deadline counts from when it was taken; it is renewed while the
//!   work is in flight (`Renewal`), and every outcome is written only while the claim is still held.
//!   A worker that lost its claim logs it and stops that entry.
//! - **Uncertain until known.** Just before a create or an email is sent the entry is marked
//!   uncertain; only a known outcome clears it. An uncertain entry is never sent again blind: the
//!   remote is read first (Xero invoices by `Reference`, emails by the invoice's `SentToContact`,
//!   Autotask charges by marker once `autotask.settle_secs` have passed since the send). Parking
//!   gives the attempt back but never the uncertainty, so a park cannot skip the look-up.
//! - The `Idempotency-Key` is a second line of defence only.

use chrono::{DateTime, Duration, Utc};

use crate::clock::Clock;
use crate::domain::OutboxId;
use crate::store::Store;
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

/// What became of one Autotask entry (for the report).
enum ChargeDone {
    Created,
    Updated,
    Failed(String),
    Parked(String),
    /// The claim was lost (taken over by another worker) or shutdown began: nothing written.
    Left,
}

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

/// How long a claim holds before another worker (or this one, restarted) may take the entry over:
/// `schedule.claim_secs` from the time it is taken or renewed (never from when the push started).
fn claim_until(p: &Pipeline, now: DateTime<Utc>) -> DateTime<Utc> {
    now.max(p.now()) + Duration::seconds(p.config.schedule.claim_secs as i64)
}

/// Claims up to `limit` due entries of `action` at `now` (the drain's view of what is due), with a
/// deadline counted from this moment.
async fn claim(
    p: &Pipeline,
    action: OutboxAction,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<OutboxEntry>, PipelineError> {
    let at = now.max(p.now());
    Ok(p.store
        .claim_outbox(action, &p.owner, at, claim_until(p, at), limit)
        .await?)
}

/// Renews the claims of a batch while its work is in flight, every third of `schedule.claim_secs`
/// (at least every second); stops when dropped. A renewal that finds the claim gone is logged:
/// the entry's outcome will not be written by this worker (every write checks the claim).
struct Renewal(tokio::task::JoinHandle<()>);

impl Renewal {
    fn start(p: &Pipeline, ids: Vec<OutboxId>) -> Renewal {
        let store: Store = p.store.clone();
        let owner = p.owner.clone();
        let clock: std::sync::Arc<dyn Clock> = p.clock.clone();
        let claim = Duration::seconds(p.config.schedule.claim_secs as i64);
        let every = std::time::Duration::from_secs((p.config.schedule.claim_secs / 3).max(1));
        Renewal(tokio::spawn(async move {
            let mut held = ids;
            loop {
                tokio::time::sleep(every).await;
                let mut still = Vec::with_capacity(held.len());
                for id in held {
                    match store
                        .hold_claim(id, &owner, clock.now() + claim, None)
                        .await
                    {
                        Ok(true) => still.push(id),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(outbox = %id, error = %e, "could not renew an outbox claim");
                            still.push(id);
                        }
                    }
                }
                held = still;
            }
        }))
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Renews the claim on `e` and records that its request is about to be sent (the entry is
/// uncertain from now until its outcome is written). False when the claim is no longer held: the
/// request must not be sent.
async fn about_to_send(p: &Pipeline, e: &OutboxEntry) -> Result<bool, PipelineError> {
    let now = p.now();
    let held = p
        .store
        .hold_claim(e.id, &p.owner, claim_until(p, now), Some(now))
        .await?;
    if !held {
        claim_lost(p, e);
    }
    Ok(held)
}

fn claim_lost(p: &Pipeline, e: &OutboxEntry) {
    tracing::warn!(
        outbox = %e.id,
        action = %e.action,
        owner = %p.owner,
        "the claim on this outbox entry was taken over by another worker; leaving it to them"
    );
}

/// Logs a write that found the claim gone (the outcome is the new holder's to establish).
fn written(p: &Pipeline, e: &OutboxEntry, held: bool) -> bool {
    if !held {
        claim_lost(p, e);
    }
    held
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
                        super::crash_point("xero_created_before_ledger");
                        if written(
                            p,
                            e,
                            p.store.complete_outbox(e, &p.owner, &l, &effect).await?,
                        ) {
                            report.xero_invoices_created.push(inv.number.clone());
                        }
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
/// An entry marked uncertain before its request stays uncertain whichever way it is sorted.
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

async fn xero_emails(
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
                super::crash_point("emailed_before_ledger");
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

async fn xero_updates(
    p: &Pipeline,
    now: DateTime<Utc>,
    report: &mut PushReport,
) -> Result<usize, PipelineError> {
    let entries = claim(p, OutboxAction::XeroUpdate, now, 10).await?;
    let handled = entries.len();
    let _renewal = Renewal::start(p, entries.iter().map(|e| e.id).collect());
    for e in entries {
        let requested_at = p.now();
        if !about_to_send(p, &e).await? {
            continue;
        }
        match super::update::push_xero_update(p, &e).await {
            Ok((l, effect)) => {
                if written(
                    p,
                    &e,
                    p.store.complete_outbox(&e, &p.owner, &l, &effect).await?,
                ) {
                    report.updated += 1;
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

/// Whether an Autotask error leaves the create's outcome unknown (the request may have reached
/// Autotask): a dropped connection, a timeout, a 5xx without Autotask's own words.
fn outcome_unknown(err: &AutotaskError) -> bool {
    matches!(
        err,
        AutotaskError::Transport(_) | AutotaskError::Http { .. }
    )
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
    let entries = claim(p, action, now, 50).await?;
    let handled = entries.len();
    let _renewal = Renewal::start(p, entries.iter().map(|e| e.id).collect());
    let concurrency = p.config.autotask.max_concurrent.max(1) as usize;
    // Each entry's outcome is written as soon as it is known, not when the batch ends.
    let results: Vec<Result<(OutboxEntry, ChargeDone), PipelineError>> =
        futures::stream::iter(entries)
            .map(|e| async move {
                let done = charge_entry(p, autotask, &e).await?;
                Ok((e, done))
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    for r in results {
        let (e, done) = r?;
        match done {
            ChargeDone::Created => report.autotask_charges += 1,
            ChargeDone::Updated => report.updated += 1,
            ChargeDone::Failed(why) => report.failed.push(format!("{}: {why}", e.idempotency_key)),
            ChargeDone::Parked(why) => report.parked.push(format!("{}: {why}", e.idempotency_key)),
            ChargeDone::Left => {}
        }
    }
    Ok(handled)
}

/// One Autotask entry, from its claim to its written outcome.
async fn charge_entry(
    p: &Pipeline,
    autotask: &crate::autotask::AutotaskClient,
    e: &OutboxEntry,
) -> Result<ChargeDone, PipelineError> {
    let now = p.now();
    if p.stopping() {
        p.store
            .park_outbox(e, &p.owner, now, "shutting down")
            .await?;
        return Ok(ChargeDone::Left);
    }
    let settle = Duration::seconds(p.config.autotask.settle_secs as i64);
    // A create with no known outcome may still land: its marker is looked for only once it had
    // time to, never straight after the failure.
    if let Some(since) = e.uncertain_since
        && since + settle > now
    {
        let until = since + settle;
        let why = format!(
            "an earlier request's outcome is unknown; looking for its marker after {until} (autotask.settle_secs)"
        );
        return Ok(
            if written(p, e, p.store.park_outbox(e, &p.owner, until, &why).await?) {
                ChargeDone::Parked(why)
            } else {
                ChargeDone::Left
            },
        );
    }
    if !about_to_send(p, e).await? {
        return Ok(ChargeDone::Left);
    }
    let requested_at = p.now();
    match push_charge(p, autotask, e).await {
        Ok((l, effect)) => {
            super::crash_point("charge_created_before_ledger");
            if !written(
                p,
                e,
                p.store.complete_outbox(e, &p.owner, &l, &effect).await?,
            ) {
                return Ok(ChargeDone::Left);
            }
            Ok(match e.action {
                OutboxAction::AutotaskUpdate => ChargeDone::Updated,
                OutboxAction::AutotaskCharge
                | OutboxAction::XeroInvoice
                | OutboxAction::XeroEmail
                | OutboxAction::XeroUpdate => ChargeDone::Created,
            })
        }
        Err(ChargeError::Local(err)) => Err(err),
        Err(ChargeError::Remote(err)) => {
            let permanent = err.is_permanent();
            let outcome = if permanent {
                LedgerOutcome::PermanentError
            } else {
                LedgerOutcome::Error
            };
            let mut l = ledger(RemoteSystem::Autotask, outcome, requested_at);
            l.error = Some(err.to_string());
            let held = if let Some(wait) = err.retry_after() {
                let until = p.now() + Duration::from_std(wait).unwrap_or(Duration::minutes(5));
                let held = p
                    .store
                    .park_outbox(e, &p.owner, until, &err.to_string())
                    .await?;
                if held {
                    return Ok(ChargeDone::Parked(err.to_string()));
                }
                held
            } else {
                // An unknown outcome is retried no sooner than the settle time, and then looked for first.
                let retry = (!permanent).then(|| {
                    let backoff = retry_at(p.now(), e.attempts);
                    if outcome_unknown(&err) {
                        backoff.max(requested_at + settle)
                    } else {
                        backoff
                    }
                });
                p.store.fail_outbox(e, &p.owner, &l, retry).await?
            };
            Ok(if written(p, e, held) {
                ChargeDone::Failed(err.to_string())
            } else {
                ChargeDone::Left
            })
        }
    }
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
            let change =
                super::update::push_autotask_update(p, autotask, &inv, &line, draft).await?;
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
