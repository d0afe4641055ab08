//! Reconcile finds duplicates (issue 13): a second Xero invoice with one Reference, a second
//! Autotask charge with one marker, each reported as a `Duplicate`, and an invoice emailed more
//! often than the ledger sent it, reported as a `DuplicateEmail`; a resync removes duplicate
//! documents while the remote allows it (an unpaid invoice voided, an unbilled charge deleted),
//! each through the outbox as its own audited action, and `--dry-run` shows it first.

use rebill::clock::Clock;
use rebill::domain::{OutboxAction, OutboxStatus, Period, RemoteSystem};
use rebill::pipeline::invoice_actions::email_again;
use rebill::pipeline::{
    DifferenceKind, EmailCheck, PlanKind, ReconcileOptions, ResyncRequest, reconcile,
    reconcile_with, resync,
};
use rebill::sandbox::Fault;
use rebill::store::Actor;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::world::build;

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

fn request(dry_run: bool) -> ResyncRequest {
    ResyncRequest {
        period: nov(),
        customer: None,
        dry_run,
    }
}

fn live_with_reference(invoices: &[Value], reference: &str) -> Vec<Value> {
    invoices
        .iter()
        .filter(|i| {
            i["Reference"] == reference && i["Status"] != "VOIDED" && i["Status"] != "DELETED"
        })
        .cloned()
        .collect()
}

async fn planted_duplicates_are_reported_then_removed_by_a_resync(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    assert!(reconcile(&w.pipeline, nov()).await.unwrap().is_clean());

    // A create applied twice in each system.
    let invoice = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    let second = w.sandboxes.xero.plant_duplicate(&invoice.number).unwrap();
    let mut charge = w.sandboxes.autotask.charges()[0].clone();
    let marker = charge["purchaseOrderNumber"].as_str().unwrap().to_string();
    charge["id"] = serde_json::json!(31_000_000);
    w.sandboxes.autotask.insert("contractcharges", charge);

    let dirty = reconcile(&w.pipeline, nov()).await.unwrap();
    let dups: Vec<_> = dirty
        .differences
        .iter()
        .filter(|d| d.kind == DifferenceKind::Duplicate)
        .collect();
    assert_eq!(dups.len(), 2, "{dirty:#?}");
    assert!(
        dups.iter().any(|d| d.system == RemoteSystem::Xero
            && d.invoice == invoice.number
            && d.detail.contains(&second)),
        "{dirty:#?}"
    );
    assert!(
        dups.iter().any(|d| d.system == RemoteSystem::Autotask
            && d.detail.contains("31000000")
            && d.detail.contains(&marker)),
        "{dirty:#?}"
    );
    assert!(
        !dirty
            .differences
            .iter()
            .any(|d| d.kind == DifferenceKind::Amount),
        "a duplicate is reported as such, not as an amount: {dirty:#?}"
    );

    // The dry run shows the removals and changes nothing.
    let plan = resync(&w.pipeline, &request(true)).await.unwrap().plan;
    let removals: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.kind == PlanKind::RemoveDuplicate)
        .collect();
    assert_eq!(removals.len(), 2, "{plan:#?}");
    assert!(
        removals
            .iter()
            .all(|a| a.description.ends_with(": removed")),
        "{plan:#?}"
    );
    assert_eq!(
        live_with_reference(&w.sandboxes.xero.invoices(), &invoice.number).len(),
        2
    );
    assert_eq!(w.sandboxes.autotask.charges().len(), 3);

    // The resync removes them: the ledger's documents stay.
    resync(&w.pipeline, &request(false)).await.unwrap();
    let live = live_with_reference(&w.sandboxes.xero.invoices(), &invoice.number);
    assert_eq!(live.len(), 1, "{live:#?}");
    assert_eq!(
        live[0]["InvoiceID"].as_str(),
        invoice.xero_invoice_id.as_deref(),
        "the ledger's invoice is the one kept"
    );
    let charges = w.sandboxes.autotask.charges();
    assert_eq!(charges.len(), 2, "{charges:#?}");
    assert!(charges.iter().all(|c| c["id"] != 31_000_000));
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
}

