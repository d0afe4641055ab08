//! The assignment life-cycle, refusals, items and audit, on both backends.

use crate::common::TestApp;
use chrono::NaiveDate;
use rebill::domain::{
    AssignmentState, AutotaskCoding, AutotaskCompanyId, BillingTarget, Customer, ItemKind,
    ItemStatus, Money, NewCustomer, NonEmpty, ServiceId, Transition,
};
use rebill::sandbox::world::{
    Catalogue, NoContacts, SampleAccount, SampleCustomer, SampleDates, SampleService, SampleUser,
};
use rebill::store::{NewItem, ServiceImport, ServiceUserImport, StoreError};

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn customer(r: &str, name: &str, target: BillingTarget) -> NewCustomer {
    NewCustomer {
        external_ref: Some(r.into()),
        name: NonEmpty::parse("name", name).unwrap(),
        enabled: true,
        target,
        email: None,
        details: Default::default(),
        payment_terms_days: None,
    }
}

fn xero() -> BillingTarget {
    BillingTarget::Xero { contact_id: None }
}

fn service(r: &str, parent: Option<&str>, enabled: bool) -> ServiceImport {
    ServiceImport {
        external_ref: r.into(),
        parent_ref: parent.map(Into::into),
        name: NonEmpty::parse("name", &format!("Service {r}")).unwrap(),
        kind: "voip".into(),
        rebill_enabled: enabled,
        monthly_price: Money::parse("49.95").unwrap(),
        monthly_cost: Money::parse("30").unwrap(),
        xero_account_code: None,
        xero_tax_type: None,
        xero_item_code: None,
        users: vec![ServiceUserImport {
            user_ref: format!("02 9999 {r}"),
            label: None,
        }],
    }
}

/// This file's world, a catalogue seeded by the library's sample-world builder
/// (`rebill::sandbox::world`): two Xero customers without contacts, "Acme" and "Beta"; a parent
/// service 0001 with its child 0002, and a service 0003 not enabled for rebilling (each as
/// `service` below: 49.95 a month, cost 30, one number). Nothing is assigned.
const CATALOGUE: Catalogue<'static> = Catalogue {
    services: &[
        numbered("0001", None, "Service 0001", &[one("02 9999 0001")], true),
        numbered(
            "0002",
            Some("0001"),
            "Service 0002",
            &[one("02 9999 0002")],
            true,
        ),
        numbered("0003", None, "Service 0003", &[one("02 9999 0003")], false),
    ],
    customers: &[listed("acme", "Acme"), listed("beta", "Beta")],
    assignments: &[],
    items: &[],
    rate_plans: &[],
};

const fn numbered(
    external_ref: &'static str,
    parent: Option<&'static str>,
    name: &'static str,
    users: &'static [SampleUser<'static>],
    rebill_enabled: bool,
) -> SampleService<'static> {
    SampleService {
        external_ref,
        parent,
        name,
        price: "49.95",
        cost: "30",
        rebill_enabled,
        users,
    }
}

const fn one(number: &'static str) -> SampleUser<'static> {
    SampleUser {
        number,
        label: None,
    }
}

const fn listed(external_ref: &'static str, name: &'static str) -> SampleCustomer<'static> {
    SampleCustomer {
        external_ref,
        name,
        email: None,
        account: SampleAccount::Xero { contact: false },
        enabled: true,
    }
}

struct World {
    acme: Customer,
    beta: Customer,
    parent: ServiceId,
    child: ServiceId,
    disabled_service: ServiceId,
}

async fn world(app: &TestApp) -> World {
    let w = CATALOGUE
        .seed(
            &app.store,
            &app.actor(),
            SampleDates {
                since: day("2026-01-01"),
                mid: day("2026-11-16"),
            },
            None,
            &NoContacts,
        )
        .await
        .unwrap();
    World {
        acme: w.customer("acme").unwrap().clone(),
        beta: w.customer("beta").unwrap().clone(),
        parent: w.service("0001").unwrap(),
        child: w.service("0002").unwrap(),
        disabled_service: w.service("0003").unwrap(),
    }
}

async fn audit_count(app: &TestApp) -> usize {
    app.store.audit_log(None, None, 10_000).await.unwrap().len()
}

