//! Adjustments net to the truth (issue 11, cases 3, 4, 5 and 7): after any sequence of changes to
//! a period already billed, Xero's documents (invoice + extra invoices − credit notes) and
//! Autotask's charges (+ correcting charges) equal what is owed now, line by line; reconcile says
//! so, and catches what is not so.

use rebill::domain::{Customer, ItemId, ItemKind, Money, NonEmpty, Transition};
use rebill::pipeline::{DifferenceKind, ResyncRequest, reconcile, resync};
use rebill::store::NewItem;
use rust_decimal::Decimal;
use serde_json::Value;

use crate::common::TestApp;
use crate::common::world::{World, build, day, nov};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn dec(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap_or_default()
}

fn contact(c: &Customer) -> String {
    c.target.xero_contact().unwrap().to_string()
}

async fn number_of(app: &TestApp, c: &Customer) -> String {
    app.store
        .invoices(Some(nov()), Some(c.id))
        .await
        .unwrap()
        .remove(0)
        .number
}

/// A recurring item of `amount` a month for the whole of November.
async fn recurring(app: &TestApp, w: &World, c: &Customer, what: &str, amount: &str) -> ItemId {
    app.store
        .add_item(
            &app.actor(),
            &NewItem {
                customer_id: c.id,
                kind: ItemKind::Recurring,
                description: NonEmpty::parse("description", what).unwrap(),
                amount: Money::parse(amount).unwrap(),
                starts_on: Some(day("2026-11-01")),
                autotask: c.target.is_autotask().then_some(w.coding),
            },
        )
        .await
        .unwrap()
        .id
}

async fn edit(app: &TestApp, item: ItemId, amount: &str) {
    app.store
        .edit_item(
            &app.actor(),
            item,
            None,
            Some(Money::parse(amount).unwrap()),
        )
        .await
        .unwrap();
}

fn extra_invoices(w: &World, number: &str) -> Vec<Value> {
    w.sandboxes
        .xero
        .invoices()
        .into_iter()
        .filter(|i| {
            i["Reference"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("{number}-A")))
        })
        .collect()
}

async fn a_paid_invoice_raised_then_lowered_nets_what_is_owed_now(app: TestApp) {
    let w = build(&app).await;
    let support = recurring(&app, &w, &w.enabled, "Support", "100").await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    let who = contact(&w.enabled);
    // SIP 49.95 + install 150 + support 100.
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("299.95"));
    w.sandboxes.xero.pay(&number);

    edit(&app, support, "120").await;
    w.resync(nov()).await;
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("319.95"));
    let extra = extra_invoices(&w, &number);
    assert_eq!(extra.len(), 1, "{extra:#?}");
    assert_eq!(dec(&extra[0]["SubTotal"]), d("20"));

    edit(&app, support, "80").await;
    w.resync(nov()).await;
    assert_eq!(
        w.sandboxes.xero.net_of_contact(&who),
        d("279.95"),
        "invoice + extra invoices − credit notes is what is owed now, not 100 − 20 on the original"
    );
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
}

async fn two_raises_of_five_bill_ten_not_fifteen(app: TestApp) {
    let w = build(&app).await;
    let support = recurring(&app, &w, &w.enabled, "Support", "100").await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    let who = contact(&w.enabled);
    w.sandboxes.xero.pay(&number);
    edit(&app, support, "105").await;
    w.resync(nov()).await;
    edit(&app, support, "110").await;
    w.resync(nov()).await;
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("309.95"));
    let live: Vec<Value> = extra_invoices(&w, &number)
        .into_iter()
        .filter(|i| i["Status"] != "VOIDED")
        .collect();
    assert_eq!(
        live.len(),
        1,
        "the unpaid extra invoice is updated, not stacked: {live:#?}"
    );
    assert_eq!(dec(&live[0]["SubTotal"]), d("10"));
}

