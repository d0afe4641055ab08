//! `rebilld --resync`: recompute a period and bring Autotask and Xero in line with it.
//!
//! `plan` reads (the database, and what the remotes hold for the period's recorded invoices, in
//! bulk: `remote_view`) and writes nothing; `apply` performs exactly the plan, so its remote
//! requests follow the changes, not the number of customers. `resync` does both under the period lease, or only the plan with
//! `--dry-run`, so the plan shown is the plan a real run carries out. Unchanged lines are no-ops;
//! a changed line updates the remote record while it can still be changed (Xero: draft or unpaid;
//! Autotask: `isBilled = false`), otherwise an adjustment is made (a credit note or an extra
//! invoice; a correcting charge). Which lines changed is `domain::invoice::diff_lines`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::remote_view::RemoteView;
use super::{Pipeline, PipelineError, PushReport, lease, record, snapshot};
use crate::domain::billing::{ComputedInvoice, Destination, compute_invoices};
use crate::domain::invoice::{LineChanges, diff_lines};
use crate::domain::{
    CustomerId, InvoiceId, Money, OutboxAction, OutboxStatus, Period, RemoteSystem,
};
use crate::store::Actor;
use crate::store::billing::{InvoiceChanges, OutboxEntry, StoredInvoice, StoredLine};
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
    /// A line's amount or text changes in place: on an invoice not yet in Xero or still unpaid
    /// there, or on an Autotask charge not yet billed.
    Update,
    /// A line is added where it can be (a new line or charge), or, once the invoice is paid or the
    /// charge billed, an increase is billed on its own: an extra invoice, a correcting charge.
    Add,
    /// A decrease once the invoice is paid or the charge billed: a credit note, a (negative)
    /// correcting charge.
    Credit,
    /// A line taken off while it still can be: off the unpaid invoice (voided when every line
    /// goes), the unbilled charge deleted.
    Void,
    /// A change whose remote record could not be looked at: edited while it can be, else
    /// adjusted; and repairs of remote drift.
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
            PlanKind::Add => "add",
            PlanKind::Credit => "credit",
            PlanKind::Void => "void",
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
    /// The line it is about, for a line's change (its charge key).
    pub charge_key: Option<String>,
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
    /// Duplicates the remote still lets be removed: queued in the outbox, each its own action.
    RemoveDuplicates {
        invoice_id: InvoiceId,
        found: Vec<super::duplicates::Found>,
    },
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
    // What the remotes hold for every recorded invoice, read once, in bulk.
    let stored: Vec<StoredInvoice> = recorded.values().cloned().collect();
    let view = RemoteView::read(p, req.period, &stored).await?;
    let customers: std::collections::BTreeSet<CustomerId> =
        recorded.keys().chain(wanted.keys()).copied().collect();
    for cid in customers {
        let name = names.get(&cid).cloned().unwrap_or_default();
        let say_line = |invoice: Option<String>, kind: PlanKind, description: String, key: &str| {
            PlannedAction {
                customer_id: cid,
                customer_name: name.clone(),
                invoice,
                kind,
                description,
                charge_key: (!key.is_empty()).then(|| key.to_string()),
            }
        };
        let say = |invoice: Option<String>, kind: PlanKind, description: String| {
            say_line(invoice, kind, description, "")
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
                for f in super::duplicates::duplicates(p, &view, inv).await? {
                    let description = match f.doc.why_kept() {
                        None => format!("{}: removed", f.doc.describe()),
                        Some(why) => format!("{}: kept, {why}", f.doc.describe()),
                    };
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        PlanKind::RemoveDuplicate,
                        description,
                    ));
                    if f.doc.why_kept().is_none() {
                        removable.push(f);
                    }
                }
                if !removable.is_empty() {
                    plan.work.push(Work::RemoveDuplicates {
                        invoice_id: inv.id,
                        found: removable,
                    });
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
                        let drift = super::reconcile::drift(p, &view, inv).await?;
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
                // The remote records of the lines that change (an added line has none yet).
                let touched: Vec<&str> = changes
                    .changed
                    .iter()
                    .map(|(_, l)| l.charge_key.as_str())
                    .chain(changes.removed.iter().filter_map(|id| {
                        lines
                            .iter()
                            .find(|x| x.id == *id)
                            .map(|x| x.charge_key.as_str())
                    }))
                    .collect();
                let fixed = fixed_records(p, &view, inv, &lines, &touched);
                let n_live = recomputed.len();
                for (id, l) in &changes.changed {
                    // A removed line coming back bills nothing now: it is added again.
                    let was = lines
                        .iter()
                        .find(|x| x.id == *id)
                        .and_then(|x| (!x.removed).then_some(x.amount));
                    let old = was.unwrap_or_default();
                    let (kind, what) =
                        line_plan(inv, fixed.of(l.charge_key.as_str()), was, l.amount);
                    plan.actions.push(say_line(
                        Some(inv.number.clone()),
                        kind,
                        format!("{}: {old} → {}{what}", l.description, l.amount),
                        l.charge_key.as_str(),
                    ));
                }
                for l in &changes.added {
                    let (kind, what) =
                        line_plan(inv, fixed.of(l.charge_key.as_str()), None, l.amount);
                    plan.actions.push(say_line(
                        Some(inv.number.clone()),
                        kind,
                        format!("add {}: {}{what}", l.description, l.amount),
                        l.charge_key.as_str(),
                    ));
                }
                for id in &changes.removed {
                    if let Some(x) = lines.iter().find(|x| x.id == *id) {
                        let fixed_here = fixed.of(x.charge_key.as_str());
                        let (kind, mut what) =
                            line_plan(inv, fixed_here, Some(x.amount), Money::ZERO);
                        if kind == PlanKind::Void && n_live == 0 && inv.in_xero() {
                            what = " (every line is removed: the invoice is voided)".into();
                        }
                        plan.actions.push(say_line(
                            Some(inv.number.clone()),
                            kind,
                            format!("remove {}: {}{what}", x.description, x.amount),
                            x.charge_key.as_str(),
                        ));
                    }
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

/// Whether the remote records of an invoice's lines can still be edited, as far as a look at the
/// remote tells (`None`: could not be told; the push decides when it runs).
enum Fixed {
    /// Xero: the whole invoice (paid, voided), or not.
    Invoice(Option<bool>),
    /// Autotask: per line (charge key), whether a charge of it is billed.
    Charges(BTreeMap<String, bool>),
}

impl Fixed {
    fn of(&self, key: &str) -> Option<bool> {
        match self {
            Fixed::Invoice(f) => *f,
            Fixed::Charges(m) => Some(m.get(key).copied().unwrap_or(false)),
        }
    }
}

/// Whether the invoice's remote records can still change, as the view shows them: the Xero
/// invoice, or the Autotask charges of the lines keyed `touched`. A remote that is not configured,
/// or an invoice Xero does not have, leaves it unknown (the push decides when it runs).
fn fixed_records(
    p: &Pipeline,
    view: &RemoteView,
    inv: &StoredInvoice,
    lines: &[StoredLine],
    touched: &[&str],
) -> Fixed {
    match inv.destination {
        RemoteSystem::Xero => {
            let Some(id) = &inv.xero_invoice_id else {
                // Not in Xero yet: the pending create sends the lines as they are.
                return Fixed::Invoice(Some(false));
            };
            if p.xero.is_none() {
                return Fixed::Invoice(None);
            }
            Fixed::Invoice(
                view.invoice(id)
                    .map(|r| !r.is_editable() || r.state().is_cancelled()),
            )
        }
        RemoteSystem::Autotask => {
            let mut out = BTreeMap::new();
            if p.autotask.is_none() {
                return Fixed::Charges(out);
            }
            for l in lines
                .iter()
                .filter(|l| touched.contains(&l.charge_key.as_str()))
            {
                let Some(coding) = l.autotask else { continue };
                let marker = record::autotask_marker(inv.period, inv.customer_id, &l.charge_key, 1);
                let charges = view.charges_with_marker(coding.contract_id, &marker);
                out.insert(
                    l.charge_key.as_str().to_string(),
                    charges.iter().any(|c| c.is_billed),
                );
            }
            Fixed::Charges(out)
        }
    }
}

/// What a line's change does, in one word, and how (for the plan's text): `fixed` is whether its
/// remote record can no longer be edited (`None`: unknown); `old` is what it bills now (`None`
/// for a new line), `new` what it will.
fn line_plan(
    inv: &StoredInvoice,
    fixed: Option<bool>,
    old: Option<Money>,
    new: Money,
) -> (PlanKind, String) {
    let xero = inv.destination == RemoteSystem::Xero;
    let before = old.unwrap_or(Money::ZERO);
    let diff = new - before;
    match fixed {
        None => (
            PlanKind::Adjust,
            ": edited while the remote record can be, else adjusted".into(),
        ),
        Some(false) => match (old, new.is_zero()) {
            (None, _) => (PlanKind::Add, String::new()),
            (Some(_), true) => (PlanKind::Void, String::new()),
            (Some(_), false) => (PlanKind::Update, String::new()),
        },
        Some(true) if diff.is_zero() => (PlanKind::Update, String::new()),
        Some(true) if diff.is_positive() => (
            PlanKind::Add,
            if xero {
                format!(" (paid: an extra invoice of {diff})")
            } else {
                format!(" (billed: a correcting charge of {diff})")
            },
        ),
        Some(true) => (
            PlanKind::Credit,
            if xero {
                format!(" (paid: a credit note of {})", -diff)
            } else {
                format!(" (billed: a correcting charge of {diff})")
            },
        ),
    }
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
            Work::RemoveDuplicates { invoice_id, found } => {
                // Each removal is an outbox action of its own: sent once by the push below,
                // in `outbox list` until it is, and audited.
                p.store
                    .queue_duplicate_removals(
                        &Actor::system(),
                        *invoice_id,
                        &super::duplicates::removals(found),
                        p.now(),
                    )
                    .await?;
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