/// Asserts a refusal whose message names the service, the customer or state words given.
fn assert_refused(r: Result<impl std::fmt::Debug, StoreError>, words: &[&str]) {
    match r {
        Err(StoreError::Refused(m)) => {
            for w in words {
                assert!(m.contains(w), "refusal {m:?} should mention {w:?}");
            }
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn service_goes_assigned_excluded_free_and_back(app: TestApp) {
    let w = world(&app).await;
    let a = app.actor();
    let v = app
        .store
        .assign(&a, w.child, w.acme.id, day("2026-11-01"), None)
        .await
        .unwrap();
    assert_eq!(v.state(), AssignmentState::Assigned);
    let v = app
        .store
        .transition(&a, w.child, Transition::Exclude, day("2026-11-20"))
        .await
        .unwrap();
    assert_eq!(v.state(), AssignmentState::Excluded);
    let v = app
        .store
        .transition(&a, w.child, Transition::Restore, day("2026-11-20"))
        .await
        .unwrap();
    assert_eq!(v.state(), AssignmentState::Assigned);
    app.store
        .transition(&a, w.child, Transition::Exclude, day("2026-11-20"))
        .await
        .unwrap();
    let v = app
        .store
        .transition(&a, w.child, Transition::Unassign, day("2026-11-20"))
        .await
        .unwrap();
    assert_eq!(v.state(), AssignmentState::Unassigned);
    assert!(app.store.live_assignment(w.child).await.unwrap().is_none());
    // Every transition is recorded with who and what.
    let audit = app
        .store
        .audit_log(Some("assignment"), None, 100)
        .await
        .unwrap();
    let actions: Vec<&str> = audit.iter().rev().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["assign", "exclude", "restore", "exclude", "unassign"]
    );
    assert!(audit.iter().all(|r| r.actor == "test-user"));
}

async fn unassigned_service_can_be_assigned_to_another_customer(app: TestApp) {
    let w = world(&app).await;
    let a = app.actor();
    app.store
        .assign(&a, w.child, w.acme.id, day("2026-11-01"), None)
        .await
        .unwrap();
    app.store
        .transition(&a, w.child, Transition::Exclude, day("2026-11-20"))
        .await
        .unwrap();
    app.store
        .transition(&a, w.child, Transition::Unassign, day("2026-11-20"))
        .await
        .unwrap();
    let v = app
        .store
        .assign(&a, w.child, w.beta.id, day("2026-12-01"), None)
        .await
        .unwrap();
    assert_eq!(v.customer_id, w.beta.id);
    assert_eq!(
        app.store.assignment_history(w.child).await.unwrap().len(),
        2
    );
}

async fn refusals_name_the_service_customer_and_state_and_change_nothing(app: TestApp) {
    let w = world(&app).await;
    let a = app.actor();
    let d = day("2026-11-01");
    let before = audit_count(&app).await;
    assert_refused(
        app.store.assign(&a, w.parent, w.acme.id, d, None).await,
        &["parent", "Service 0001", "Acme"],
    );
    assert_refused(
        app.store
            .assign(&a, w.disabled_service, w.acme.id, d, None)
            .await,
        &["not enabled for rebilling", "Service 0003"],
    );
    assert_refused(
        app.store
            .transition(&a, w.child, Transition::Exclude, day("2026-11-20"))
            .await,
        &["not assigned"],
    );
    assert_eq!(
        audit_count(&app).await,
        before,
        "refusals must not write anything"
    );

    app.store
        .assign(&a, w.child, w.acme.id, d, None)
        .await
        .unwrap();
    let before = audit_count(&app).await;
    assert_refused(
        app.store.assign(&a, w.child, w.beta.id, d, None).await,
        &["held by customer", "Acme", "ASSIGNED", "Beta"],
    );
    assert_refused(
        app.store
            .transition(&a, w.child, Transition::Unassign, day("2026-11-20"))
            .await,
        &["ASSIGNED", "exclude it first", "Acme"],
    );
    assert_refused(
        app.store
            .transition(&a, w.child, Transition::Restore, day("2026-11-20"))
            .await,
        &["ASSIGNED"],
    );
    app.store
        .transition(&a, w.child, Transition::Exclude, day("2026-11-20"))
        .await
        .unwrap();
    assert_refused(
        app.store
            .transition(&a, w.child, Transition::Exclude, day("2026-11-20"))
            .await,
        &["EXCLUDED already"],
    );
    assert_refused(
        app.store.assign(&a, w.child, w.beta.id, d, None).await,
        &["EXCLUDED", "Acme"],
    );
    assert_eq!(
        audit_count(&app).await,
        before + 1,
        "only the exclude was recorded"
    );
    assert_eq!(
        app.store
            .live_assignment(w.child)
            .await
            .unwrap()
            .unwrap()
            .customer_id,
        w.acme.id
    );
}

async fn disabled_customer_cannot_get_new_services_but_keeps_its_own(app: TestApp) {
    let w = world(&app).await;
    let a = app.actor();
    let (other, _) = app
        .store
        .import_service(&a, &service("0004", None, true))
        .await
        .unwrap();
    app.store
        .assign(&a, w.child, w.acme.id, day("2026-11-01"), None)
        .await
        .unwrap();
    app.store
        .set_customer_enabled(&a, w.acme.id, false)
        .await
        .unwrap();
    assert_refused(
        app.store
            .assign(&a, other, w.acme.id, day("2026-11-01"), None)
            .await,
        &["disabled", "Acme"],
    );
    let kept = app.store.live_assignments(Some(w.acme.id)).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].state(), AssignmentState::Assigned);
}

