//! Reads in bulk (issue 16): reconcile and a resync's plan read a period's documents a page at a
//! time — Xero invoices by a list of References (and `IDs` for what those miss), Autotask charges
//! by a list of contracts — so what they ask the remotes does not grow with the customer count,
//! and a resync's requests follow its changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use rebill::clock::TestClock;
use rebill::domain::{Money, Period};
use rebill::pipeline::{Pipeline, PlanKind, ResyncRequest, reconcile, resync};
use rebill::sandbox::Sandboxes;
use rebill::sandbox::bulk::{BulkSpec, BulkWorld, seed_bulk};
use rebill::xero::XeroClient;

use crate::common::TestApp;

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

/// The bench's synthetic world at `customers` customers (7 in 10 Xero, 3 in 10 Autotask, one
/// service each), November billed and pushed to the stand-ins.
async fn bulk_world(app: &TestApp, customers: usize) -> (Sandboxes, Pipeline, BulkWorld) {
    let sandboxes = Sandboxes::start(0, 0).await.unwrap();
    let mut config = app.config.clone();
    sandboxes.configure(&mut config);
    config.business.timezone = chrono_tz::Australia::Sydney;
    let spec = BulkSpec {
        customers,
        services: customers,
        calls: 0,
    };
    let world = seed_bulk(
        &app.store,
        &app.actor(),
        spec,
        nov(),
        &sandboxes.xero,
        &sandboxes.autotask,
    )
    .await
    .unwrap();
    let clock = Arc::new(TestClock::at("2026-12-01T13:30:00Z".parse().unwrap()));
    let pipeline = Pipeline::from_config(app.store.clone(), config)
        .await
        .unwrap()
        .with_clock(clock);
    let run = pipeline.run_period(nov()).await.unwrap();
    assert_eq!(run.invoices_created.len(), customers, "{run:?}");
    (sandboxes, pipeline, world)
}

/// Requests to each remote's API (not its token, connection or zone look-ups), by kind.
fn api_requests(sb: &Sandboxes) -> BTreeMap<String, u64> {
    let xero = sb.xero.limits.requests_by_kind();
    let autotask = sb.autotask.limits.requests_by_kind();
    xero.into_iter()
        .chain(autotask)
        .filter(|(k, _)| {
            let k = k.to_ascii_lowercase();
            (k.contains("/api.xro/") || k.contains("/atservicesrest/"))
                && !k.contains("zoneinformation")
        })
        .collect()
}

