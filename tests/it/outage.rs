//! One system's outage never blocks the other (issue 13): Xero and Autotask are pushed side by
//! side, each system's failure is reported on its own, and the report says exactly what reached
//! each system.

use std::collections::HashSet;

use rebill::clock::Clock;
use rebill::domain::{OutboxStatus, Period, RemoteSystem};
use rebill::pipeline::Pipeline;

use crate::common::TestApp;
use crate::common::world::{World, build};

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

/// A pipeline on the world's database, stand-ins and clock, with its configuration changed by
/// `tune`.
async fn pipeline(w: &World, tune: impl FnOnce(&mut rebill::config::Config)) -> Pipeline {
    let mut config = w.pipeline.config.clone();
    tune(&mut config);
    Pipeline::from_config(w.pipeline.store.clone(), config)
        .await
        .unwrap()
        .with_clock(w.clock.clone())
}

/// Each Reference once in Xero, each marker once in Autotask; returns (invoices, charges).
fn once_each(w: &World) -> (usize, usize) {
    let invoices = w.sandboxes.xero.invoices();
    let refs: HashSet<String> = invoices
        .iter()
        .map(|i| i["Reference"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        refs.len(),
        invoices.len(),
        "an invoice twice: {invoices:#?}"
    );
    let charges = w.sandboxes.autotask.charges();
    let markers: HashSet<String> = charges
        .iter()
        .map(|c| c["purchaseOrderNumber"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(markers.len(), charges.len(), "a charge twice: {charges:#?}");
    (invoices.len(), charges.len())
}

/// Xero answers 403 to every request (the organisation is not the grant's) while Autotask works:
/// every Autotask charge is created, the Xero actions wait in the outbox (released, not held), and
/// the report names both systems' counts and why Xero stopped. Before, the 403 aborted the whole
/// push: the charges stayed pending and the message said "nothing was pushed".
async fn a_xero_outage_does_not_hold_up_autotask(app: TestApp) {
    let w = build(&app).await;
    let p = pipeline(&w, |c| {
        c.xero.tenant_id = Some("00000000-0000-0000-0000-00000000dead".into())
    })
    .await;
    let report = p.run_period(nov()).await.unwrap();
    let push = &report.push;
    assert_eq!(push.autotask_charges, 2, "{push:?}");
    assert!(push.xero_invoices_created.is_empty(), "{push:?}");
    assert!(push.autotask_stopped.is_none(), "{push:?}");
    let why = push.xero_stopped.as_deref().unwrap_or_default();
    assert!(
        why.contains("403") && why.contains("xero connect"),
        "{push:?}"
    );
    assert_eq!(once_each(&w), (0, 2));
    let open = app.store.outbox(None).await.unwrap();
    assert!(!open.is_empty());
    assert!(
        open.iter()
            .all(|e| e.action.system() == RemoteSystem::Xero && e.status == OutboxStatus::Pending),
        "every Xero action waits, none left claimed: {open:#?}"
    );
    let summary = push.summary();
    assert!(
        summary[0].starts_with("Xero: 0 invoice(s) created, 0 found already there, 0 emailed")
            && summary[0].contains("stopped: the Xero connection must be renewed"),
        "{summary:?}"
    );
    assert_eq!(summary[1], "Autotask: 2 charge(s) created, 0 update(s)");
    assert_eq!(push.stopped().len(), 1, "{push:?}");

    // Reconnected to the right organisation: the Xero actions go out, once; Autotask is not
    // touched again.
    let again = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(again.xero_invoices_created.len(), 2, "{again:?}");
    assert_eq!(again.autotask_charges, 0, "{again:?}");
    assert!(again.stopped().is_empty(), "{again:?}");
    assert_eq!(once_each(&w), (2, 2));
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

/// The reverse: Autotask refuses the API user (401 on every request) while Xero works: the Xero
/// invoices are created and emailed, the Autotask push stops on its own and its charges wait.
async fn an_autotask_outage_does_not_hold_up_xero(app: TestApp) {
    let w = build(&app).await;
    let p = pipeline(&w, |c| {
        c.autotask.secret = Some(secrecy::SecretString::from("not-the-secret"))
    })
    .await;
    let report = p.run_period(nov()).await.unwrap();
    let push = &report.push;
    assert_eq!(push.xero_invoices_created.len(), 2, "{push:?}");
    assert_eq!(push.emailed.len(), 1, "{push:?}");
    assert_eq!(push.autotask_charges, 0, "{push:?}");
    assert!(push.xero_stopped.is_none(), "{push:?}");
    assert!(
        push.autotask_stopped
            .as_deref()
            .is_some_and(|w| w.contains("credentials")),
        "{push:?}"
    );
    assert_eq!(once_each(&w), (2, 0));
    let open = app.store.outbox(None).await.unwrap();
    assert!(
        !open.is_empty()
            && open
                .iter()
                .all(|e| e.action.system() == RemoteSystem::Autotask
                    && e.status == OutboxStatus::Pending),
        "only the Autotask charges wait, none left claimed: {open:#?}"
    );
    let summary = push.summary();
    assert_eq!(
        summary[0],
        "Xero: 2 invoice(s) created, 0 found already there, 1 emailed, 0 update(s)"
    );
    assert!(
        summary[1].starts_with("Autotask: 0 charge(s) created, 0 update(s); stopped:"),
        "{summary:?}"
    );

    // The credentials fixed, the charges go out once, after their retry time.
    w.clock.advance(chrono::Duration::hours(1));
    let again = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert_eq!(again.autotask_charges, 2, "{again:?}");
    assert!(again.xero_invoices_created.is_empty(), "{again:?}");
    assert_eq!(once_each(&w), (2, 2));
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}

backend_tests!(
    a_xero_outage_does_not_hold_up_autotask,
    an_autotask_outage_does_not_hold_up_xero,
);
