//! `rebilld --resync`: recompute a period and bring Autotask and Xero in line with it.
//!
//! `plan` reads (database and, for Xero, the remote invoice's state) and writes nothing; `apply`
//! performs exactly the plan. `--dry-run` prints the plan and stops there, so the plan shown is
//! the plan a real run carries out. Unchanged lines are no-ops; a changed line updates the remote
//! record while it can still be changed (Xero: draft or unpaid; Autotask: `isBilled = false`),
//! otherwise an adjustment is made (a credit note or an extra invoice; a correcting charge).

use std::collections::BTreeMap;

use serde::Serialize;

use super::record::{self, AUTOTASK_CHARGE, AUTOTASK_UPDATE, XERO_UPDATE};
use super::{Pipeline, PipelineError, snapshot};
use crate::domain::billing::{Destination, InvoiceDraft, compute_invoices};
use crate::domain::{CustomerId, Money, Period};
use crate::store::billing::{
    InvoiceChanges, NewAction, NewLine, OutboxEntry, StoredInvoice, StoredLine,
};

#[derive(Debug, Clone)]
pub struct ResyncRequest {
    pub period: Period,
    pub customer: Option<CustomerId>,
    pub dry_run: bool,
}

/// One customer's part of the plan, in the words ops read.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedAction {
    pub customer_id: i64,
    pub customer_name: String,
    pub invoice: Option<String>,
    /// "create", "update", "adjust", "email", "unchanged", "retry".
    pub kind: &'static str,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResyncPlan {
    pub period: String,
    pub actions: Vec<PlannedAction>,
    #[serde(skip)]
    work: Vec<Work>,
}

#[derive(Debug, Clone)]
enum Work {
    Record(Box<InvoiceDraft>),
    Change {
        invoice_id: i64,
        changes: InvoiceChanges,
    },
    Retry {
        invoice_id: i64,
    },
}

impl ResyncPlan {
    pub fn is_noop(&self) -> bool {
        self.work.is_empty()
    }
}

/// Builds the plan: reads only.
pub async fn plan(p: &Pipeline, req: &ResyncRequest) -> Result<ResyncPlan, PipelineError> {
    let tz = p.config.business.tz();
    let snap = snapshot::take(&p.store, req.period, tz, true).await?;
    let computed = compute_invoices(&snap, req.period, &record::settings(&p.config));
    let names: BTreeMap<i64, String> = snap
        .customers
        .iter()
        .map(|c| (c.id.get(), c.name.to_string()))
        .collect();
    let recorded: BTreeMap<i64, StoredInvoice> = p
        .store
        .invoices(Some(req.period), req.customer)
        .await?
        .into_iter()
        .map(|i| (i.customer_id, i))
        .collect();
    let wanted: BTreeMap<i64, &InvoiceDraft> = computed
        .invoices
        .iter()
        .filter(|d| req.customer.is_none_or(|c| c == d.customer_id))
        .map(|d| (d.customer_id.get(), d))
        .collect();
    let mut plan = ResyncPlan {
        period: req.period.to_string(),
        actions: Vec::new(),
        work: Vec::new(),
    };
    let customers: std::collections::BTreeSet<i64> =
        recorded.keys().chain(wanted.keys()).copied().collect();
    for cid in customers {
        let name = names.get(&cid).cloned().unwrap_or_default();
        let say =
            |invoice: Option<String>, kind: &'static str, description: String| PlannedAction {
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
                    "create",
                    format!("new invoice, total {total}: {where_to}"),
                ));
                plan.actions
                    .push(say(None, "email", record::email_decision(&d.email)));
                plan.work.push(Work::Record(Box::new((*d).clone())));
            }
            (Some(inv), wanted) => {
                let lines = p.store.invoice_lines(inv.id).await?;
                let new_lines: Vec<NewLine> = wanted
                    .map(|d| d.lines.iter().map(record::new_line).collect())
                    .unwrap_or_default();
                let changes = diff(
                    inv,
                    &lines,
                    &new_lines,
                    &p.store.outbox(Some(inv.id)).await?,
                );
                let failed = p
                    .store
                    .outbox(Some(inv.id))
                    .await?
                    .iter()
                    .filter(|o| o.status == "failed")
                    .count();
                if changes.changed.is_empty()
                    && changes.added.is_empty()
                    && changes.removed.is_empty()
                {
                    if failed > 0 {
                        plan.actions.push(say(
                            Some(inv.number.clone()),
                            "retry",
                            format!("{failed} failed remote action(s) queued again"),
                        ));
                        plan.work.push(Work::Retry { invoice_id: inv.id });
                    } else {
                        plan.actions.push(say(
                            Some(inv.number.clone()),
                            "unchanged",
                            format!("total {}", inv.total()),
                        ));
                    }
                    continue;
                }
                for (id, l) in &changes.changed {
                    let old = lines
                        .iter()
                        .find(|x| x.id == *id)
                        .map(|x| x.amount())
                        .unwrap_or_default();
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        remote_kind(inv),
                        format!("{}: {} → {}", l.description, old, l.amount),
                    ));
                }
                for l in &changes.added {
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        remote_kind(inv),
                        format!("add {}: {}", l.description, l.amount),
                    ));
                }
                for id in &changes.removed {
                    if let Some(x) = lines.iter().find(|x| x.id == *id) {
                        plan.actions.push(say(
                            Some(inv.number.clone()),
                            remote_kind(inv),
                            format!("remove {}: {}", x.description, x.amount()),
                        ));
                    }
                }
                if inv.destination == "xero" && inv.xero_invoice_id.is_some() {
                    plan.actions.push(say(
                        Some(inv.number.clone()),
                        "adjust",
                        "the Xero invoice is updated while it is draft or unpaid; once paid, a credit note (decrease) or an extra invoice (increase) is made instead".into(),
                    ));
                }
                plan.work.push(Work::Change {
                    invoice_id: inv.id,
                    changes,
                });
            }
            (None, None) => {}
        }
    }
    Ok(plan)
}

