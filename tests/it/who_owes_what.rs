//! Who owes what, over several months (DESIGN §2): calls belong to the customer who held the
//! service when they were made, fees to the days held, and what a run could not have seen goes on
//! the customer's next invoice as its own line — once.

use chrono::Utc;
use rebill::domain::{Customer, ItemKind, Money, NonEmpty, Period, ServiceId, Transition};
use rebill::pipeline::{PlanKind, ResyncRequest, resync};
use rebill::store::NewItem;
use rebill::store::billing::StoredLine;
use rebill::store::calls::{CallKey, NewCall};

use crate::common::TestApp;
use crate::common::world::{World, build, day, service};

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

fn m(s: &str) -> Money {
    Money::parse(s).unwrap()
}

/// 00:30 on the 2nd of `period`, Sydney time: when the schedule has run it.
fn run_time(period: &str) -> chrono::DateTime<Utc> {
    p(period).bounds(chrono_tz::Australia::Sydney).0
        + chrono::Duration::hours(24)
        + chrono::Duration::minutes(30)
}

/// Runs `period` at its scheduled time.
async fn run(w: &World, period: &str) {
    w.clock.set(run_time(period));
    w.pipeline.run_period(p(period)).await.unwrap();
}

fn call(n: u32, user: &str, service: ServiceId, started: &str, price: &str) -> NewCall {
    let started_at = started
        .parse::<chrono::DateTime<Utc>>()
        .unwrap()
        .timestamp();
    NewCall {
        key: CallKey::derive(started_at, &[&n.to_string()]),
        service_id: Some(service.get()),
        user_ref: user.into(),
        started_at,
        duration_secs: 60,
        destination: "0412345678".into(),
        call_type: "mobile".into(),
        inbound: false,
        cost_micros: Some(50_000),
        price_micros: Some(m(price).to_micros().unwrap()),
        plan_version: Some(1),
    }
}

/// The live lines of a customer's invoice for a period (empty when it has none).
async fn lines_of(app: &TestApp, customer: &Customer, period: &str) -> Vec<StoredLine> {
    let Some(inv) = app
        .store
        .invoices(Some(p(period)), Some(customer.id))
        .await
        .unwrap()
        .into_iter()
        .next()
    else {
        return Vec::new();
    };
    app.store
        .invoice_lines(inv.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| !l.removed)
        .collect()
}

async fn calls_belong_to_the_customer_who_held_the_service_when_they_were_made(app: TestApp) {
    let w = build(&app).await;
    let a = app.actor();
    run(&w, "2026-11").await;
    // November calls on the SIP service, which Enabled holds until the end of November.
    app.store
        .insert_calls(
            &[
                call(1, "0299990001", w.sip, "2026-11-10T01:00:00Z", "2.50"),
                call(2, "0299990002", w.sip, "2026-11-25T01:00:00Z", "1.25"),
            ],
            chrono_tz::UTC,
        )
        .await
        .unwrap();
    // Then ops move it to Newco from 1 December: trash can, minus, Assign Service.
    let newco = w.newco(&app).await;
    app.store
        .transition(&a, w.sip, Transition::Exclude, day("2026-11-28"))
        .await
        .unwrap();
    app.store
        .transition(&a, w.sip, Transition::Unassign, day("2026-12-01"))
        .await
        .unwrap();
    app.store
        .assign(&a, w.sip, newco.id, day("2026-12-01"), None)
        .await
        .unwrap();
    run(&w, "2026-12").await;

    let enabled = lines_of(&app, &w.enabled, "2026-12").await;
    let calls: Vec<&StoredLine> = enabled
        .iter()
        .filter(|l| l.description.contains("calls in November 2026"))
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "A is billed its November calls: {enabled:#?}"
    );
    assert_eq!(calls[0].amount, m("3.75"));
    assert!(
        !enabled
            .iter()
            .any(|l| l.description.contains("December 2026")),
        "A no longer holds it in December: {enabled:#?}"
    );
    let b = lines_of(&app, &newco, "2026-12").await;
    assert!(
        !b.iter().any(|l| l.description.contains("calls in")),
        "B is never billed calls made before it held the service: {b:#?}"
    );
    assert_eq!(
        b.iter().map(|l| l.amount).sum::<Money>(),
        m("49.95"),
        "B pays December's fee: {b:#?}"
    );
    // And the remote documents say the same.
    let xero = w.sandboxes.xero.invoices();
    let newco_contact = newco.target.xero_contact().unwrap().to_string();
    let remote_b: Vec<_> = xero
        .iter()
        .filter(|i| i["Contact"]["ContactID"] == newco_contact.as_str())
        .collect();
    assert_eq!(remote_b.len(), 1, "{xero:#?}");
    assert_eq!(
        remote_b[0]["SubTotal"].to_string().trim_matches('"'),
        "49.95",
        "B's Xero invoice has no November calls"
    );
}

