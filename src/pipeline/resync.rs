//! `rebilld --resync`: recompute a period and bring Autotask and Xero in line with it.
//!
//! `plan` reads (database and, for Xero, the remote invoice's state) and writes nothing; `apply`
//! performs exactly the plan. `resync` does both under the period lease, or only the plan with
//! `--dry-run`, so the plan shown is the plan a real run carries out. Unchanged lines are no-ops;
//! a changed line updates the remote record while it can still be changed (Xero: draft or unpaid;
//! Autotask: `isBilled = false`), otherwise an adjustment is made (a credit note or an extra
//! invoice; a correcting charge). Which lines changed is `domain::invoice::diff_lines`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Pipeline, PipelineError, PushReport, lease, record, snapshot};
use crate::domain::billing::{ComputedInvoice, Destination, compute_invoices};
use crate::domain::invoice::{LineChanges, diff_lines};
use crate::domain::{
    CustomerId, InvoiceId, Money, OutboxAction, OutboxStatus, Period, RemoteSystem,
};
use crate::store::billing::{InvoiceChanges, OutboxEntry, StoredInvoice};
use crate::store::outbox::NewAction;

#[derive(Debug, Clone)]
pub struct ResyncRequest {
    pub period: Period,
    pub customer: Option<CustomerId>,
    pub dry_run: bool,
}

/// What a planned change does, in the words ops read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// A new invoice (the customer had none for the period).
    Create,
    /// The email decision of a new invoice.
    Email,
    /// A line changed on an invoice not yet in Xero, or an Autotask charge.
    Update,
    /// A line changed on an invoice already in Xero: edited while unpaid, else adjusted.
    Adjust,
    /// Failed remote actions queued again.
    Retry,
    /// A second document for one Reference or marker (what reconcile reports as a duplicate):
    /// voided or deleted while the remote allows it.
    RemoveDuplicate,
    /// Nothing to do.
    Unchanged,
}

impl std::fmt::Display for PlanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PlanKind::Create => "create",
            PlanKind::Email => "email",
            PlanKind::Update => "update",
            PlanKind::Adjust => "adjust",
            PlanKind::Retry => "retry",
            PlanKind::RemoveDuplicate => "remove duplicate",
            PlanKind::Unchanged => "unchanged",
        })
    }
}

/// One customer's part of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    pub customer_id: CustomerId,
    pub customer_name: String,
    pub invoice: Option<String>,
    pub kind: PlanKind,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResyncPlan {
    pub period: Period,
    pub actions: Vec<PlannedAction>,
    #[serde(skip)]
    work: Vec<Work>,
}

#[derive(Debug, Clone)]
enum Work {
    Record(Box<ComputedInvoice>),
    Change {
        invoice_id: InvoiceId,
        changes: InvoiceChanges,
    },
    Retry {
        invoice_id: InvoiceId,
    },
    /// Duplicates the remote still lets be removed.
    RemoveDuplicates(Vec<super::reconcile::DuplicateDoc>),
    /// Remote drift on unchanged lines (what reconcile reports): the actions that repair it.
    Repair {
        invoice_id: InvoiceId,
        actions: Vec<(OutboxAction, Option<crate::domain::LineId>)>,
    },
}

impl ResyncPlan {
    pub fn is_noop(&self) -> bool {
        self.work.is_empty()
    }
}

/// What a resync did: the plan, and what the push did when it was carried out (`None` for a dry
/// run or an empty plan).
#[derive(Debug, Clone, Serialize)]
pub struct ResyncOutcome {
    pub plan: ResyncPlan,
    pub pushed: Option<PushReport>,
}

/// A resync of one period (or one customer of it), under the period lease: plan, then unless it is
/// a dry run or a no-op, apply and push. `PeriodHeld` at once when another process holds it.
pub async fn resync(p: &Pipeline, req: &ResyncRequest) -> Result<ResyncOutcome, PipelineError> {
    if let Some(c) = req.customer {
        // Refused up front, naming it: a resync of a customer that does not exist is a typo.
        p.store.customer(c).await?;
    }
    lease::with_period_lease(p, req.period, |p| async move {
        let plan = plan(&p, req).await?;
        if req.dry_run || plan.is_noop() {
            return Ok(ResyncOutcome { plan, pushed: None });
        }
        let pushed = apply(&p, &plan).await?;
        Ok(ResyncOutcome {
            plan,
            pushed: Some(pushed),
        })
    })
    .await
}

