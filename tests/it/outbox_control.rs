//! Outbox control (issue 15): one failed action retried or skipped by ops. A skipped action is
//! never sent, takes the actions waiting for it along, is audited, and reconcile shows it as
//! skipped rather than as a difference.

use rebill::clock::Clock;
use rebill::domain::{OutboxStatus, Period};
use rebill::sandbox::Fault;
use rebill::store::Actor;

use crate::common::TestApp;
use crate::common::world::build;

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

fn refused_by_xero() -> Fault {
    Fault::Status {
        status: 400,
        body: serde_json::json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [
            {"Message": "The contact has been archived."}]}]}),
        retry_after: None,
    }
}

async fn a_skipped_create_is_never_sent_takes_its_email_along_is_audited_and_shown_by_reconcile(
    app: TestApp,
) {
    let w = build(&app).await;
    w.sandboxes
        .xero
        .faults
        .push("PUT", "/Invoices", refused_by_xero());
    let report = w.pipeline.run_period(nov()).await.unwrap();
    assert!(!report.push.failed.is_empty(), "{report:?}");
    let open = app.store.outbox_open(false).await.unwrap();
    let failed = app.store.outbox_open(true).await.unwrap();
    assert!(
        failed
            .iter()
            .all(|f| f.entry.status == OutboxStatus::Failed)
    );
    // The create that an email waits for.
    let create = failed
        .iter()
        .find(|f| open.iter().any(|o| o.entry.depends_on == Some(f.entry.id)))
        .expect("the emailed customer's create failed")
        .entry
        .clone();
    let email = open
        .iter()
        .find(|o| o.entry.depends_on == Some(create.id))
        .unwrap()
        .entry
        .id;

    let anna = Actor::new("ops-anna");
    let skipped = app
        .store
        .skip_outbox_entry(create.id, &anna, "billed by hand in Xero", w.clock.now())
        .await
        .unwrap();
    assert_eq!(skipped, vec![create.id, email], "the email waits for it");
    assert_eq!(
        app.store.outbox_entry(create.id).await.unwrap().status,
        OutboxStatus::Skipped
    );
    assert_eq!(
        app.store.outbox_entry(email).await.unwrap().status,
        OutboxStatus::Skipped
    );
    let audit = app
        .store
        .audit_log(Some("outbox"), Some(&create.id.to_string()), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].action, "skip");
    assert_eq!(audit[0].actor, "ops-anna");
    assert!(
        audit[0]
            .after_json
            .as_deref()
            .is_some_and(|a| a.contains("billed by hand in Xero")),
        "{audit:?}"
    );

    // Every other failed action is retried and sent; the skipped one never is.
    for f in failed.iter().filter(|f| f.entry.id != create.id) {
        app.store
            .retry_outbox_entry(f.entry.id, &anna, w.clock.now())
            .await
            .unwrap();
    }
    let pushed = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert!(pushed.failed.is_empty(), "{pushed:?}");
    assert!(app.store.outbox_open(false).await.unwrap().is_empty());
    let skipped_number = app
        .store
        .invoice_by_id(create.invoice_id)
        .await
        .unwrap()
        .number;
    assert!(
        w.sandboxes
            .xero
            .invoices()
            .iter()
            .all(|i| i["Reference"] != skipped_number.as_str()),
        "a skipped create is never sent"
    );
    assert!(w.sandboxes.xero.emails().is_empty(), "nor its email");
    let counts = app.store.outbox_counts().await.unwrap();
    assert!(
        counts.contains(&(OutboxStatus::Skipped, 2)),
        "status counts skipped entries apart: {counts:?}"
    );

    let r = rebill::pipeline::reconcile(&w.pipeline, nov())
        .await
        .unwrap();
    assert!(r.is_clean(), "a skipped create is not missing: {r:?}");
    assert_eq!(r.skipped.len(), 2, "{r:?}");
    assert!(r.skipped.iter().all(|s| s.invoice == skipped_number
        && s.skipped_by == "ops-anna"
        && s.reason == "billed by hand in Xero"));
}

async fn a_parked_action_retried_is_due_now_and_done_ones_are_refused_as_is_a_skip_without_reason(
    app: TestApp,
) {
    let w = build(&app).await;
    w.sandboxes.xero.faults.push(
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
    let parked = app.store.outbox_open(false).await.unwrap();
    assert_eq!(parked.len(), 1);
    let email = parked[0].entry.clone();
    assert!(email.next_attempt_at > w.clock.now(), "parked for later");
    // Pushed now, a parked entry stays parked.
    w.pipeline.drain(w.clock.now()).await.unwrap();
    assert!(w.sandboxes.xero.emails().is_empty());

    let anna = Actor::new("ops-anna");
    let retried = app
        .store
        .retry_outbox_entry(email.id, &anna, w.clock.now())
        .await
        .unwrap();
    assert_eq!(retried.status, OutboxStatus::Pending);
    assert_eq!(retried.next_attempt_at, w.clock.now());
    w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(w.sandboxes.xero.emails().len(), 1, "sent once retried");
    let audit = app
        .store
        .audit_log(Some("outbox"), Some(&email.id.to_string()), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "retry");

    let done = app.store.outbox_entry(email.id).await.unwrap();
    assert_eq!(done.status, OutboxStatus::Done);
    let e = app
        .store
        .retry_outbox_entry(done.id, &anna, w.clock.now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is done"), "{e}");
    let e = app
        .store
        .skip_outbox_entry(done.id, &anna, "sent by hand", w.clock.now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("is done"), "{e}");
    let e = app
        .store
        .skip_outbox_entry(done.id, &anna, "  ", w.clock.now())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("reason"), "{e}");
    let e = app
        .store
        .retry_outbox_entry(
            rebill::domain::OutboxId::new(9999).unwrap(),
            &anna,
            w.clock.now(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
}

crate::backend_tests!(
    a_skipped_create_is_never_sent_takes_its_email_along_is_audited_and_shown_by_reconcile,
    a_parked_action_retried_is_due_now_and_done_ones_are_refused_as_is_a_skip_without_reason,
);