async fn a_part_month_entered_after_its_run_is_billed_on_the_next_invoice(app: TestApp) {
    let w = build(&app).await;
    let a = app.actor();
    run(&w, "2026-11").await;
    // Entered on 25 November, after November's run: a service from the 20th, and support from the
    // 20th.
    let (late, _) = app
        .store
        .import_service(&a, &service("late", None, "30.00", &["0299990009"]))
        .await
        .unwrap();
    app.store
        .assign(&a, late, w.enabled.id, day("2026-11-20"), None)
        .await
        .unwrap();
    app.store
        .add_item(
            &a,
            &NewItem {
                customer_id: w.enabled.id,
                kind: ItemKind::Recurring,
                description: NonEmpty::parse("d", "Support").unwrap(),
                amount: m("60"),
                starts_on: Some(day("2026-11-20")),
                autotask: None,
            },
        )
        .await
        .unwrap();
    run(&w, "2026-12").await;

    let dec = lines_of(&app, &w.enabled, "2026-12").await;
    let find = |text: &str| {
        dec.iter()
            .find(|l| l.description.contains(text))
            .unwrap_or_else(|| panic!("no line {text:?} in {dec:#?}"))
    };
    // 30.00 × 11 / 30 = 11.00; 60 × 11 / 30 = 22.00
    let part = find("Service late — 20–30 November 2026 (11 of 30 days)");
    assert_eq!(part.amount, m("11.00"));
    assert_eq!(part.charge_key.as_str(), format!("svc-{late}-fee-2026-11"));
    assert_eq!(
        find("Support — 20–30 November 2026 (11 of 30 days)").amount,
        m("22.00")
    );
    assert_eq!(find("Service late — December 2026").amount, m("30.00"));
    assert_eq!(find("Support — December 2026").amount, m("60.00"));

    // Billed once: neither a resync of November nor one of December, nor January's run, bills the
    // November part again.
    for period in ["2026-11", "2026-12"] {
        let again = resync(
            &w.pipeline,
            &ResyncRequest {
                period: p(period),
                customer: Some(w.enabled.id),
                dry_run: true,
            },
        )
        .await
        .unwrap();
        assert!(
            again
                .plan
                .actions
                .iter()
                .all(|a| a.kind == PlanKind::Unchanged),
            "resync {period}: {:#?}",
            again.plan
        );
    }
    run(&w, "2027-01").await;
    let jan = lines_of(&app, &w.enabled, "2027-01").await;
    assert!(
        !jan.iter().any(|l| l.description.contains("November")),
        "{jan:#?}"
    );
    assert_eq!(
        jan.iter().map(|l| l.amount).sum::<Money>(),
        m("49.95") + m("30.00") + m("60.00")
    );
}

async fn calls_imported_after_their_invoice_are_billed_once_on_the_next(app: TestApp) {
    let w = build(&app).await;
    app.store
        .insert_calls(
            &[call(1, "0299990001", w.sip, "2026-10-10T01:00:00Z", "2.00")],
            chrono_tz::UTC,
        )
        .await
        .unwrap();
    run(&w, "2026-11").await;
    // More October calls arrive after November's invoice was made.
    app.store
        .insert_calls(
            &[
                call(2, "0299990001", w.sip, "2026-10-20T01:00:00Z", "0.75"),
                call(3, "0299990002", w.sip, "2026-10-30T01:00:00Z", "0.50"),
            ],
            chrono_tz::UTC,
        )
        .await
        .unwrap();
    run(&w, "2026-12").await;
    let dec = lines_of(&app, &w.enabled, "2026-12").await;
    let october: Vec<&StoredLine> = dec
        .iter()
        .filter(|l| l.description.contains("calls in October 2026"))
        .collect();
    assert_eq!(october.len(), 1, "{dec:#?}");
    assert_eq!(october[0].amount, m("1.25"), "only the late calls");
    // A resync of November now changes nothing: the late calls are billed, once, in December.
    let nov = resync(
        &w.pipeline,
        &ResyncRequest {
            period: p("2026-11"),
            customer: Some(w.enabled.id),
            dry_run: true,
        },
    )
    .await
    .unwrap();
    assert!(
        nov.plan
            .actions
            .iter()
            .all(|a| a.kind == PlanKind::Unchanged),
        "{:#?}",
        nov.plan
    );
}

async fn unrated_calls_are_reported_by_the_run_and_not_billed(app: TestApp) {
    let w = build(&app).await;
    let mut unrated = call(1, "0299990001", w.sip, "2026-10-10T01:00:00Z", "0");
    unrated.price_micros = None;
    unrated.plan_version = None;
    app.store
        .insert_calls(
            &[
                unrated,
                call(2, "0299990001", w.sip, "2026-10-11T01:00:00Z", "1.00"),
            ],
            chrono_tz::UTC,
        )
        .await
        .unwrap();
    w.clock.set(run_time("2026-11"));
    let report = w.pipeline.run_period(p("2026-11")).await.unwrap();
    assert_eq!(report.unrated_calls, 1, "{report:?}");
    let lines = lines_of(&app, &w.enabled, "2026-11").await;
    let calls: Vec<&StoredLine> = lines
        .iter()
        .filter(|l| l.description.contains("calls in October"))
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].amount, m("1.00"), "only the rated call is billed");
}

crate::backend_tests!(
    unrated_calls_are_reported_by_the_run_and_not_billed,
    calls_belong_to_the_customer_who_held_the_service_when_they_were_made,
    a_part_month_entered_after_its_run_is_billed_on_the_next_invoice,
    calls_imported_after_their_invoice_are_billed_once_on_the_next,
);