/// Builds the plan: reads only.
pub async fn plan(p: &Pipeline, req: &ResyncRequest) -> Result<ResyncPlan, PipelineError> {
    let tz = p.config.business.tz();
    let snap = snapshot::take(
        &p.store,
        req.period,
        tz,
        p.config.invoices.catch_up_months,
        true,
    )
    .await?;
    let computed = compute_invoices(&snap, req.period, &record::settings(&p.config));
    let names: BTreeMap<CustomerId, String> = snap
        .customers
        .iter()
        .map(|c| (c.id, c.name.to_string()))
        .collect();
    let recorded: BTreeMap<CustomerId, StoredInvoice> = p
        .store
        .invoices(Some(req.period), req.customer)
        .await?
        .into_iter()
        .map(|i| (i.customer_id, i))
        .collect();
    let wanted: BTreeMap<CustomerId, &ComputedInvoice> = computed
        .invoices
        .iter()
        .filter(|d| req.customer.is_none_or(|c| c == d.customer_id))
        .map(|d| (d.customer_id, d))
        .collect();
    let mut plan = ResyncPlan {
        period: req.period,
        actions: Vec::new(),
        work: Vec::new(),
    };
    let customers: std::collections::BTreeSet<CustomerId> =
        recorded.keys().chain(wanted.keys()).copied().collect();
    for cid in customers {
        let name = names.get(&cid).cloned().unwrap_or_default();
        let say = |invoice: Option<String>, kind: PlanKind, description: String| PlannedAction {
            customer_id: cid,
            customer_name: name.clone(),
            invoice,
            kind,
            description,
        };
        match (recorded.get(&cid), wanted.get(&cid)) {
            (None, Some(d)) => {
                let total: Money = d.lines.iter().map(|l| l.amount).sum();
                let where_to = match d.destination {
                    Destination::Autotask { .. } => {
                        format!("{} Autotask contract charge(s)", d.lines.len())
                    }
                    Destination::Xero { .. } => {
                        format!("a Xero invoice of {} line(s)", d.lines.len())
                    }
                };
                plan.actions.push(say(
                    None,
                    PlanKind::Create,
                    format!("new invoice, total {total}: {where_to}"),
                ));
                plan.actions
                    .push(say(None, PlanKind::Email, record::email_decision(&d.email)));
                plan.work.push(Work::Record(Box::new((*d).clone())));
            }
            (Some(inv), wanted) => {
                let mut removable = Vec::new();
                for d in super::reconcile::duplicates(p, inv).await? {
                    let description = match d.why_kept() {
                        None => format!("{}: removed", d.describe()),
                        Some(why) => format!("{}: kept, {why}", d.describe()),
                    };
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        PlanKind::RemoveDuplicate,
                        description,
                    ));
                    if d.why_kept().is_none() {
                        removable.push(d);
                    }
                }
                if !removable.is_empty() {
                    plan.work.push(Work::RemoveDuplicates(removable));
                }
                let lines = p.store.invoice_lines(inv.id).await?;
                let recomputed = wanted.map(|d| d.lines.as_slice()).unwrap_or_default();
                let changes = diff_lines(&lines, recomputed);
                let outbox = p.store.outbox(Some(inv.id)).await?;
                let failed = outbox
                    .iter()
                    .filter(|o| o.status == OutboxStatus::Failed)
                    .count();
                if changes.is_empty() {
                    if failed > 0 {
                        plan.actions.push(say(
                            Some(inv.number.clone()),
                            PlanKind::Retry,
                            format!("{failed} failed remote action(s) queued again"),
                        ));
                        plan.work.push(Work::Retry { invoice_id: inv.id });
                    } else {
                        let drift = super::reconcile::drift(p, inv).await?;
                        if drift.is_empty() {
                            plan.actions.push(say(
                                Some(inv.number.clone()),
                                PlanKind::Unchanged,
                                format!("total {}", inv.total()),
                            ));
                        } else {
                            for (_, _, why) in &drift {
                                plan.actions.push(say(
                                    Some(inv.number.clone()),
                                    PlanKind::Adjust,
                                    format!("repair: {why}"),
                                ));
                            }
                            plan.work.push(Work::Repair {
                                invoice_id: inv.id,
                                actions: drift.into_iter().map(|(a, l, _)| (a, l)).collect(),
                            });
                        }
                    }
                    continue;
                }
                let kind = if inv.in_xero() {
                    PlanKind::Adjust
                } else {
                    PlanKind::Update
                };
                for (id, l) in &changes.changed {
                    let old = lines
                        .iter()
                        .find(|x| x.id == *id)
                        .map(|x| x.amount)
                        .unwrap_or_default();
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        kind,
                        format!("{}: {} → {}", l.description, old, l.amount),
                    ));
                }
                for l in &changes.added {
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        kind,
                        format!("add {}: {}", l.description, l.amount),
                    ));
                }
                for id in &changes.removed {
                    if let Some(x) = lines.iter().find(|x| x.id == *id) {
                        plan.actions.push(say(
                            Some(inv.number.clone()),
                            kind,
                            format!("remove {}: {}", x.description, x.amount),
                        ));
                    }
                }
                if inv.in_xero() {
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        PlanKind::Adjust,
                        "the Xero invoice is updated while it is draft or unpaid; once paid, a credit note (decrease) or an extra invoice (increase) is made instead".into(),
                    ));
                }
                plan.work.push(Work::Change {
                    invoice_id: inv.id,
                    changes: invoice_changes(inv, changes, &outbox),
                });
            }
            (None, None) => {}
        }
    }
    Ok(plan)
}

