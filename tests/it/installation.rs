//! The per-installation id (issue 15): made once per database and put in front of every Xero
//! Idempotency-Key, so two databases on one Xero organisation never answer each other's requests
//! (before, the second database's invoices and email were "replays" of the first's).

use std::sync::Arc;

use rebill::clock::TestClock;
use rebill::domain::Period;
use rebill::pipeline::Pipeline;
use rebill::sandbox::world::{Sample, SampleDates};
use rebill::sandbox::{Sandboxes, xero_config};

use crate::common::TestApp;
use crate::common::world::day;

/// Seeds the sample world into `app`'s database, its contacts in the shared Xero stand-in, and
/// bills November 2026.
async fn bill_november(app: &TestApp, xero: &Sandboxes, own_autotask: &Sandboxes) {
    let mut config = app.config.clone();
    own_autotask.configure(&mut config);
    config.xero = xero_config(&xero.xero_url);
    config.business.timezone = chrono_tz::Australia::Sydney;
    let dates = SampleDates {
        since: day("2026-01-01"),
        mid: day("2026-11-16"),
    };
    Sample::seed(
        &app.store,
        &app.actor(),
        dates,
        &xero.xero,
        &own_autotask.autotask,
    )
    .await
    .unwrap();
    let clock = Arc::new(TestClock::at("2026-12-01T13:30:00Z".parse().unwrap()));
    let pipeline = Pipeline::from_config(app.store.clone(), config)
        .await
        .unwrap()
        .with_clock(clock);
    let report = pipeline
        .run_period(Period::parse("2026-11").unwrap())
        .await
        .unwrap();
    assert!(report.push.failed.is_empty(), "{report:?}");
}

async fn two_databases_on_one_xero_organisation_never_share_an_idempotency_key(a: TestApp) {
    let b = TestApp::sqlite().await;
    let shared = Sandboxes::start(0, 0).await.unwrap();
    let other_autotask = Sandboxes::start(0, 0).await.unwrap();
    bill_november(&a, &shared, &shared).await;
    bill_november(&b, &shared, &other_autotask).await;

    let (ia, ib) = (
        a.store.installation_id().await.unwrap(),
        b.store.installation_id().await.unwrap(),
    );
    assert_ne!(ia, ib, "each database is its own installation");
    assert_eq!(
        ia,
        a.store.installation_id().await.unwrap(),
        "made once, then kept"
    );
    // Each database's two invoices were created, and each emailed invoice was emailed.
    assert_eq!(
        shared.xero.invoices().len(),
        4,
        "no create answered as a replay"
    );
    assert_eq!(
        shared.xero.emails().len(),
        2,
        "no email refused as a replay"
    );
    let ids = |app: &TestApp| {
        let app_store = app.store.clone();
        async move {
            app_store
                .invoices(Some(Period::parse("2026-11").unwrap()), None)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|i| i.xero_invoice_id)
                .collect::<std::collections::BTreeSet<_>>()
        }
    };
    let (xa, xb) = (ids(&a).await, ids(&b).await);
    assert_eq!(xa.len(), 2);
    assert!(xa.is_disjoint(&xb), "{xa:?} {xb:?}");
}

crate::backend_tests!(two_databases_on_one_xero_organisation_never_share_an_idempotency_key);
