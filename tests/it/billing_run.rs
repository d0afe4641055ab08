//! The monthly billing run against the Xero and Autotask stand-ins, on both backends.

use rebill::clock::Clock;

use crate::common::TestApp;
use crate::common::world::{World, build, dec, nov};
use chrono::Utc;
use rebill::domain::OutboxAction;
use rebill::domain::{Money, Period};
use rebill::pipeline::{DifferenceKind, PlanKind, ResyncRequest, resync};
use rebill::store::calls::{CallKey, NewCall};
use serde_json::Value;

fn m(s: &str) -> Money {
    Money::parse(s).unwrap()
}

fn invoice_for<'a>(w: &World, invoices: &'a [Value], contact_of: &str) -> Option<&'a Value> {
    let _ = w;
    invoices
        .iter()
        .find(|i| i["Contact"]["ContactID"] == contact_of)
}

fn contact(c: &rebill::domain::Customer) -> String {
    c.target
        .xero_contact()
        .map(|c| c.to_string())
        .unwrap_or_default()
}

async fn a_run_bills_every_customer_in_the_right_place(app: TestApp) {
    let w = build(&app).await;
    let report = w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(report.invoices_created.len(), 3, "{report:?}");

    let invoices = w.sandboxes.xero.invoices();
    assert_eq!(invoices.len(), 2, "only the two Xero customers reach Xero");
    let enabled =
        invoice_for(&w, &invoices, &contact(&w.enabled)).expect("enabled customer's invoice");
    // SIP 49.95 + once-off 150; the excluded service is left out.
    assert_eq!(dec(&enabled["SubTotal"]), m("199.95").amount());
    assert_eq!(enabled["Type"], "ACCREC");
    assert_eq!(enabled["LineAmountTypes"], "Exclusive");
    let disabled = invoice_for(&w, &invoices, &contact(&w.disabled))
        .expect("disabled customer is still invoiced");
    assert_eq!(dec(&disabled["SubTotal"]), m("30").amount());

    // Emailed: the enabled customer once; never the disabled one.
    let emails = w.sandboxes.xero.emails();
    assert_eq!(
        emails,
        vec![enabled["InvoiceID"].as_str().unwrap().to_string()]
    );

    // The Autotask customer's lines are contract charges, prorated support from the 16th (15/30).
    let charges = w.sandboxes.autotask.charges();
    assert_eq!(charges.len(), 2, "{charges:#?}");
    let mut amounts: Vec<rust_decimal::Decimal> =
        charges.iter().map(|c| dec(&c["unitPrice"])).collect();
    amounts.sort();
    assert_eq!(amounts, vec![m("15").amount(), m("120").amount()]);
    assert!(
        charges
            .iter()
            .all(|c| c["contractID"] == w.coding.contract_id.get()
                && c["billingCodeID"] == w.coding.material_code_id.get())
    );
    assert!(
        charges
            .iter()
            .all(|c| c["datePurchased"] == "2026-11-01T00:00:00Z")
    );

    // The idle customer got no invoice, and the reason is recorded.
    let skips = app.store.skips(nov()).await.unwrap();
    assert!(
        skips
            .iter()
            .any(|(c, why)| *c == w.idle.id && why.contains("no billable")),
        "{skips:?}"
    );
    // The once-off item is now invoiced and frozen.
    let items = app.store.items(Some(w.enabled.id)).await.unwrap();
    assert_eq!(items[0].invoiced_period, Some(nov()));
}

async fn running_a_period_again_creates_and_sends_nothing_new(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let again = w.pipeline.run_period(nov()).await.unwrap();
    assert!(again.invoices_created.is_empty());
    assert_eq!(again.invoices_already_recorded, 3);
    assert_eq!(w.sandboxes.xero.invoices().len(), 2);
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    assert_eq!(w.sandboxes.autotask.charges().len(), 2);
}

fn call(n: u8, user: &str, service: i64, started: &str, secs: i32, price: &str) -> NewCall {
    let started_at = started
        .parse::<chrono::DateTime<Utc>>()
        .unwrap()
        .timestamp();
    NewCall {
        key: CallKey::derive(started_at, &[&n.to_string()]),
        service_id: Some(service),
        user_ref: user.into(),
        started_at,
        duration_secs: secs,
        destination: "0412345678".into(),
        call_type: "mobile".into(),
        inbound: false,
        cost_micros: Some(50_000),
        price_micros: Some(m(price).to_micros().unwrap()),
        plan_version: Some(1),
    }
}