/// The remote actions that carry changed lines to where the invoice went.
fn invoice_changes(
    inv: &StoredInvoice,
    lines: LineChanges,
    outbox: &[OutboxEntry],
) -> InvoiceChanges {
    let rev = inv.revision + 1;
    let mut actions = Vec::new();
    // A refused action for a line that changes or goes is superseded by what is queued now (for
    // a re-coded line, the push with its new coding), never replayed.
    let touched: Vec<crate::domain::LineId> = lines
        .changed
        .iter()
        .map(|(id, _)| *id)
        .chain(lines.removed.iter().copied())
        .collect();
    let cancel = outbox
        .iter()
        .filter(|o| o.status == OutboxStatus::Failed)
        .filter(|o| o.line_id.is_some_and(|l| touched.contains(&l)))
        .map(|o| o.id)
        .collect();
    match inv.destination {
        RemoteSystem::Autotask => {
            let n_changed = lines.changed.len();
            let n_added = lines.added.len();
            for i in 0..n_changed + n_added + lines.removed.len() {
                let is_added = i >= n_changed && i < n_changed + n_added;
                actions.push(NewAction {
                    action: if is_added {
                        OutboxAction::AutotaskCharge
                    } else {
                        OutboxAction::AutotaskUpdate
                    },
                    key: format!("at-resync:{}:r{rev}:{i}", inv.id),
                    line: Some(i),
                    after: None,
                });
            }
        }
        RemoteSystem::Xero => {
            let created = outbox
                .iter()
                .any(|o| o.action == OutboxAction::XeroInvoice && o.status == OutboxStatus::Done);
            if created {
                actions.push(NewAction {
                    action: OutboxAction::XeroUpdate,
                    key: format!("xero-update:{}:r{rev}", inv.id),
                    line: None,
                    after: None,
                });
            }
            // Not yet created: the pending create sends the new lines; nothing else to queue.
        }
    }
    InvoiceChanges {
        lines,
        actions,
        cancel,
    }
}

/// Carries out a plan made by `plan` (nothing else), then pushes what it queued. The caller holds
/// the period lease.
async fn apply(p: &Pipeline, plan: &ResyncPlan) -> Result<PushReport, PipelineError> {
    let mut new = Vec::new();
    for w in &plan.work {
        match w {
            Work::Record(d) => new.push((**d).clone()),
            Work::Change {
                invoice_id,
                changes,
            } => {
                p.store
                    .apply_invoice_changes(*invoice_id, changes, p.now())
                    .await?;
            }
            Work::Retry { invoice_id } => {
                p.store.retry_failed_outbox(*invoice_id, p.now()).await?;
            }
            Work::RemoveDuplicates(docs) => {
                for d in docs {
                    let done = super::reconcile::remove_duplicate(p, d).await?;
                    tracing::info!(what = %done, "duplicate removed");
                }
            }
            Work::Repair {
                invoice_id,
                actions,
            } => {
                p.store.queue_repairs(*invoice_id, actions, p.now()).await?;
            }
        }
    }
    if !new.is_empty() {
        let computed = crate::domain::billing::Computed {
            invoices: new,
            skipped: Vec::new(),
        };
        record::record(&p.store, &p.config, plan.period, &computed).await?;
    }
    p.drain(p.now()).await
}