async fn a_paid_duplicate_is_reported_and_left_alone(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let invoice = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    w.sandboxes.xero.plant_duplicate(&invoice.number).unwrap();
    w.sandboxes.xero.pay(&invoice.number);
    let dirty = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(
        dirty
            .differences
            .iter()
            .any(|d| d.kind == DifferenceKind::Duplicate
                && d.detail.contains("does not let it be voided")),
        "{dirty:#?}"
    );
    let plan = resync(&w.pipeline, &request(true)).await.unwrap().plan;
    assert!(
        plan.actions
            .iter()
            .any(|a| a.kind == PlanKind::RemoveDuplicate && a.description.contains("kept")),
        "{plan:#?}"
    );
    resync(&w.pipeline, &request(false)).await.unwrap();
    assert_eq!(
        live_with_reference(&w.sandboxes.xero.invoices(), &invoice.number).len(),
        2,
        "a paid invoice is never voided"
    );
}

/// Removals of `action` in the outbox of `invoice`.
async fn removals(
    app: &TestApp,
    invoice: rebill::domain::InvoiceId,
    action: OutboxAction,
) -> Vec<rebill::domain::invoice::OutboxEntry> {
    app.store
        .outbox(Some(invoice))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

async fn a_duplicate_is_removed_through_the_outbox_once_and_audited(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let invoice = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    let second = w.sandboxes.xero.plant_duplicate(&invoice.number).unwrap();

    // A dry run shows the removal and queues nothing.
    resync(&w.pipeline, &request(true)).await.unwrap();
    assert!(
        removals(&app, invoice.id, OutboxAction::XeroRemoveDuplicate)
            .await
            .is_empty()
    );

    // Xero refuses the void for now (503 on every try): the removal waits in the outbox, where
    // ops see it, with the duplicate it is about.
    for _ in 0..5 {
        w.sandboxes.xero.faults.push(
            "POST",
            "/Invoices/",
            Fault::Status {
                status: 503,
                body: json!({}),
                retry_after: None,
            },
        );
    }
    resync(&w.pipeline, &request(false)).await.unwrap();
    let open = app.store.outbox_open(false).await.unwrap();
    let listed: Vec<_> = open
        .iter()
        .filter(|l| l.entry.action == OutboxAction::XeroRemoveDuplicate)
        .collect();
    assert_eq!(listed.len(), 1, "{open:#?}");
    assert_eq!(listed[0].invoice, invoice.number);
    assert_eq!(listed[0].entry.remote_id.as_deref(), Some(second.as_str()));
    assert_eq!(listed[0].entry.status, OutboxStatus::Pending);

    // Planned again before it is retried, it is not queued twice.
    resync(&w.pipeline, &request(false)).await.unwrap();
    assert_eq!(
        removals(&app, invoice.id, OutboxAction::XeroRemoveDuplicate)
            .await
            .len(),
        1
    );

    // Its retry voids the duplicate, once; the ledger and the audit log say so.
    w.clock.advance(chrono::Duration::hours(1));
    let pushed = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(pushed.duplicates_removed, 1, "{pushed:?}");
    let done = removals(&app, invoice.id, OutboxAction::XeroRemoveDuplicate).await;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].status, OutboxStatus::Done);
    let live = live_with_reference(&w.sandboxes.xero.invoices(), &invoice.number);
    assert_eq!(live.len(), 1);
    assert_eq!(
        live[0]["InvoiceID"].as_str(),
        invoice.xero_invoice_id.as_deref()
    );
    let ledger = app.store.ledger(Some(invoice.id)).await.unwrap();
    assert!(
        ledger
            .iter()
            .any(|l| l.action == OutboxAction::XeroRemoveDuplicate
                && l.remote_id.as_deref() == Some(second.as_str())
                && l.remote_status.as_deref()
                    == Some(&format!("Xero invoice {second} voided") as &str)),
        "{ledger:#?}"
    );
    let audit = app
        .store
        .audit_log(Some("invoice"), Some(&invoice.id.to_string()), 20)
        .await
        .unwrap();
    let of = |what: &str| {
        audit
            .iter()
            .filter(|a| {
                a.action == what && a.after_json.as_deref().is_some_and(|j| j.contains(&second))
            })
            .count()
    };
    assert_eq!(of("duplicate removal queued"), 1, "{audit:#?}");
    assert_eq!(of("duplicate removed"), 1, "{audit:#?}");
    assert!(reconcile(&w.pipeline, nov()).await.unwrap().is_clean());
}

