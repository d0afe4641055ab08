//! An extra invoice (raised when a paid invoice's period bills more) is emailed exactly once, like
//! an invoice: a send whose answer was lost is looked up in Xero before it is sent again, so the
//! customer never gets the same extra invoice twice once Xero has forgotten the Idempotency-Key.

use chrono::Duration;
use rebill::clock::Clock;
use rebill::domain::Period;
use rebill::pipeline::{ResyncRequest, resync};
use rebill::sandbox::Fault;

use crate::common::TestApp;
use crate::common::world::{World, build, day, service};

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

/// Bills November, pays Acme's invoice, then assigns Acme a service from 1 November: the resync
/// raises an extra invoice for it.
async fn a_paid_month_that_now_bills_more(app: &TestApp) -> (World, String) {
    let w = build(app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0)
        .number;
    w.sandboxes.xero.pay(&number);
    let svc = service("late", None, "40", &["0299997777"]);
    let late = app
        .store
        .import_service(&app.actor(), &svc)
        .await
        .unwrap()
        .0;
    app.store
        .assign(&app.actor(), late, w.enabled.id, day("2026-11-01"), None)
        .await
        .unwrap();
    (w, number)
}

/// The extra invoices of invoice `number` (Reference `{number}-A…`).
fn extra_invoice_ids(w: &World, number: &str) -> Vec<String> {
    w.sandboxes
        .xero
        .invoices()
        .into_iter()
        .filter(|i| {
            i["Reference"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("{number}-A")))
        })
        .filter_map(|i| i["InvoiceID"].as_str().map(str::to_string))
        .collect()
}

async fn an_extra_invoice_email_retried_after_key_expiry_is_not_sent_again(app: TestApp) {
    let (w, number) = a_paid_month_that_now_bills_more(&app).await;
    let xero = &w.sandboxes.xero;
    let emails_before = xero.emails().len();
    // The extra invoice's email reaches Xero but its answer is lost; the retry is told to wait.
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
    let _ = resync(
        &w.pipeline,
        &ResyncRequest {
            period: nov(),
            customer: None,
            dry_run: false,
        },
    )
    .await;
    assert_eq!(
        xero.emails().len(),
        emails_before + 1,
        "the lost email did go out"
    );

    xero.expire_idempotency_keys();
    w.clock.advance(Duration::hours(2));
    w.pipeline.drain(w.clock.now()).await.unwrap();
    let extra = extra_invoice_ids(&w, &number);
    assert_eq!(extra.len(), 1, "one extra invoice: {extra:?}");
    let sent = xero.emails().iter().filter(|id| **id == extra[0]).count();
    assert_eq!(sent, 1, "found sent in Xero, not sent again");
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

backend_tests!(an_extra_invoice_email_retried_after_key_expiry_is_not_sent_again,);