async fn a_resync_after_a_late_cdr_changes_exactly_the_affected_lines(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let before = w.sandboxes.xero.invoices();
    // October calls arrive late for the SIP service (Xero) and the Autotask service.
    app.store
        .insert_calls(
            &[
                call(
                    1,
                    "0299990001",
                    w.sip.get(),
                    "2026-10-15T01:00:00Z",
                    125,
                    "0.333333",
                ),
                call(
                    2,
                    "0299990002",
                    w.sip.get(),
                    "2026-10-20T01:00:00Z",
                    60,
                    "0.333334",
                ),
                call(
                    3,
                    "0299990005",
                    w.at_service.get(),
                    "2026-10-21T01:00:00Z",
                    60,
                    "1.25",
                ),
            ],
            chrono_tz::UTC,
        )
        .await
        .unwrap();
    let req = ResyncRequest {
        period: nov(),
        customer: None,
        dry_run: false,
    };
    let plan = resync(&w.pipeline, &req).await.unwrap().plan;
    let changed: Vec<_> = plan
        .actions
        .iter()
        .filter(|a| a.kind != PlanKind::Unchanged)
        .collect();
    assert!(
        changed.iter().any(|a| a.customer_id == w.enabled.id),
        "{plan:#?}"
    );
    assert!(
        changed.iter().any(|a| a.customer_id == w.autotask.id),
        "{plan:#?}"
    );
    assert!(
        !changed.iter().any(|a| a.customer_id == w.disabled.id),
        "the disabled customer had no calls: {plan:#?}"
    );

    let after = w.sandboxes.xero.invoices();
    assert_eq!(
        after.len(),
        before.len(),
        "updated in place, no new invoice"
    );
    let enabled = invoice_for(&w, &after, &contact(&w.enabled)).unwrap();
    assert_eq!(
        dec(&enabled["SubTotal"]),
        m("200.62").amount(),
        "199.95 + 0.666667 rounded once to 0.67"
    );
    let disabled_before = invoice_for(&w, &before, &contact(&w.disabled)).unwrap();
    let disabled_after = invoice_for(&w, &after, &contact(&w.disabled)).unwrap();
    assert_eq!(
        disabled_before, disabled_after,
        "an unaffected invoice is untouched"
    );
    let charges = w.sandboxes.autotask.charges();
    assert_eq!(
        charges.len(),
        3,
        "one new charge for the calls: {charges:#?}"
    );
    assert_eq!(
        w.sandboxes.xero.emails().len(),
        1,
        "a resync does not email again"
    );

    // A second resync is a no-op.
    let again = resync(&w.pipeline, &req).await.unwrap();
    assert!(
        again
            .plan
            .actions
            .iter()
            .all(|a| a.kind == PlanKind::Unchanged),
        "{again:#?}"
    );
    assert!(again.pushed.is_none(), "nothing carried out: {again:#?}");
}

async fn a_resync_after_payment_makes_a_credit_note_not_an_edit(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()[0]
        .number
        .clone();
    w.sandboxes.xero.pay(&number);
    // The SIP service is excluded after the run: November's fee comes off.
    app.store
        .transition(
            &app.actor(),
            w.sip,
            rebill::domain::Transition::Exclude,
            crate::common::world::day("2026-11-20"),
        )
        .await
        .unwrap();
    resync(
        &w.pipeline,
        &ResyncRequest {
            period: nov(),
            customer: Some(w.enabled.id),
            dry_run: false,
        },
    )
    .await
    .unwrap();
    let inv = w
        .sandboxes
        .xero
        .invoices()
        .into_iter()
        .find(|i| i["Reference"] == number.as_str())
        .unwrap();
    assert_eq!(
        dec(&inv["SubTotal"]),
        m("199.95").amount(),
        "a paid invoice is never edited"
    );
    let notes = w.sandboxes.xero.credit_notes();
    assert_eq!(notes.len(), 1);
    assert_eq!(dec(&notes[0]["SubTotal"]), m("49.95").amount());
    assert_eq!(notes[0]["Type"], "ACCRECCREDIT");
}