fn remote_kind(inv: &StoredInvoice) -> &'static str {
    // A Xero invoice already created is updated or adjusted; anything else is rewritten locally.
    if inv.destination == "xero" && inv.xero_invoice_id.is_some() {
        "adjust"
    } else {
        "update"
    }
}

/// Compares the recorded lines with the recomputed ones, by charge key, and says what to queue.
fn diff(
    inv: &StoredInvoice,
    old: &[StoredLine],
    new: &[NewLine],
    outbox: &[OutboxEntry],
) -> InvoiceChanges {
    let mut c = InvoiceChanges::default();
    let live: BTreeMap<&str, &StoredLine> =
        old.iter().map(|l| (l.charge_key.as_str(), l)).collect();
    for l in new {
        match live.get(l.charge_key.as_str()) {
            Some(o) if !o.removed && same(o, l) => {}
            Some(o) => c.changed.push((o.id, l.clone())),
            None => c.added.push(l.clone()),
        }
    }
    for o in old.iter().filter(|o| !o.removed) {
        if !new.iter().any(|l| l.charge_key == o.charge_key) {
            c.removed.push(o.id);
        }
    }
    let rev = inv.revision + 1;
    if inv.destination == "autotask" {
        let n_changed = c.changed.len();
        let n_added = c.added.len();
        for i in 0..n_changed + n_added + c.removed.len() {
            let is_added = i >= n_changed && i < n_changed + n_added;
            c.actions.push(NewAction {
                action: if is_added {
                    AUTOTASK_CHARGE
                } else {
                    AUTOTASK_UPDATE
                },
                key: format!("at-resync:{}:r{rev}:{i}", inv.id),
                line: Some(i),
                after: None,
            });
        }
    } else {
        let created = outbox
            .iter()
            .any(|o| o.action == record::XERO_INVOICE && o.status == "done");
        if created {
            c.actions.push(NewAction {
                action: XERO_UPDATE,
                key: format!("xero-update:{}:r{rev}", inv.id),
                line: None,
                after: None,
            });
        }
        // Not yet created: the pending create sends the new lines; nothing else to queue.
    }
    c
}

fn same(o: &StoredLine, n: &NewLine) -> bool {
    o.description == n.description
        && o.quantity().ok() == Some(n.quantity)
        && o.unit_price() == n.unit_price
        && o.amount() == n.amount
        && o.unit_cost() == n.unit_cost
}

/// Carries out a plan made by `plan` (nothing else), then pushes what it queued.
pub async fn apply(p: &Pipeline, plan: &ResyncPlan) -> Result<super::PushReport, PipelineError> {
    let period = Period::parse(&plan.period).map_err(|e| PipelineError::Refused(e.to_string()))?;
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
        }
    }
    if !new.is_empty() {
        let computed = crate::domain::billing::Computed {
            invoices: new,
            skipped: Vec::new(),
        };
        record::record(&p.store, &p.config, period, &computed).await?;
    }
    p.drain(p.now()).await
}
