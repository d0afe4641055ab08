//! Actions never go stale (issue 11, case 6): a refused Autotask action for a line that is later
//! removed or re-coded is superseded, never replayed, and contracts that take no charges are
//! refused when they are chosen.

use rebill::clock::Clock;
use rebill::domain::{
    AutotaskCoding, ContractId, ItemKind, Money, NonEmpty, OutboxAction, OutboxStatus, Transition,
};
use rebill::store::NewItem;
use serde_json::json;

use crate::common::TestApp;
use crate::common::world::{World, build, day, nov};

/// A contract of the Autotask customer's company (174) of the given Autotask contract type.
fn add_contract(w: &World, id: i64, contract_type: i64) -> ContractId {
    w.sandboxes.autotask.insert(
        "contracts",
        json!({"id": id, "companyID": 174, "contractName": format!("Contract {id}"), "status": 1,
               "contractType": contract_type, "startDate": "2020-01-01T00:00:00Z",
               "endDate": "2030-12-31T00:00:00Z"}),
    );
    ContractId::new(id).unwrap()
}

async fn a_contract_that_takes_no_charges_is_refused_when_chosen_naming_its_type(app: TestApp) {
    let w = build(&app).await;
    let block = add_contract(&w, 901, 4);
    let at = w.pipeline.autotask.as_ref().unwrap();
    let company = rebill::domain::AutotaskCompanyId::new(174).unwrap();
    let err = at
        .validate_coding(
            company,
            &AutotaskCoding {
                contract_id: block,
                ..w.coding
            },
            day("2026-11-01"),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Block Hours"), "{text}");
    assert!(text.contains("901"), "{text}");
    let offered = at.contracts_of(company).await.unwrap();
    assert!(
        offered.iter().all(|c| c.id != 901),
        "a Block Hours contract is not offered: {offered:?}"
    );
    assert!(offered.iter().any(|c| c.id == w.coding.contract_id.get()));
}

async fn a_refused_charge_for_a_line_removed_later_is_superseded_not_replayed(app: TestApp) {
    let w = build(&app).await;
    // A recurring item coded to a contract Autotask does not have (yet): its charge is refused.
    let missing = ContractId::new(902).unwrap();
    let item = app
        .store
        .add_item(
            &app.actor(),
            &NewItem {
                customer_id: w.autotask.id,
                kind: ItemKind::Recurring,
                description: NonEmpty::parse("d", "Backup storage").unwrap(),
                amount: Money::parse("25.00").unwrap(),
                starts_on: None,
                autotask: Some(AutotaskCoding {
                    contract_id: missing,
                    ..w.coding
                }),
            },
        )
        .await
        .unwrap();
    w.pipeline.run_period(nov()).await.unwrap();
    let failed: Vec<_> = app
        .store
        .outbox(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.status == OutboxStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].action, OutboxAction::AutotaskCharge);
    let charges_before = w.sandboxes.autotask.charges().len();
    // The contract appears meanwhile (a replay would now succeed), and ops take the item off.
    add_contract(&w, 902, 7);
    app.store.remove_item(&app.actor(), item.id).await.unwrap();
    w.resync(nov()).await;
    w.resync(nov()).await;
    w.pipeline.drain(w.clock.now()).await.unwrap();
    let charges = w.sandboxes.autotask.charges();
    assert_eq!(
        charges.len(),
        charges_before,
        "no orphan charge: {charges:#?}"
    );
    assert!(
        !charges.iter().any(|c| c["contractID"] == json!(902)),
        "{charges:#?}"
    );
    let entry = app.store.outbox_entry(failed[0].id).await.unwrap();
    assert_eq!(
        entry.status,
        OutboxStatus::Cancelled,
        "superseded: {entry:#?}"
    );
}

async fn a_recoded_line_is_pushed_with_its_new_coding_and_the_refused_action_superseded(
    app: TestApp,
) {
    let w = build(&app).await;
    let a = app.actor();
    // The Autotask service assigned (before this rule existed) to a Block Hours contract: Autotask
    // refuses its charge.
    let block = add_contract(&w, 903, 4);
    app.store
        .transition(&a, w.at_service, Transition::Exclude, day("2026-10-31"))
        .await
        .unwrap();
    app.store
        .transition(&a, w.at_service, Transition::Unassign, day("2026-11-01"))
        .await
        .unwrap();
    app.store
        .assign(
            &a,
            w.at_service,
            w.autotask.id,
            day("2026-11-01"),
            Some(AutotaskCoding {
                contract_id: block,
                ..w.coding
            }),
        )
        .await
        .unwrap();
    w.pipeline.run_period(nov()).await.unwrap();
    let refused: Vec<_> = app
        .store
        .outbox(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.status == OutboxStatus::Failed)
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("Block Hours")),
        "status shows the remote's message: {refused:#?}"
    );
    // Ops re-assign it with a contract that takes charges.
    app.store
        .transition(&a, w.at_service, Transition::Exclude, day("2026-11-01"))
        .await
        .unwrap();
    app.store
        .transition(&a, w.at_service, Transition::Unassign, day("2026-11-01"))
        .await
        .unwrap();
    app.store
        .assign(
            &a,
            w.at_service,
            w.autotask.id,
            day("2026-11-01"),
            Some(w.coding),
        )
        .await
        .unwrap();
    w.resync(nov()).await;
    let charges = w.sandboxes.autotask.charges();
    let fee: Vec<_> = charges
        .iter()
        .filter(|c| {
            c["unitPrice"] == json!(120.0)
                || c["unitPrice"] == json!("120.00")
                || c["unitPrice"] == json!(120)
        })
        .collect();
    assert_eq!(
        fee.len(),
        1,
        "the fee is charged once, on the new contract: {charges:#?}"
    );
    assert_eq!(fee[0]["contractID"], json!(w.coding.contract_id.get()));
    let entry = app.store.outbox_entry(refused[0].id).await.unwrap();
    assert_eq!(entry.status, OutboxStatus::Cancelled, "{entry:#?}");
    assert!(
        app.store
            .outbox(None)
            .await
            .unwrap()
            .iter()
            .all(|o| o.status != OutboxStatus::Failed),
        "nothing left failing"
    );
}

crate::backend_tests!(
    a_contract_that_takes_no_charges_is_refused_when_chosen_naming_its_type,
    a_refused_charge_for_a_line_removed_later_is_superseded_not_replayed,
    a_recoded_line_is_pushed_with_its_new_coding_and_the_refused_action_superseded,
);
