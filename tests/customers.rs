mod common;

use common::TestApp;
use rebill::domain::{BillingTarget, NewCustomer, NonEmpty};

fn acme() -> NewCustomer {
    NewCustomer {
        external_ref: Some("acme".into()),
        name: NonEmpty::parse("name", "Acme Pty Ltd").unwrap(),
        enabled: true,
        target: BillingTarget::Xero { contact_id: None },
        email: None,
        details: Default::default(),
        payment_terms_days: None,
    }
}

async fn added_customer_is_listed_and_audited(app: TestApp) {
    let c = app.store.add_customer(&app.actor(), &acme()).await.unwrap();
    assert_eq!(app.store.customers().await.unwrap(), vec![c.clone()]);
    let audit = app
        .store
        .audit_log(Some("customer"), Some(&c.id.to_string()), 10)
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor, "test-user");
    assert_eq!(audit[0].action, "create");
}

backend_tests!(added_customer_is_listed_and_audited);
