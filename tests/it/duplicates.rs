//! Reconcile finds duplicates (issue 13): a second Xero invoice with one Reference, a second
//! Autotask charge with one marker, each reported as a `Duplicate`; a resync removes them while
//! the remote allows it (an unpaid invoice voided, an unbilled charge deleted), and `--dry-run`
//! shows it first.

use rebill::domain::{Period, RemoteSystem};
use rebill::pipeline::{DifferenceKind, PlanKind, ResyncRequest, reconcile, resync};
use serde_json::Value;

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

backend_tests!(
    planted_duplicates_are_reported_then_removed_by_a_resync,
    a_paid_duplicate_is_reported_and_left_alone,
);
