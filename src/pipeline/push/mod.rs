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
//!
//! Xero (`xero.rs`) and Autotask (`autotask.rs`) are drained side by side, each on its own: an
//! error that stops one system (a revoked grant, refused credentials, a local failure) is reported
//! for that system, its claims not yet started are released, and the other system goes on.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{Pipeline, PipelineError};
use crate::clock::Clock;
use crate::domain::{LedgerOutcome, OutboxAction, OutboxId, OutboxStatus, RemoteSystem};
use crate::store::Store;
use crate::store::outbox::{LedgerEntry, OutboxEntry};

mod autotask;
mod xero;

/// What one push did, per system. A system whose push stopped early (a revoked Xero grant, a local
/// error) says why in `xero_stopped` / `autotask_stopped`; the other system's work is unaffected
/// and counted as usual.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    pub xero_invoices_created: Vec<String>,
    pub xero_invoices_found_again: Vec<String>,
    pub emailed: Vec<String>,
    /// Xero updates (edits, voids, credit notes, extra invoices).
    pub xero_updated: usize,
    pub autotask_charges: usize,
    /// Autotask updates (patches, deletions, correcting charges).
    pub autotask_updated: usize,
    /// Duplicate documents removed (Xero invoices voided, Autotask charges deleted), both systems.
    pub duplicates_removed: usize,
    /// Both systems' updates.
    pub updated: usize,
    pub failed: Vec<String>,
    pub parked: Vec<String>,
    pub waiting_for_config: usize,
    /// Why the Xero push stopped before the outbox's Xero actions were all tried (they wait in
    /// the outbox for the next push).
    pub xero_stopped: Option<String>,
    /// Why the Autotask push stopped before its actions were all tried.
    pub autotask_stopped: Option<String>,
}

impl PushReport {
    /// Adds what another part of the push did.
    fn absorb(&mut self, other: PushReport) {
        self.xero_invoices_created
            .extend(other.xero_invoices_created);
        self.xero_invoices_found_again
            .extend(other.xero_invoices_found_again);
        self.emailed.extend(other.emailed);
        self.xero_updated += other.xero_updated;
        self.autotask_charges += other.autotask_charges;
        self.autotask_updated += other.autotask_updated;
        self.duplicates_removed += other.duplicates_removed;
        self.updated += other.updated;
        self.failed.extend(other.failed);
        self.parked.extend(other.parked);
        self.waiting_for_config += other.waiting_for_config;
        self.xero_stopped = self.xero_stopped.take().or(other.xero_stopped);
        self.autotask_stopped = self.autotask_stopped.take().or(other.autotask_stopped);
    }

    /// Why each system that stopped early did, named: empty when both pushed everything due.
    pub fn stopped(&self) -> Vec<String> {
        [
            ("Xero", &self.xero_stopped),
            ("Autotask", &self.autotask_stopped),
        ]
        .into_iter()
        .filter_map(|(name, why)| why.as_ref().map(|w| format!("{name}: {w}")))
        .collect()
    }

    /// What was sent, one line per system, in the words `push` and `run` print: each system's own
    /// counts, and for a system that stopped, why and that its actions wait in the outbox.
    pub fn summary(&self) -> Vec<String> {
        let stopped = |why: &Option<String>| match why {
            Some(w) => format!("; stopped: {w} (the rest waits in the outbox)"),
            None => String::new(),
        };
        vec![
            format!(
                "Xero: {} invoice(s) created, {} found already there, {} emailed, {} update(s){}",
                self.xero_invoices_created.len(),
                self.xero_invoices_found_again.len(),
                self.emailed.len(),
                self.xero_updated,
                stopped(&self.xero_stopped)
            ),
            format!(
                "Autotask: {} charge(s) created, {} update(s){}",
                self.autotask_charges,
                self.autotask_updated,
                stopped(&self.autotask_stopped)
            ),
        ]
    }
}

/// The order each system's outbox is drained in: Xero creates before duplicate removals before
/// updates before emails (an email waits for its invoice); Autotask creates before removals before
/// updates (a line's duplicate charge goes before its amount is checked).
const XERO_ORDER: [OutboxAction; 4] = [
    OutboxAction::XeroInvoice,
    OutboxAction::XeroRemoveDuplicate,
    OutboxAction::XeroUpdate,
    OutboxAction::XeroEmail,
];
const AUTOTASK_ORDER: [OutboxAction; 3] = [
    OutboxAction::AutotaskCharge,
    OutboxAction::AutotaskRemoveDuplicate,
    OutboxAction::AutotaskUpdate,
];

