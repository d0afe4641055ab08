//! The Autotask half of the push: contract charges created (never twice: by marker, after the
//! settle time when an earlier create's outcome is unknown) and updated, each entry's outcome
//! written as soon as it is known. A batch's creates are decided by one read per contract (its
//! charges whose marker begins with what the batch's markers on it share), not one per charge.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;

use super::{PushReport, Renewal, about_to_send, claim, ledger, retry_at, written};
use crate::autotask::{AutotaskClient, AutotaskError, RemoteCharge, common_prefix};
use crate::domain::{LedgerOutcome, Money, OutboxAction, RemoteSystem};
use crate::pipeline::drafts::charge_draft;
use crate::pipeline::{Pipeline, PipelineError};
use crate::store::outbox::{LedgerEntry, OutboxEntry, RemoteEffect};

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
    Removed,
    Failed(String),
    Parked(String),
    /// The claim was lost (taken over by another worker) or shutdown began: nothing written.
    Left,
}

/// Whether an Autotask error leaves the create's outcome unknown (the request may have reached
/// Autotask): a dropped connection, a timeout, a 5xx without Autotask's own words.
fn outcome_unknown(err: &AutotaskError) -> bool {
    matches!(
        err,
        AutotaskError::Transport(_) | AutotaskError::Http { .. }
    )
}

