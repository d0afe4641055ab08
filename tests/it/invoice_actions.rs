//! `rebilld invoice email NUMBER` (issue 15): an invoice emailed again after an address was added
//! or a customer enabled again — through the outbox, with its own key, respecting a disabled
//! customer and Xero's daily email cap.

use rebill::domain::{CustomerId, OutboxStatus, Period};
use rebill::pipeline::invoice_actions::email_again;
use rebill::sandbox::Fault;
use rebill::store::Actor;

use crate::common::TestApp;
use crate::common::world::build;

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

async fn number_of(app: &TestApp, customer: CustomerId) -> String {
    app.store
        .invoices(Some(nov()), Some(customer))
        .await
        .unwrap()[0]
        .number
        .clone()
}

async fn an_invoice_emailed_again_is_sent_once_more_under_its_own_key_and_audited(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    let number = number_of(&app, w.enabled.id).await;
    let anna = Actor::new("ops-anna");
    let r = email_again(&w.pipeline, &number, &anna).await.unwrap();
    assert_eq!(r.entry.status, OutboxStatus::Done, "{r:?}");
    assert_eq!(r.pushed.emailed, vec![number.clone()]);
    assert_eq!(
        w.sandboxes.xero.emails().len(),
        2,
        "sent again, not answered as a replay of the first"
    );
    let again = email_again(&w.pipeline, &number, &anna).await.unwrap();
    assert_ne!(again.entry.idempotency_key, r.entry.idempotency_key);
    assert_eq!(w.sandboxes.xero.emails().len(), 3);
    let inv = app.store.invoice_by_number(&number).await.unwrap();
    let audit = app
        .store
        .audit_log(Some("invoice"), Some(&inv.id.to_string()), 10)
        .await
        .unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.action == "email_again" && a.actor == "ops-anna")
            .count(),
        2,
        "{audit:?}"
    );
}

async fn a_disabled_customers_or_an_autotask_invoice_is_refused_and_nothing_is_sent(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let before = w.sandboxes.xero.emails().len();
    let anna = Actor::new("ops-anna");
    let disabled = number_of(&app, w.disabled.id).await;
    let e = email_again(&w.pipeline, &disabled, &anna)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("disabled"), "{e}");
    let autotask = number_of(&app, w.autotask.id).await;
    let e = email_again(&w.pipeline, &autotask, &anna)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Autotask"), "{e}");
    let e = email_again(&w.pipeline, "RB-NOPE", &anna)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not found"), "{e}");
    assert_eq!(w.sandboxes.xero.emails().len(), before);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

async fn xeros_daily_email_cap_parks_the_email_again_and_a_second_request_waits_for_it(
    app: TestApp,
) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    w.sandboxes.xero.faults.push(
        "POST",
        "/Email",
        Fault::Status {
            status: 400,
            body: serde_json::json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [
                {"Message": "The daily limit of invoice emails for this organisation has been reached."}]}]}),
            retry_after: None,
        },
    );
    let number = number_of(&app, w.enabled.id).await;
    let anna = Actor::new("ops-anna");
    let r = email_again(&w.pipeline, &number, &anna).await.unwrap();
    assert_eq!(r.pushed.parked.len(), 1, "{r:?}");
    assert_eq!(r.entry.status, OutboxStatus::Pending);
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    let e = email_again(&w.pipeline, &number, &anna).await.unwrap_err();
    assert!(e.to_string().contains("already pending"), "{e}");
}

backend_tests!(
    an_invoice_emailed_again_is_sent_once_more_under_its_own_key_and_audited,
    a_disabled_customers_or_an_autotask_invoice_is_refused_and_nothing_is_sent,
    xeros_daily_email_cap_parks_the_email_again_and_a_second_request_waits_for_it,
);