/// Pushes everything due at `now`: Xero and Autotask side by side, each on its own, so that one
/// system's outage (a revoked grant, a day budget, an unreachable host) never holds up the other.
/// A system that stops early is named in the report with its reason; the error is not the whole
/// push's. Only a failure outside both (reading the outbox at the end) is returned as an error.
pub async fn drain(p: &Pipeline, now: DateTime<Utc>) -> Result<PushReport, PipelineError> {
    let (xero, autotask) = tokio::join!(
        drain_system(p, RemoteSystem::Xero, &XERO_ORDER, now),
        drain_system(p, RemoteSystem::Autotask, &AUTOTASK_ORDER, now),
    );
    let mut report = xero;
    report.absorb(autotask);
    let pending = p.store.outbox(None).await?;
    report.waiting_for_config = pending
        .iter()
        .filter(|o| o.status == OutboxStatus::Pending && !configured(p, o.action.system()))
        .count();
    Ok(report)
}

/// One system's part of the push, in `order`. An error stops this system only: it is logged and
/// reported (what was done before it is kept in the report), and its remaining entries wait.
async fn drain_system(
    p: &Pipeline,
    system: RemoteSystem,
    order: &[OutboxAction],
    now: DateTime<Utc>,
) -> PushReport {
    let mut report = PushReport::default();
    if !configured(p, system) {
        return report;
    }
    // Autotask's thresholds are read only when there is Autotask work: an idle outbox tick
    // spends nothing of the tenant's hourly budget.
    if system == RemoteSystem::Autotask
        && let Some(at) = &p.autotask
        && p.store.outbox_has_due(order, now).await.unwrap_or(true)
        && let Err(e) = at.prepare_run().await
    {
        tracing::warn!(error = %e, "could not read Autotask's thresholds; pacing to the configured budget");
    }
    let stop = 'push: {
        for action in order {
            // Between batches the loop checks for shutdown: what is in flight finishes, nothing
            // new starts.
            loop {
                if p.stopping() {
                    break 'push Some("shutting down".to_string());
                }
                match push_batch(p, *action, now, &mut report).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(%system, error = %e, "this system's push stopped; its remaining actions wait in the outbox (the other system goes on)");
                        let why = e.to_string();
                        match system {
                            RemoteSystem::Xero => report.xero_stopped = Some(why.clone()),
                            RemoteSystem::Autotask => report.autotask_stopped = Some(why.clone()),
                        }
                        break 'push Some(why);
                    }
                }
            }
        }
        None
    };
    if let Some(why) = stop {
        // Nothing of this system is in flight any more: what it still holds was claimed and not
        // started. Released at once, the next push (this process's or another's) takes it.
        match release_claims(p, system, &why).await {
            Ok(released) => report
                .parked
                .extend(released.into_iter().map(|k| format!("{k}: {why}"))),
            Err(e) => {
                tracing::warn!(%system, error = %e, "could not release this push's claims; they expire after schedule.claim_secs")
            }
        }
    }
    report
}

/// Gives back the claims this process holds on `system`'s entries (their attempt too, never their
/// uncertainty), due again at once. Returns the keys of the entries released.
async fn release_claims(
    p: &Pipeline,
    system: RemoteSystem,
    why: &str,
) -> Result<Vec<String>, PipelineError> {
    let now = p.now();
    let mut released = Vec::new();
    for e in p.store.outbox(None).await? {
        // A park is written only where this owner still holds the claim: others' are untouched.
        if e.status == OutboxStatus::InFlight
            && e.action.system() == system
            && p.store.park_outbox(&e, &p.owner, now, why).await?
        {
            released.push(e.idempotency_key);
        }
    }
    Ok(released)
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
        OutboxAction::XeroInvoice => xero::invoices(p, now, report).await,
        OutboxAction::XeroUpdate | OutboxAction::XeroRemoveDuplicate => {
            xero::updates(p, action, now, report).await
        }
        OutboxAction::XeroEmail => xero::emails(p, now, report).await,
        OutboxAction::AutotaskCharge
        | OutboxAction::AutotaskUpdate
        | OutboxAction::AutotaskRemoveDuplicate => autotask::charges(p, action, now, report).await,
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