/// What was asked between `before` and `after`.
fn since(before: &BTreeMap<String, u64>, after: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .into_iter()
        .map(|(k, n)| {
            let was = before.get(&k).copied().unwrap_or(0);
            (k, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn kinds(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Reconcile at `customers` customers: one read of every Xero invoice by Reference, one query of
/// every contract's charges, whatever the count (up to 100 Xero invoices and 200 contracts).
async fn reconcile_reads_each_remote_once(app: TestApp, customers: usize) {
    let (sb, p, world) = bulk_world(&app, customers).await;
    let before = api_requests(&sb);
    let report = reconcile(&p, nov()).await.unwrap();
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(report.invoices_checked, world.xero_customers);
    assert_eq!(
        since(&before, api_requests(&sb)),
        kinds(&[
            ("GET /api.xro/2.0/Invoices", 1),
            ("POST /ATServicesRest/V1.0/ContractCharges/query", 1),
        ]),
        "{customers} customers"
    );
}

async fn reconcile_of_40_customers_reads_each_remote_once(app: TestApp) {
    reconcile_reads_each_remote_once(app, 40).await
}

async fn reconcile_of_100_customers_reads_each_remote_once_too(app: TestApp) {
    reconcile_reads_each_remote_once(app, 100).await
}

/// A resync at `customers` customers where two changed (Xero customer 0 and Autotask customer 7:
/// the bulk world deals service i to customer i), dearer from 16 November: the plan's bulk reads,
/// then what the two changes need.
async fn a_resync_of_two_changes_asks_for_those(app: TestApp, customers: usize) {
    let (sb, p, _) = bulk_world(&app, customers).await;
    for svc in ["bench-svc-0", "bench-svc-7"] {
        let s = app.store.service_by_ref(svc).await.unwrap().unwrap();
        app.store
            .set_service_price(
                &app.actor(),
                s.id,
                Money::parse("99.00").unwrap(),
                "2026-11-16".parse().unwrap(),
                true,
            )
            .await
            .unwrap();
    }
    let before = api_requests(&sb);
    let out = resync(
        &p,
        &ResyncRequest {
            period: nov(),
            customer: None,
            dry_run: false,
        },
    )
    .await
    .unwrap();
    let changed: Vec<_> = out
        .plan
        .actions
        .iter()
        .filter(|a| a.kind != PlanKind::Unchanged)
        .collect();
    assert_eq!(changed.len(), 2, "{changed:#?}");
    let pushed = out.pushed.expect("pushed");
    assert_eq!(pushed.updated, 2, "{pushed:?}");
    assert_eq!(
        since(&before, api_requests(&sb)),
        kinds(&[
            // The plan's bulk read, then the Xero update: the invoice read again, then edited.
            ("GET /api.xro/2.0/Invoices", 1),
            ("GET /api.xro/2.0/Invoices/{id}", 1),
            ("POST /api.xro/2.0/Invoices/{id}", 1),
            // The plan's bulk query, then the push: the tenant's thresholds (once per drain),
            // and the Autotask update: the line's charge found, then patched.
            ("POST /ATServicesRest/V1.0/ContractCharges/query", 2),
            ("GET /ATServicesRest/V1.0/ThresholdInformation", 1),
            ("PATCH /ATServicesRest/V1.0/Contracts/{id}/Charges", 1),
        ]),
        "{customers} customers, 2 changed"
    );
    assert!(reconcile(&p, nov()).await.unwrap().is_clean());
}

async fn a_resync_of_40_customers_two_changed_asks_for_the_two(app: TestApp) {
    a_resync_of_two_changes_asks_for_those(app, 40).await
}

async fn a_resync_of_100_customers_two_changed_asks_the_same(app: TestApp) {
    a_resync_of_two_changes_asks_for_those(app, 100).await
}

/// The client's bulk reads against the stand-in: 250 invoices by id in three pages' worth of
/// requests (100 ids each), by Reference 100 at a time, and ids Xero does not know left out.
async fn invoices_are_read_a_hundred_ids_to_a_request(app: TestApp) {
    let (sb, _, _) = bulk_world(&app, 10).await;
    let xero = XeroClient::new(
        &rebill::sandbox::xero_config(&sb.xero_url),
        app.store.clone(),
    )
    .await
    .unwrap();
    let known: Vec<String> = sb
        .xero
        .invoices()
        .iter()
        .map(|i| i["InvoiceID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(known.len(), 7);
    let mut ids: Vec<String> = (0..243)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    ids.extend(known.iter().cloned());
    let before = api_requests(&sb);
    let found = xero.invoices_by_ids(&ids).await.unwrap();
    assert_eq!(found.len(), 7);
    assert!(found.iter().all(|f| known.contains(&f.invoice_id)));
    assert!(
        found.iter().all(|f| !f.lines.is_empty()),
        "line items come with a page"
    );
    assert_eq!(
        since(&before, api_requests(&sb)),
        kinds(&[("GET /api.xro/2.0/Invoices", 3)])
    );
}

backend_tests!(
    reconcile_of_40_customers_reads_each_remote_once,
    reconcile_of_100_customers_reads_each_remote_once_too,
    a_resync_of_40_customers_two_changed_asks_for_the_two,
    a_resync_of_100_customers_two_changed_asks_the_same,
    invoices_are_read_a_hundred_ids_to_a_request,
);