async fn a_credited_line_restored_is_billed_again(app: TestApp) {
    let w = build(&app).await;
    let support = recurring(&app, &w, &w.enabled, "Support", "89.95").await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    let who = contact(&w.enabled);
    w.sandboxes.xero.pay(&number);
    app.store.remove_item(&app.actor(), support).await.unwrap();
    w.resync(nov()).await;
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("199.95"));
    assert_eq!(w.sandboxes.xero.credit_notes().len(), 1);
    app.store.restore_item(&app.actor(), support).await.unwrap();
    w.resync(nov()).await;
    assert_eq!(
        w.sandboxes.xero.net_of_contact(&who),
        d("289.90"),
        "the restored line is billed again"
    );
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
}

async fn an_extra_invoice_has_its_own_dates_each_lines_tax_type_and_is_emailed(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    w.sandboxes.xero.pay(&number);
    // A GST-free service added to the paid invoice's period.
    let mut svc = crate::common::world::service("free", None, "40", &["0299997777"]);
    svc.xero_tax_type = Some("EXEMPTOUTPUT".into());
    svc.xero_account_code = Some("210".into());
    let free = app
        .store
        .import_service(&app.actor(), &svc)
        .await
        .unwrap()
        .0;
    app.store
        .assign(&app.actor(), free, w.enabled.id, day("2026-11-01"), None)
        .await
        .unwrap();
    w.resync(nov()).await;
    let extra = extra_invoices(&w, &number);
    assert_eq!(extra.len(), 1, "{extra:#?}");
    let e = &extra[0];
    let lines = e["LineItems"].as_array().unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["TaxType"], "EXEMPTOUTPUT");
    assert_eq!(lines[0]["AccountCode"], "210");
    assert_eq!(
        dec(&e["TotalTax"]),
        Decimal::ZERO,
        "no GST on a GST-free line"
    );
    // The pipeline clock is 00:30 on 2 December in Sydney; terms are 14 days.
    assert_eq!(e["Date"], "2026-12-02");
    assert_eq!(e["DueDate"], "2026-12-16");
    let id = e["InvoiceID"].as_str().unwrap().to_string();
    assert!(
        w.sandboxes.xero.emails().contains(&id),
        "the extra invoice is emailed like an invoice"
    );
}

async fn an_emptied_unpaid_invoice_is_voided_never_updated_without_lines(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    // Disabled Pty Ltd holds only the trunk (30.00), unpaid; it is taken away.
    let disabled = number_of(&app, &w.disabled).await;
    app.store
        .transition(
            &app.actor(),
            w.trunk,
            Transition::Exclude,
            day("2026-11-20"),
        )
        .await
        .unwrap();
    w.resync(nov()).await;
    let inv = w
        .sandboxes
        .xero
        .invoices()
        .into_iter()
        .find(|i| i["Reference"] == disabled.as_str())
        .unwrap();
    assert_eq!(inv["Status"], "VOIDED", "never an update without LineItems");
    assert_eq!(
        w.sandboxes.xero.net_of_contact(&contact(&w.disabled)),
        Decimal::ZERO
    );
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
}

async fn an_emptied_paid_invoice_is_credited_whole(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let disabled = number_of(&app, &w.disabled).await;
    w.sandboxes.xero.pay(&disabled);
    app.store
        .transition(
            &app.actor(),
            w.trunk,
            Transition::Exclude,
            day("2026-11-20"),
        )
        .await
        .unwrap();
    w.resync(nov()).await;
    let notes = w.sandboxes.xero.credit_notes();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert_eq!(dec(&notes[0]["SubTotal"]), d("30"));
    assert_eq!(
        w.sandboxes.xero.net_of_contact(&contact(&w.disabled)),
        Decimal::ZERO
    );
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
}

async fn a_billed_autotask_charge_changed_twice_nets_to_the_new_amount(app: TestApp) {
    let w = build(&app).await;
    let support = recurring(&app, &w, &w.autotask, "Phones", "100").await;
    w.pipeline.run_period(nov()).await.unwrap();
    w.sandboxes.autotask.bill_all_charges();
    let marker = w
        .sandboxes
        .autotask
        .charges()
        .into_iter()
        .find(|c| c["name"].as_str().is_some_and(|n| n.contains("Phones")))
        .unwrap()["purchaseOrderNumber"]
        .as_str()
        .unwrap()
        .to_string();
    edit(&app, support, "110").await;
    w.resync(nov()).await;
    edit(&app, support, "120").await;
    w.resync(nov()).await;
    assert_eq!(w.sandboxes.autotask.billed_with_marker(&marker), d("120"));
    // Taken off (corrected to nothing), then restored: billed again.
    app.store.remove_item(&app.actor(), support).await.unwrap();
    w.resync(nov()).await;
    assert_eq!(w.sandboxes.autotask.billed_with_marker(&marker), d("0"));
    app.store.restore_item(&app.actor(), support).await.unwrap();
    w.resync(nov()).await;
    assert_eq!(w.sandboxes.autotask.billed_with_marker(&marker), d("120"));
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
}