async fn autotask_accounts_need_contract_product_and_material_code(app: TestApp) {
    let w = world(&app).await;
    let a = app.actor();
    let company = AutotaskCompanyId::new(174).unwrap();
    let at = app
        .store
        .add_customer(
            &a,
            &customer(
                "at",
                "Auto Co",
                BillingTarget::Autotask {
                    company_id: company,
                },
            ),
        )
        .await
        .unwrap();
    assert_refused(
        app.store
            .assign(&a, w.child, at.id, day("2026-11-01"), None)
            .await,
        &["Autotask", "--contract"],
    );
    let coding = AutotaskCoding {
        contract_id: 9.try_into().unwrap(),
        product_id: 8.try_into().unwrap(),
        material_code_id: 7.try_into().unwrap(),
    };
    assert_refused(
        app.store
            .assign(&a, w.child, w.acme.id, day("2026-11-01"), Some(coding))
            .await,
        &["Autotask accounts only"],
    );
    let v = app
        .store
        .assign(&a, w.child, at.id, day("2026-11-01"), Some(coding))
        .await
        .unwrap();
    assert_eq!(v.autotask().unwrap(), Some(coding));
}

async fn only_one_of_many_concurrent_assignments_of_a_service_wins(app: TestApp) {
    let w = world(&app).await;
    let a = app.actor();
    let mut customers = vec![w.acme.id, w.beta.id];
    for i in 0..6 {
        customers.push(
            app.store
                .add_customer(&a, &customer(&format!("c{i}"), &format!("C{i}"), xero()))
                .await
                .unwrap()
                .id,
        );
    }
    let tasks: Vec<_> = customers
        .iter()
        .map(|c| {
            let (store, a, c, s) = (app.store.clone(), a.clone(), *c, w.child);
            tokio::spawn(async move { store.assign(&a, s, c, day("2026-11-01"), None).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Refused(m)) => {
                assert!(m.contains("held by") || m.contains("concurrently"), "{m}")
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert!(app.store.live_assignment(w.child).await.unwrap().is_some());
    assert_eq!(
        app.store
            .audit_log(Some("assignment"), None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn database_itself_refuses_a_second_live_assignment(app: TestApp) {
    let w = world(&app).await;
    let insert = "INSERT INTO assignments (service_id, customer_id, state, starts_on, assigned_at, assigned_by, \
                  changed_at, changed_by) VALUES ($1, $2, $3, $4, $5, 'sql', $5, 'sql')";
    let now: chrono::DateTime<chrono::Utc> = "2026-11-20T00:00:00Z".parse().unwrap();
    let run = |customer: i64, state: &'static str| {
        let store = app.store.clone();
        let service = w.child.get();
        async move {
            rebill::on_db!(store, p => sqlx::query(insert)
                .bind(service).bind(customer).bind(state).bind(day("2026-11-01")).bind(now)
                .execute(p).await.map(|_| ()))
        }
    };
    run(w.acme.id.get(), "excluded").await.unwrap();
    let second = run(w.beta.id.get(), "assigned").await.unwrap_err();
    assert!(
        second.as_database_error().unwrap().is_unique_violation(),
        "{second}"
    );
    // History rows (unassigned) are not limited.
    run(w.beta.id.get(), "unassigned").await.unwrap();
    run(w.beta.id.get(), "unassigned").await.unwrap();
}

async fn once_off_item_is_frozen_once_invoiced_and_recurring_item_can_be_re_enabled(app: TestApp) {
    let w = world(&app).await;
    let a = app.actor();
    let new = |kind, amount: &str| NewItem {
        customer_id: w.acme.id,
        kind,
        description: NonEmpty::parse("d", "Install").unwrap(),
        amount: Money::parse(amount).unwrap(),
        starts_on: None,
        autotask: None,
    };
    let once = app
        .store
        .add_item(&a, &new(ItemKind::Once, "150"))
        .await
        .unwrap();
    assert_eq!(once.status, ItemStatus::Pending);
    let edited = app
        .store
        .edit_item(&a, once.id, None, Some(Money::parse("175.50").unwrap()))
        .await
        .unwrap();
    assert_eq!(edited.amount, Money::parse("175.5").unwrap());
    // A run bills it (the billing run's own statement, simulated here).
    rebill::on_db!(app.store, p => sqlx::query("UPDATE items SET status = 'invoiced', invoiced_period = '2026-11' WHERE id = $1")
        .bind(once.id.get()).execute(p).await.unwrap().rows_affected());
    assert_refused(
        app.store
            .edit_item(&a, once.id, None, Some(Money::parse("1").unwrap()))
            .await,
        &["invoiced in 2026-11"],
    );
    assert_refused(app.store.remove_item(&a, once.id).await, &["no longer"]);
    assert_eq!(
        app.store.item(once.id).await.unwrap().amount,
        Money::parse("175.5").unwrap()
    );

    let rec = app
        .store
        .add_item(&a, &new(ItemKind::Recurring, "30"))
        .await
        .unwrap();
    assert_eq!(rec.status, ItemStatus::Active);
    assert_eq!(
        app.store.remove_item(&a, rec.id).await.unwrap().status,
        ItemStatus::Removed
    );
    assert_eq!(
        app.store.restore_item(&a, rec.id).await.unwrap().status,
        ItemStatus::Active
    );
    assert_refused(app.store.restore_item(&a, once.id).await, &["once-off"]);
}

async fn customer_import_is_idempotent_on_external_reference(app: TestApp) {
    let a = app.actor();
    let c = customer("acme", "Acme", xero());
    let (first, u1) = app.store.upsert_customer(&a, &c).await.unwrap();
    let (again, u2) = app.store.upsert_customer(&a, &c).await.unwrap();
    assert_eq!(
        (u1, u2),
        (
            rebill::store::Upsert::Created,
            rebill::store::Upsert::Unchanged
        )
    );
    assert_eq!(first.id, again.id);
    let renamed = NewCustomer {
        name: NonEmpty::parse("n", "Acme Holdings").unwrap(),
        ..c
    };
    let (updated, u3) = app.store.upsert_customer(&a, &renamed).await.unwrap();
    assert_eq!(u3, rebill::store::Upsert::Updated);
    assert_eq!(updated.name.as_str(), "Acme Holdings");
    assert_eq!(app.store.customers().await.unwrap().len(), 1);
}

async fn a_user_number_belongs_to_one_service(app: TestApp) {
    let a = app.actor();
    app.store
        .import_service(&a, &service("0001", None, true))
        .await
        .unwrap();
    let mut clash = service("0009", None, true);
    clash.users = vec![ServiceUserImport {
        user_ref: "(02) 9999-0001".into(),
        label: None,
    }];
    assert_refused(
        app.store.import_service(&a, &clash).await,
        &["already belongs"],
    );
    assert!(
        app.store.service_by_ref("0009").await.unwrap().is_none(),
        "the refused service was not half-written"
    );
}

backend_tests!(
    service_goes_assigned_excluded_free_and_back,
    unassigned_service_can_be_assigned_to_another_customer,
    refusals_name_the_service_customer_and_state_and_change_nothing,
    disabled_customer_cannot_get_new_services_but_keeps_its_own,
    autotask_accounts_need_contract_product_and_material_code,
    only_one_of_many_concurrent_assignments_of_a_service_wins,
    database_itself_refuses_a_second_live_assignment,
    once_off_item_is_frozen_once_invoiced_and_recurring_item_can_be_re_enabled,
    customer_import_is_idempotent_on_external_reference,
    a_user_number_belongs_to_one_service,
);