async fn a_billed_autotask_charge_gets_a_correcting_charge(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    w.sandboxes.autotask.bill_all_charges();
    let item = app.store.items(Some(w.autotask.id)).await.unwrap()[0].clone();
    app.store.remove_item(&app.actor(), item.id).await.unwrap();
    resync(
        &w.pipeline,
        &ResyncRequest {
            period: nov(),
            customer: None,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    let charges = w.sandboxes.autotask.charges();
    assert_eq!(charges.len(), 3, "{charges:#?}");
    let correction = charges
        .iter()
        .find(|c| c["purchaseOrderNumber"].as_str().unwrap().contains(" adj"))
        .unwrap();
    assert_eq!(dec(&correction["unitPrice"]), m("-15").amount());
    assert!(
        charges
            .iter()
            .filter(|c| c["isBilled"] == true)
            .all(|c| c["unitPrice"] != Value::Null),
        "billed charges untouched"
    );
}

async fn a_dry_run_changes_nothing_anywhere(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    app.store
        .insert_calls(
            &[call(
                9,
                "0299990001",
                w.sip.get(),
                "2026-10-15T01:00:00Z",
                125,
                "5",
            )],
            chrono_tz::UTC,
        )
        .await
        .unwrap();
    let invoices_before =
        serde_json::to_string(&app.store.invoices(None, None).await.unwrap()).unwrap();
    let outbox_before = serde_json::to_string(&app.store.outbox(None).await.unwrap()).unwrap();
    let xero_before = serde_json::to_string(&w.sandboxes.xero.invoices()).unwrap();
    let charges_before = w.sandboxes.autotask.charges();
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
    assert!(dry.pushed.is_none(), "a dry run carries nothing out");
    let plan = dry.plan;
    assert!(
        plan.actions.iter().any(|a| a.kind != PlanKind::Unchanged),
        "the plan shows the change"
    );
    assert_eq!(
        serde_json::to_string(&app.store.invoices(None, None).await.unwrap()).unwrap(),
        invoices_before
    );
    assert_eq!(
        serde_json::to_string(&app.store.outbox(None).await.unwrap()).unwrap(),
        outbox_before
    );
    assert_eq!(
        serde_json::to_string(&w.sandboxes.xero.invoices()).unwrap(),
        xero_before
    );
    assert_eq!(w.sandboxes.autotask.charges(), charges_before);
}

async fn reconcile_is_clean_and_then_catches_an_amount_edited_in_xero(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let clean = rebill::pipeline::reconcile(&w.pipeline, nov())
        .await
        .unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
    assert_eq!(clean.charges_checked, 2);
    let number = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()[0]
        .number
        .clone();
    w.sandboxes
        .xero
        .tamper_amount(&number, "40".parse().unwrap());
    let dirty = rebill::pipeline::reconcile(&w.pipeline, nov())
        .await
        .unwrap();
    assert_eq!(dirty.differences.len(), 1, "{dirty:#?}");
    assert_eq!(dirty.differences[0].kind, DifferenceKind::Amount);
    assert_eq!(dirty.differences[0].invoice, number);
}

async fn reconcile_checks_xeros_total_with_tax_at_the_configured_rates(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    // Xero (the stand-in) taxes OUTPUT lines at 10 %, as the default rates say: Totals agree.
    let clean = rebill::pipeline::reconcile(&w.pipeline, nov())
        .await
        .unwrap();
    assert!(clean.is_clean(), "{clean:#?}");
    assert!(clean.invoices_checked >= 2);

    // Rates that disagree with the organisation's show on each Xero invoice, as a Total difference.
    let mut wrong = w.pipeline.clone();
    wrong.config.xero.tax_rates = rebill::domain::TaxRates::try_from(
        std::collections::BTreeMap::from([("OUTPUT".to_string(), rust_decimal::Decimal::from(15))]),
    )
    .unwrap();
    let dirty = rebill::pipeline::reconcile(&wrong, nov()).await.unwrap();
    assert!(!dirty.is_clean());
    assert!(
        dirty
            .differences
            .iter()
            .all(|d| d.kind == DifferenceKind::Amount && d.detail.contains("total (with tax)")),
        "{dirty:#?}"
    );

    // A tax type without a configured rate is checked on the SubTotal (ex tax) alone.
    let mut unknown = w.pipeline.clone();
    unknown.config.xero.tax_rates = rebill::domain::TaxRates::default();
    let subtotal_only = rebill::pipeline::reconcile(&unknown, nov()).await.unwrap();
    assert!(subtotal_only.is_clean(), "{subtotal_only:#?}");
}

async fn an_entry_left_in_flight_by_a_dead_worker_is_finished_once(app: TestApp) {
    let w = build(&app).await;
    // Record without pushing: claim everything as a worker that then "dies" (claim already expired).
    let snapshot_push = w.pipeline.clone();
    let period = nov();
    rebill::on_db!(app.store, p => sqlx::query("UPDATE outbox SET status = 'pending'").execute(p).await.unwrap().rows_affected());
    let report = snapshot_push.run_period(period).await.unwrap();
    assert_eq!(report.invoices_created.len(), 3);
    // Now simulate a crash after remote creates but before the ledger write: put done entries back
    // in flight with an expired claim, as a killed process leaves them.
    rebill::on_db!(app.store, p => sqlx::query(
        "UPDATE outbox SET status = 'in_flight', claimed_by = 'dead', claimed_until = $1, attempts = 1 WHERE status = 'done'")
        .bind(w.clock.now() - chrono::Duration::minutes(10))
        .execute(p).await.unwrap().rows_affected());
    let retry = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(retry.xero_invoices_found_again.len(), 2, "{retry:?}");
    assert!(retry.xero_invoices_created.is_empty());
    assert_eq!(w.sandboxes.xero.invoices().len(), 2, "no duplicate invoice");
    assert_eq!(
        w.sandboxes.autotask.charges().len(),
        2,
        "no duplicate charge"
    );
    assert_eq!(
        w.sandboxes.xero.emails().len(),
        1,
        "the email was replayed by its Idempotency-Key, not sent twice"
    );
}

async fn a_dropped_xero_response_is_retried_with_the_same_key_and_creates_once(app: TestApp) {
    let w = build(&app).await;
    w.sandboxes
        .xero
        .faults
        .push("PUT", "/Invoices", rebill::sandbox::Fault::DropAfterWork);
    let report = w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(report.push.xero_invoices_created.len(), 2, "{report:?}");
    assert_eq!(
        w.sandboxes.xero.invoices().len(),
        2,
        "the retry replayed the first create"
    );
}

async fn a_dropped_autotask_response_is_found_by_its_marker(app: TestApp) {
    let w = build(&app).await;
    w.sandboxes
        .autotask
        .faults
        .push("POST", "/Charges", rebill::sandbox::Fault::DropAfterWork);
    let report = w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(report.push.autotask_charges, 2, "{report:?}");
    assert_eq!(
        w.sandboxes.autotask.charges().len(),
        2,
        "no duplicate charge"
    );
}

backend_tests!(
    a_run_bills_every_customer_in_the_right_place,
    running_a_period_again_creates_and_sends_nothing_new,
    a_resync_after_a_late_cdr_changes_exactly_the_affected_lines,
    a_resync_after_payment_makes_a_credit_note_not_an_edit,
    a_billed_autotask_charge_gets_a_correcting_charge,
    a_dry_run_changes_nothing_anywhere,
    reconcile_is_clean_and_then_catches_an_amount_edited_in_xero,
    reconcile_checks_xeros_total_with_tax_at_the_configured_rates,
    an_entry_left_in_flight_by_a_dead_worker_is_finished_once,
    a_dropped_xero_response_is_retried_with_the_same_key_and_creates_once,
    a_dropped_autotask_response_is_found_by_its_marker,
);

mod limits_and_grace {
    use super::*;

    async fn xeros_daily_email_cap_parks_the_email_until_tomorrow(app: TestApp) {
        let w = build(&app).await;
        w.sandboxes.xero.faults.push(
            "POST",
            "/Email",
            rebill::sandbox::Fault::Status {
                status: 400,
                body: serde_json::json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [
                    {"Message": "The daily limit of invoice emails for this organisation has been reached."}]}]}),
                retry_after: None,
            },
        );
        let report = w.pipeline.run_period(nov()).await.unwrap();
        assert_eq!(report.push.parked.len(), 1, "{report:?}");
        assert!(w.sandboxes.xero.emails().is_empty());
        let open = app.store.outbox(None).await.unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].action, OutboxAction::XeroEmail);
        assert!(
            open[0].next_attempt_at > w.clock.now() + chrono::Duration::hours(1),
            "parked until the next day"
        );
        assert_eq!(
            open[0].attempts, 0,
            "a parked email is not counted as a failed attempt"
        );
        // The next day it goes out, once.
        w.pipeline
            .drain(w.clock.now() + chrono::Duration::days(1))
            .await
            .unwrap();
        assert_eq!(w.sandboxes.xero.emails().len(), 1);
        assert!(app.store.outbox(None).await.unwrap().is_empty());
    }

    async fn a_grace_period_keeps_invoices_local_until_it_ends(app: TestApp) {
        let mut w = build(&app).await;
        w.pipeline.config.invoices.grace_days = 27;
        let start = Period::parse("2026-11")
            .unwrap()
            .bounds(chrono_tz::Australia::Sydney)
            .0;
        // The run on the 2nd, local time: inside the 27 days of grace.
        w.clock.set(start + chrono::Duration::days(1));
        let report = w.pipeline.run_period(nov()).await.unwrap();
        assert_eq!(report.invoices_created.len(), 3);
        assert!(
            w.sandboxes.xero.invoices().is_empty(),
            "nothing pushed during the grace period"
        );
        assert!(w.sandboxes.autotask.charges().is_empty());
        // One second before the grace ends nothing goes; at its end everything does.
        w.clock
            .set(start + chrono::Duration::days(27) - chrono::Duration::seconds(1));
        w.pipeline.drain(w.clock.now()).await.unwrap();
        assert!(w.sandboxes.xero.invoices().is_empty());
        w.clock.set(start + chrono::Duration::days(27));
        w.pipeline.drain(w.clock.now()).await.unwrap();
        assert_eq!(w.sandboxes.xero.invoices().len(), 2);
        assert_eq!(w.sandboxes.autotask.charges().len(), 2);
    }

    crate::backend_tests!(
        xeros_daily_email_cap_parks_the_email_until_tomorrow,
        a_grace_period_keeps_invoices_local_until_it_ends,
    );
}
