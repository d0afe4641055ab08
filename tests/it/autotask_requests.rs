//! The fewest Autotask requests the work needs (issue 16): a contract's charges decided by one read
//! of that contract, not one marker query per charge; the field definitions every assignment checks
//! against read once and kept, on the client's clock, until they expire.

use std::sync::Arc;

use rebill::autotask::AutotaskClient;
use rebill::clock::Clock;
use rebill::domain::{ItemKind, Money, NonEmpty, OutboxAction};
use rebill::pipeline::Pipeline;
use rebill::store::NewItem;
use serde_json::json;

use crate::common::TestApp;
use crate::common::world::{World, build, day, nov};

/// Requests the Autotask stand-in counted whose kind `pick` accepts.
fn counted(w: &World, pick: impl Fn(&str) -> bool) -> u64 {
    w.sandboxes
        .autotask
        .limits
        .requests_by_kind()
        .iter()
        .filter(|(k, _)| pick(k))
        .map(|(_, n)| *n)
        .sum()
}

fn marker_queries(w: &World) -> u64 {
    counted(w, |k| k.contains("/ContractCharges/query"))
}

fn charge_creates(w: &World) -> u64 {
    counted(w, |k| k.starts_with("POST") && k.ends_with("/Charges"))
}

fn field_reads(w: &World) -> u64 {
    counted(w, |k| k.ends_with("/entityInformation/fields"))
}

async fn a_contracts_charges_are_decided_by_one_read_then_each_created_once(app: TestApp) {
    let w = build(&app).await;
    // Four once-off items more on the Autotask customer's contract: six charges in all.
    for n in 1..=4 {
        app.store
            .add_item(
                &app.actor(),
                &NewItem {
                    customer_id: w.autotask.id,
                    kind: ItemKind::Once,
                    description: NonEmpty::parse("description", &format!("Handset {n}")).unwrap(),
                    amount: Money::parse("10").unwrap(),
                    starts_on: Some(day("2026-11-01")),
                    autotask: Some(w.coding),
                },
            )
            .await
            .unwrap();
    }
    let (queries, creates) = (marker_queries(&w), charge_creates(&w));
    w.pipeline.run_period(nov()).await.unwrap();
    let charges = w.sandboxes.autotask.charges();
    assert_eq!(charges.len(), 6, "{charges:#?}");
    assert_eq!(charge_creates(&w) - creates, 6, "one create per charge");
    assert_eq!(
        marker_queries(&w) - queries,
        1,
        "one read of the contract's charges decides all six creates"
    );

    // Nothing is created again.
    w.pipeline.run_period(nov()).await.unwrap();
    assert_eq!(w.sandboxes.autotask.charges().len(), 6);
}

async fn a_charge_the_contract_read_finds_is_not_created_again(app: TestApp) {
    let w = build(&app).await;
    // The run is recorded without pushing; then one of its two charges turns up in Autotask
    // already (made by an earlier process that died before writing its outcome).
    Pipeline::new(app.store.clone(), w.pipeline.config.clone(), None, None)
        .with_clock(w.clock.clone())
        .run_period(nov())
        .await
        .unwrap();
    let entries: Vec<_> = app
        .store
        .outbox(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == OutboxAction::AutotaskCharge)
        .collect();
    assert_eq!(entries.len(), 2);
    let line = app.store.line(entries[0].line_id.unwrap()).await.unwrap();
    // The marker as Autotask shows it (`rb <period> c<customer> <charge>`).
    let marker = format!("rb {} c{} {}", nov(), w.autotask.id, line.charge_key);
    w.sandboxes.autotask.insert(
        "contractcharges",
        json!({"id": 39_000_001, "contractID": w.coding.contract_id.get(), "name": "made before",
               "purchaseOrderNumber": marker, "unitQuantity": 1, "unitPrice": 1, "unitCost": 0,
               "isBilled": false}),
    );
    let (queries, creates) = (marker_queries(&w), charge_creates(&w));
    w.pipeline.drain(w.clock.now()).await.unwrap();
    let charges = w.sandboxes.autotask.charges();
    assert_eq!(charges.len(), 2, "the one there was found: {charges:#?}");
    assert_eq!(
        charge_creates(&w) - creates,
        1,
        "only the other was created"
    );
    assert_eq!(marker_queries(&w) - queries, 1, "one read decided both");
    let ledger = app.store.outbox(None).await.unwrap();
    assert!(
        ledger
            .iter()
            .filter(|e| e.action == OutboxAction::AutotaskCharge)
            .all(|e| e.status == rebill::domain::OutboxStatus::Done),
        "{ledger:#?}"
    );
}

async fn field_definitions_are_read_once_for_many_assignments_and_again_after_they_expire(
    app: TestApp,
) {
    let w = build(&app).await;
    let clock: Arc<dyn Clock> = w.clock.clone();
    let config = w.pipeline.config.autotask.clone();
    assert_eq!(config.field_cache_secs, 86_400, "a day by default");
    let company = match w.autotask.target {
        rebill::domain::BillingTarget::Autotask { company_id } => company_id,
        _ => unreachable!("the world's Autotask customer"),
    };
    let on = day("2026-11-01");
    let first = AutotaskClient::new_on(&config, app.store.clone(), clock.clone())
        .await
        .unwrap();
    let before = field_reads(&w);
    first.validate_coding(company, &w.coding, on).await.unwrap();
    first.validate_coding(company, &w.coding, on).await.unwrap();
    // Another process on the same database (a second `service assign`) finds them kept.
    let second = AutotaskClient::new_on(&config, app.store.clone(), clock.clone())
        .await
        .unwrap();
    second
        .validate_coding(company, &w.coding, on)
        .await
        .unwrap();
    assert_eq!(field_reads(&w) - before, 1, "read once for three checks");

    w.clock.advance(chrono::Duration::seconds(86_399));
    second
        .validate_coding(company, &w.coding, on)
        .await
        .unwrap();
    assert_eq!(
        field_reads(&w) - before,
        1,
        "still fresh a second before a day"
    );
    w.clock.advance(chrono::Duration::seconds(1));
    second
        .validate_coding(company, &w.coding, on)
        .await
        .unwrap();
    assert_eq!(
        field_reads(&w) - before,
        2,
        "read again once a day has passed"
    );
    first.validate_coding(company, &w.coding, on).await.unwrap();
    assert_eq!(field_reads(&w) - before, 2, "and kept again for everyone");
}

backend_tests!(
    a_contracts_charges_are_decided_by_one_read_then_each_created_once,
    a_charge_the_contract_read_finds_is_not_created_again,
    field_definitions_are_read_once_for_many_assignments_and_again_after_they_expire,
);
