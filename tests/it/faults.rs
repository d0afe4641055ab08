//! Exactly once under faults (issue 13): each test replays against the stand-ins the exact sequence
//! that duplicated an invoice, a charge or an email before claims were owned and uncertain outcomes
//! were looked up, and checks that every document exists once.

use std::collections::HashSet;
use std::time::Duration as StdDuration;

use chrono::Duration;
use rebill::clock::Clock;
use rebill::domain::{OutboxAction, OutboxStatus, Period};
use rebill::pipeline::Pipeline;
use rebill::sandbox::Fault;

use crate::common::TestApp;
use crate::common::world::{World, build};

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

/// A second pipeline on the world's database, stand-ins and clock, with its configuration changed
/// by `tune` and its own owner name (another process).
async fn pipeline(
    w: &World,
    owner: &str,
    tune: impl FnOnce(&mut rebill::config::Config),
) -> Pipeline {
    let mut config = w.pipeline.config.clone();
    tune(&mut config);
    let mut p = Pipeline::from_config(w.pipeline.store.clone(), config)
        .await
        .unwrap()
        .with_clock(w.clock.clone());
    p.owner = owner.to_string();
    p
}

/// The markers of the Autotask charges, each once (a duplicate fails the test, naming it).
fn charge_markers_once(w: &World) -> usize {
    let charges = w.sandboxes.autotask.charges();
    let mut seen = HashSet::new();
    for c in &charges {
        let marker = c["purchaseOrderNumber"].as_str().unwrap_or("").to_string();
        assert!(
            seen.insert(marker.clone()),
            "charge {marker:?} created twice: {charges:#?}"
        );
    }
    charges.len()
}

/// The Xero invoices, each Reference once.
fn references_once(w: &World) -> usize {
    let invoices = w.sandboxes.xero.invoices();
    let mut seen = HashSet::new();
    for i in &invoices {
        let r = i["Reference"].as_str().unwrap_or("").to_string();
        assert!(seen.insert(r.clone()), "invoice {r:?} created twice");
    }
    invoices.len()
}