pub(super) async fn charges(
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
    let seen = &read_contracts(p, autotask, &entries).await?;
    // Each entry's outcome is written as soon as it is known, not when the batch ends.
    let results: Vec<Result<(OutboxEntry, ChargeDone), PipelineError>> =
        futures::stream::iter(entries)
            .map(|e| async move {
                let done = charge_entry(p, autotask, &e, seen).await?;
                Ok((e, done))
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    for r in results {
        let (e, done) = r?;
        match done {
            ChargeDone::Created => report.autotask_charges += 1,
            ChargeDone::Updated => {
                report.updated += 1;
                report.autotask_updated += 1;
            }
            ChargeDone::Removed => report.duplicates_removed += 1,
            ChargeDone::Failed(why) => report.failed.push(format!("{}: {why}", e.idempotency_key)),
            ChargeDone::Parked(why) => report.parked.push(format!("{}: {why}", e.idempotency_key)),
            ChargeDone::Left => {}
        }
    }
    Ok(handled)
}

/// What one read of a contract's charges found, by (contract, marker): the charge with that
/// marker, or None when the read found none. A create whose marker is here needs no look-up of
/// its own; one that is not (its contract's read failed, or it was not yet due to be read) looks
/// for its marker itself, as before.
type Seen = HashMap<(i64, String), Option<RemoteCharge>>;

/// Reads, once per contract, the charges the batch's creates may already have made, and returns
/// what it found for each create's marker. Only creates that may be sent now are read for: an
/// entry whose earlier create has an unknown outcome is read for only once `autotask.settle_secs`
/// have passed since it was sent (the same rule as the per-entry look-up), and the read comes
/// after that moment, so it sees whatever that create did. A failed read decides nothing: those
/// entries look for their own markers.
async fn read_contracts(
    p: &Pipeline,
    autotask: &AutotaskClient,
    entries: &[OutboxEntry],
) -> Result<Seen, PipelineError> {
    let now = p.now();
    if p.stopping() {
        return Ok(Seen::new());
    }
    let settle = Duration::seconds(p.config.autotask.settle_secs as i64);
    let mut markers: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for e in entries {
        let settling = e.uncertain_since.is_some_and(|since| since + settle > now);
        let (OutboxAction::AutotaskCharge, Some(line_id), false) = (e.action, e.line_id, settling)
        else {
            continue;
        };
        let line = p.store.line(line_id).await?;
        if line.removed {
            continue;
        }
        let inv = p.store.invoice_by_id(e.invoice_id).await?;
        if let Ok(d) = charge_draft(&inv, &line, 1) {
            markers
                .entry(d.contract_id.get())
                .or_default()
                .push(d.marker);
        }
    }
    let mut seen = Seen::new();
    for (contract, wanted) in markers {
        let Ok(contract_id) = crate::domain::ContractId::new(contract) else {
            continue;
        };
        let prefix = common_prefix(wanted.iter().map(String::as_str));
        match autotask
            .charges_by_marker_prefix(contract_id, &prefix)
            .await
        {
            Ok(found) => {
                for m in wanted {
                    let hit = found
                        .iter()
                        .find(|c| c.marker.as_deref() == Some(m.as_str()))
                        .cloned();
                    seen.insert((contract, m), hit);
                }
            }
            Err(err) => {
                tracing::warn!(contract, error = %err, "could not read the contract's charges; each create looks for its own marker");
                // Out of budget, throttled or refused: the other contracts' reads would be too.
                if err.retry_after().is_some() || matches!(err, AutotaskError::Unauthorized { .. })
                {
                    break;
                }
            }
        }
    }
    Ok(seen)
}

/// One Autotask entry, from its claim to its written outcome.
async fn charge_entry(
    p: &Pipeline,
    autotask: &AutotaskClient,
    e: &OutboxEntry,
    seen: &Seen,
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
    match push_charge(p, autotask, e, seen).await {
        Ok((l, effect)) => {
            crate::pipeline::crash_point("charge_created_before_ledger");
            if !written(
                p,
                e,
                p.store.complete_outbox(e, &p.owner, &l, &effect).await?,
            ) {
                return Ok(ChargeDone::Left);
            }
            Ok(match e.action {
                OutboxAction::AutotaskUpdate => ChargeDone::Updated,
                OutboxAction::AutotaskRemoveDuplicate => ChargeDone::Removed,
                OutboxAction::AutotaskCharge
                | OutboxAction::XeroInvoice
                | OutboxAction::XeroEmail
                | OutboxAction::XeroUpdate
                | OutboxAction::XeroRemoveDuplicate => ChargeDone::Created,
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
            if matches!(err, AutotaskError::Unauthorized { .. }) {
                // Every other request would be refused the same way: the Autotask push stops
                // (the drain releases the rest of its claims); Xero goes on.
                written(p, e, held);
                return Err(PipelineError::Autotask(err));
            }
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
    autotask: &AutotaskClient,
    e: &OutboxEntry,
    seen: &Seen,
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
    if e.action == OutboxAction::AutotaskRemoveDuplicate {
        let charge_id = e
            .remote_id
            .as_deref()
            .and_then(|id| id.parse::<i64>().ok())
            .ok_or_else(|| {
                ChargeError::Local(PipelineError::Refused(format!(
                    "outbox entry {} names no duplicate charge",
                    e.id
                )))
            })?;
        let what =
            crate::pipeline::duplicates::remove_autotask_charge(autotask, &inv, &line, charge_id)
                .await?;
        let mut l = ledger(RemoteSystem::Autotask, LedgerOutcome::Ok, requested_at);
        l.remote_id = Some(charge_id.to_string());
        l.remote_status = Some(what.clone());
        return Ok((l, RemoteEffect::DuplicateRemoved { what }));
    }
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
                crate::pipeline::update::push_autotask_update(p, autotask, &inv, &line, draft)
                    .await?;
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
            let remote = match seen.get(&(draft.contract_id.get(), draft.marker.clone())) {
                Some(found) => autotask.create_charge_unless(&draft, found.clone()).await?,
                None => autotask.push_charge(&draft).await?,
            };
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
        OutboxAction::XeroInvoice
        | OutboxAction::XeroEmail
        | OutboxAction::XeroUpdate
        | OutboxAction::XeroRemoveDuplicate => {
            Err(ChargeError::Local(PipelineError::Refused(format!(
                "outbox entry {} is a Xero action, not an Autotask one",
                e.id
            ))))
        }
        // Carried out above, before a draft is made of the line.
        OutboxAction::AutotaskRemoveDuplicate => {
            Err(ChargeError::Local(PipelineError::Refused(format!(
                "outbox entry {} removes a duplicate; it creates nothing",
                e.id
            ))))
        }
    }
}