fn all_emails() -> ReconcileOptions {
    ReconcileOptions {
        emails: EmailCheck::All,
    }
}

fn email_differences(r: &rebill::pipeline::ReconcileReport) -> Vec<&rebill::pipeline::Difference> {
    r.differences
        .iter()
        .filter(|d| d.kind == DifferenceKind::DuplicateEmail)
        .collect()
}

async fn a_second_email_is_reported_and_an_email_sent_again_on_purpose_is_not(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let invoice = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    // `invoice email` sends it again on purpose: the ledger expects two emails.
    email_again(&w.pipeline, &invoice.number, &Actor::new("ops"))
        .await
        .unwrap();
    let clean = reconcile_with(&w.pipeline, nov(), all_emails())
        .await
        .unwrap();
    assert!(clean.is_clean(), "{clean:#?}");

    // A third email the ledger never sent (a send Xero applied twice).
    let id = invoice.xero_invoice_id.clone().unwrap();
    w.sandboxes.xero.plant_email(&id);
    let history = |r: &std::collections::BTreeMap<String, u64>| {
        r.get("GET /api.xro/2.0/Invoices/{id}/History")
            .copied()
            .unwrap_or(0)
    };
    let before = history(&w.sandboxes.xero.limits.requests_by_kind());
    // Nothing in the ledger puts this invoice's emails in doubt: the default reconcile does not
    // read its history (it stays a few bulk reads).
    let quick = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(quick.is_clean(), "{quick:#?}");
    assert_eq!(history(&w.sandboxes.xero.limits.requests_by_kind()), before);
    // `--emails` reads every sent invoice's history and finds it.
    let full = reconcile_with(&w.pipeline, nov(), all_emails())
        .await
        .unwrap();
    let found = email_differences(&full);
    assert_eq!(found.len(), 1, "{full:#?}");
    assert_eq!(found[0].invoice, invoice.number);
    assert_eq!(found[0].system, RemoteSystem::Xero);
    assert!(
        found[0]
            .detail
            .contains("emailed 3 time(s), the ledger sent it 2"),
        "{full:#?}"
    );
}

async fn an_email_whose_outcome_was_in_doubt_is_checked_by_the_default_reconcile(app: TestApp) {
    let w = build(&app).await;
    // The email reaches Xero but its answer is lost, and every retry fails: the push cannot
    // tell whether it was sent.
    w.sandboxes
        .xero
        .faults
        .push("POST", "/Email", Fault::DropAfterWork);
    for _ in 0..4 {
        w.sandboxes.xero.faults.push(
            "POST",
            "/Email",
            Fault::Status {
                status: 500,
                body: json!({}),
                retry_after: None,
            },
        );
    }
    w.pipeline.run_period(nov()).await.unwrap();
    // The next push reads the invoice first, finds it sent, and sends nothing.
    w.clock.advance(chrono::Duration::hours(1));
    w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");

    // Had the email gone twice (a retry applied after its key expired), the default reconcile
    // reads this invoice's history, because its email was in doubt, and says so.
    let invoice = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    w.sandboxes
        .xero
        .plant_email(invoice.xero_invoice_id.as_deref().unwrap());
    let dirty = reconcile(&w.pipeline, nov()).await.unwrap();
    let found = email_differences(&dirty);
    assert_eq!(found.len(), 1, "{dirty:#?}");
    assert_eq!(found[0].invoice, invoice.number);
    assert!(
        found[0]
            .detail
            .contains("emailed 2 time(s), the ledger sent it 1"),
        "{dirty:#?}"
    );
}

backend_tests!(
    planted_duplicates_are_reported_then_removed_by_a_resync,
    a_paid_duplicate_is_reported_and_left_alone,
    a_duplicate_is_removed_through_the_outbox_once_and_audited,
    a_second_email_is_reported_and_an_email_sent_again_on_purpose_is_not,
    an_email_whose_outcome_was_in_doubt_is_checked_by_the_default_reconcile,
);