async fn reconcile_follows_xero_and_catches_voids_deletions_and_orphans(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let enabled = number_of(&app, &w.enabled).await;
    let disabled = number_of(&app, &w.disabled).await;
    w.sandboxes.xero.pay(&enabled);
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
    let stored = app.store.invoice_by_number(&enabled).await.unwrap();
    assert_eq!(
        stored.xero_status.as_deref(),
        Some("PAID"),
        "Xero's status is followed"
    );

    w.sandboxes.xero.void(&disabled);
    let marker = w.sandboxes.autotask.charges()[0]["purchaseOrderNumber"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandboxes.autotask.delete_charge(&marker);
    let contract = w.coding.contract_id.get();
    w.sandboxes.autotask.insert(
        "contractcharges",
        serde_json::json!({"id": 99, "contractID": contract, "purchaseOrderNumber": "rb 2026-11 c99 stray",
            "unitQuantity": 1, "unitPrice": 25, "datePurchased": "2026-11-01T00:00:00Z", "isBilled": false}),
    );
    let dirty = reconcile(&w.pipeline, nov()).await.unwrap();
    let kinds: Vec<(DifferenceKind, String)> = dirty
        .differences
        .iter()
        .map(|x| (x.kind, x.invoice.clone()))
        .collect();
    assert!(
        kinds.contains(&(DifferenceKind::Status, disabled.clone())),
        "{dirty:#?}"
    );
    assert!(
        dirty
            .differences
            .iter()
            .any(|x| x.kind == DifferenceKind::Missing && x.detail.contains(&marker)),
        "{dirty:#?}"
    );
    assert!(
        dirty
            .differences
            .iter()
            .any(|x| x.kind == DifferenceKind::Extra && x.detail.contains("stray")),
        "the orphan charge: {dirty:#?}"
    );
}

async fn resync_repairs_what_reconcile_reports(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let enabled = number_of(&app, &w.enabled).await;
    // Drift: an amount edited in Xero, a charge deleted in Autotask.
    w.sandboxes.xero.tamper_amount(&enabled, d("40"));
    let marker = w.sandboxes.autotask.charges()[0]["purchaseOrderNumber"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandboxes.autotask.delete_charge(&marker);
    let red = reconcile(&w.pipeline, nov()).await.unwrap();
    assert_eq!(red.differences.len(), 2, "{red:#?}");
    let dry = resync(
        &w.pipeline,
        &ResyncRequest {
            period: nov(),
            customer: None,
            dry_run: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        dry.plan
            .actions
            .iter()
            .filter(|a| a.description.starts_with("repair:"))
            .count(),
        2,
        "{:#?}",
        dry.plan
    );
    w.resync(nov()).await;
    let clean = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
    let again = resync(
        &w.pipeline,
        &ResyncRequest {
            period: nov(),
            customer: None,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    assert!(again.plan.is_noop(), "repaired once: {:#?}", again.plan);
}

backend_tests!(
    resync_repairs_what_reconcile_reports,
    a_paid_invoice_raised_then_lowered_nets_what_is_owed_now,
    two_raises_of_five_bill_ten_not_fifteen,
    a_credited_line_restored_is_billed_again,
    an_extra_invoice_has_its_own_dates_each_lines_tax_type_and_is_emailed,
    an_emptied_unpaid_invoice_is_voided_never_updated_without_lines,
    an_emptied_paid_invoice_is_credited_whole,
    a_billed_autotask_charge_changed_twice_nets_to_the_new_amount,
    reconcile_follows_xero_and_catches_voids_deletions_and_orphans,
);