/// Path 1: the create reaches Autotask after the client timed out. Before, the client looked for
/// the marker at once, found nothing yet, and sent the create again: two charges.
async fn an_autotask_create_landing_after_the_timeout_is_found_not_sent_again(app: TestApp) {
    let w = build(&app).await;
    let p = pipeline(&w, "worker-a", |c| {
        c.autotask.timeout_secs = 1;
        c.autotask.settle_secs = 60;
    })
    .await;
    w.sandboxes.autotask.faults.push(
        "POST",
        "/Charges",
        Fault::LateApply(StdDuration::from_secs(2)),
    );
    let report = p.run_period(nov()).await.unwrap();
    assert_eq!(report.push.autotask_charges, 1, "{report:?}");
    let open = app.store.outbox(None).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert!(
        open[0].uncertain_since.is_some(),
        "a create that timed out is uncertain"
    );
    assert!(
        open[0].next_attempt_at >= w.clock.now() + Duration::seconds(60),
        "not looked for again before the settle time"
    );

    // Before the settle time nothing is sent, whatever the drain is asked.
    w.clock.advance(Duration::seconds(30));
    p.drain(w.clock.now()).await.unwrap();
    // The late request lands (waited for, not timed: the stand-in applies it when it does).
    let mut landed = false;
    for _ in 0..1200 {
        if charge_markers_once(&w) == 2 {
            landed = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    assert!(landed, "the late create never landed");

    w.clock.advance(Duration::minutes(5));
    p.drain(w.clock.now()).await.unwrap();
    assert_eq!(
        charge_markers_once(&w),
        2,
        "found by its marker, not created again"
    );
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

/// Path 2: a lost create response, the retry parked (rate limit / day budget), then a retry after
/// Xero forgot the Idempotency-Key. Before, parking gave the attempt back, so the retry skipped the
/// look-up by Reference and created every invoice again.
async fn a_lost_xero_create_then_a_park_then_key_expiry_creates_each_invoice_once(app: TestApp) {
    let w = build(&app).await;
    let xero = &w.sandboxes.xero;
    xero.faults.push("PUT", "/Invoices", Fault::DropAfterWork);
    xero.faults.push(
        "PUT",
        "/Invoices",
        Fault::Status {
            status: 429,
            body: serde_json::json!({"Title": "Too Many Requests"}),
            retry_after: Some(3600),
        },
    );
    let report = w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(report.push.parked.len(), 2, "{report:?}");
    assert_eq!(references_once(&w), 2, "the lost create did reach Xero");
    let parked: Vec<_> = app
        .store
        .outbox(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == OutboxAction::XeroInvoice)
        .collect();
    assert!(
        parked
            .iter()
            .all(|e| e.uncertain_since.is_some() && e.attempts == 0),
        "parked: attempt given back, uncertainty kept: {parked:?}"
    );

    xero.expire_idempotency_keys();
    w.clock.advance(Duration::hours(2));
    let report = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(report.xero_invoices_found_again.len(), 2, "{report:?}");
    assert!(report.xero_invoices_created.is_empty(), "{report:?}");
    assert_eq!(references_once(&w), 2);
    assert_eq!(xero.emails().len(), 1, "the enabled customer's email, once");
}

/// Path 3: an email whose answer was lost, retried after the key expired. Before, nothing checked
/// whether the invoice had been sent: the customer got it twice.
async fn an_email_retried_after_key_expiry_is_not_sent_again(app: TestApp) {
    let w = build(&app).await;
    let xero = &w.sandboxes.xero;
    xero.faults.push("POST", "/Email", Fault::DropAfterWork);
    xero.faults.push(
        "POST",
        "/Email",
        Fault::Status {
            status: 429,
            body: serde_json::json!({"Title": "Too Many Requests"}),
            retry_after: Some(3600),
        },
    );
    let report = w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(report.push.parked.len(), 1, "{report:?}");
    assert_eq!(xero.emails().len(), 1, "the lost email did go out");

    xero.expire_idempotency_keys();
    w.clock.advance(Duration::hours(2));
    let report = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(report.emailed.len(), 1, "{report:?}");
    assert_eq!(xero.emails().len(), 1, "found sent in Xero, not sent again");
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

/// Path 4: a claim expires while its request is in flight and a second process starts. Before,
/// the claim's deadline was never renewed: the second process took the entry over and created the
/// charge the first one's request was about to create.
async fn a_claim_in_flight_is_renewed_so_a_second_process_does_not_take_it(app: TestApp) {
    let w = build(&app).await;
    let tune = |c: &mut rebill::config::Config| c.schedule.claim_secs = 3;
    let a = pipeline(&w, "worker-a", tune).await;
    let b = pipeline(&w, "worker-b", tune).await;
    w.sandboxes.autotask.faults.push(
        "POST",
        "/Charges",
        Fault::LateApply(StdDuration::from_secs(4)),
    );
    let run = tokio::spawn({
        let a = a.clone();
        async move { a.run_period(nov()).await }
    });
    // Wait for the slow create to be in flight.
    let mut in_flight = false;
    for _ in 0..200 {
        let open = app.store.outbox(None).await.unwrap();
        if open
            .iter()
            .any(|e| e.action == OutboxAction::AutotaskCharge && e.status == OutboxStatus::InFlight)
        {
            in_flight = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    assert!(in_flight, "the Autotask create never started");
    // Far past the claim time, as for a push longer than the claim; the holder keeps renewing.
    // The second process starts once the holder's renewal has been seen (or its create is done):
    // waited for, not timed, so a loaded machine cannot make the renewal late.
    w.clock.advance(Duration::seconds(10));
    // Every Autotask entry still in flight must show a renewed claim (the test clock stands
    // still, so once renewed it stays so).
    let mut renewed = false;
    for _ in 0..2400 {
        let mut all = true;
        for e in app.store.outbox(None).await.unwrap() {
            if e.action == OutboxAction::AutotaskCharge && e.status == OutboxStatus::InFlight {
                all &= app
                    .store
                    .outbox_claim(e.id)
                    .await
                    .unwrap()
                    .is_none_or(|(_, until)| until > w.clock.now());
            }
        }
        if all {
            renewed = true;
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(25)).await;
    }
    assert!(renewed, "the holder never renewed its claim");
    let second = b.drain(w.clock.now()).await.unwrap();
    assert_eq!(second.autotask_charges, 0, "{second:?}");

    let first = run.await.unwrap().unwrap();
    assert_eq!(first.push.autotask_charges, 2, "{first:?}");
    assert_eq!(charge_markers_once(&w), 2);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

/// Two pushes at once (a `push` while the daemon works) share the work: no "database is locked",
/// nothing twice.
async fn two_pushes_at_once_share_the_work_without_duplicates(app: TestApp) {
    let w = build(&app).await;
    let a = pipeline(&w, "worker-a", |_| {}).await;
    let b = pipeline(&w, "worker-b", |_| {}).await;
    let now = w.clock.now();
    let (ra, rb) = tokio::join!(a.run_period(nov()), async {
        let mut total = rebill::pipeline::PushReport::default();
        for _ in 0..5 {
            let r = b.drain(now).await.unwrap();
            total.autotask_charges += r.autotask_charges;
            total.xero_invoices_created.extend(r.xero_invoices_created);
            tokio::time::sleep(StdDuration::from_millis(20)).await;
        }
        total
    });
    let ra = ra.unwrap();
    let rb_push = rb;
    // Whatever is left (an entry one worker released) is finished by one more push.
    a.drain(now).await.unwrap();
    assert_eq!(
        ra.push.autotask_charges + rb_push.autotask_charges,
        2,
        "{ra:?} {rb_push:?}"
    );
    assert_eq!(references_once(&w), 2);
    assert_eq!(charge_markers_once(&w), 2);
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

/// Runs November and returns the number of an invoice it created.
async fn report_first(w: &World, _app: &TestApp) -> String {
    let r = w.pipeline.run_period(nov()).await.unwrap();
    r.invoices_created[0].clone()
}

/// A worker whose claim was taken over writes nothing for the entry (it would have moved a
/// finished entry back to pending).
async fn a_worker_that_lost_its_claim_writes_nothing(app: TestApp) {
    let w = build(&app).await;
    let store = &app.store;
    let now = w.clock.now();
    let invoice = store
        .invoice_by_number(&report_first(&w, &app).await)
        .await
        .unwrap();
    let entries = store.outbox(Some(invoice.id)).await.unwrap();
    let e = &entries[0];
    assert_eq!(e.status, OutboxStatus::Done);
    assert!(!store.hold_claim(e.id, "worker-a", now, None).await.unwrap());
    let l = rebill::store::outbox::LedgerEntry::new(
        e.action.system(),
        rebill::domain::LedgerOutcome::Error,
        now,
    );
    assert!(
        !store
            .fail_outbox(e, "worker-a", &l, Some(now))
            .await
            .unwrap(),
        "a done entry is not failed by a worker that does not hold it"
    );
    assert!(!store.park_outbox(e, "worker-a", now, "x").await.unwrap());
    assert_eq!(
        store.outbox_entry(e.id).await.unwrap().status,
        OutboxStatus::Done
    );
}

/// An Autotask 500 whose body is Autotask's "unexpected error … Error ID". Before, any 500 with
/// `{"errors": [...]}` was a permanent refusal, left failed until a resync; it is the server's
/// fault: the create's outcome is unknown, its marker is looked for after the settle time, and the
/// charge is created once.
async fn an_autotask_server_fault_is_retried_not_left_for_a_resync(app: TestApp) {
    let w = build(&app).await;
    w.sandboxes.autotask.faults.push(
        "POST",
        "/Charges",
        Fault::Status {
            status: 500,
            body: serde_json::json!({
                "errors": ["An unexpected error has occurred.  If the problem persists, please contact Autotask Support and reference Error ID: 54634."],
                "errorId": 54634
            }),
            retry_after: None,
        },
    );
    let report = w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(report.push.autotask_charges, 1, "{report:?}");
    let open = app.store.outbox(None).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        open[0].status,
        OutboxStatus::Pending,
        "retried, not failed for good"
    );
    assert!(open[0].uncertain_since.is_some(), "its outcome is unknown");

    w.clock.advance(Duration::hours(1));
    let again = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(again.autotask_charges, 1, "{again:?}");
    assert_eq!(charge_markers_once(&w), 2);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

backend_tests!(
    an_autotask_server_fault_is_retried_not_left_for_a_resync,
    an_autotask_create_landing_after_the_timeout_is_found_not_sent_again,
    a_lost_xero_create_then_a_park_then_key_expiry_creates_each_invoice_once,
    an_email_retried_after_key_expiry_is_not_sent_again,
    a_claim_in_flight_is_renewed_so_a_second_process_does_not_take_it,
    two_pushes_at_once_share_the_work_without_duplicates,
    a_worker_that_lost_its_claim_writes_nothing,
);
