//! The Xero client against wiremock servers speaking Xero's wire format.

use std::sync::{Arc, Mutex};

use crate::common::TestApp;
use crate::common::fixtures::mount;
use rebill::domain::XeroContactId;
use rebill::store::xero::XeroTokenRow;
use rebill::xero::auth;
use rebill::xero::{InvoiceDraft, InvoiceOutcome, LineDraft, XeroClient, XeroConfig, XeroError};
use secrecy::SecretString;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "super-secret-client-value";

fn config(server: &MockServer, grant: &str) -> XeroConfig {
    let mut c = rebill::sandbox::xero_config(&server.uri());
    c.grant = grant.parse().unwrap();
    c.client_secret = Some(SecretString::from(SECRET));
    c.retry_base_ms = 5;
    c
}

fn draft(reference: &str) -> InvoiceDraft {
    InvoiceDraft {
        contact_id: XeroContactId::parse("bd42f3a9-1c4f-4b8a-9e3e-0c8b1d6b7a11").unwrap(),
        reference: reference.into(),
        invoice_number: None,
        date: "2026-11-01".parse().unwrap(),
        due_date: "2026-11-15".parse().unwrap(),
        currency: "AUD".into(),
        lines: vec![LineDraft {
            description: "SIP Trunk — November 2026".into(),
            quantity: "1".parse().unwrap(),
            unit_amount: "49.95".parse().unwrap(),
            account_code: Some("200".into()),
            tax_type: Some("OUTPUT".into()),
            item_code: None,
        }],
    }
}

fn created(reference: &str) -> serde_json::Value {
    serde_json::json!({"Invoices": [{"Type": "ACCREC", "InvoiceID": "4f8d6c0e-3f43-4d5c-8a7b-2c9d1e0f3a21", "Reference": reference,
        "Status": "AUTHORISED", "SubTotal": 49.95, "TotalTax": 5.0, "Total": 54.95, "AmountPaid": 0, "AmountDue": 54.95}]})
}

async fn connected(server: &MockServer) {
    mount(server, "xero/token-client-credentials.json").await;
    mount(server, "xero/connections.json").await;
}

/// Every JSON body the tests send to Xero is checked against the spec's schema (contract test).
fn check_against_spec(requests: &[Request]) {
    let spec = std::fs::read_to_string("../shared/specs/xero/xero_accounting.yaml")
        .expect("the Xero OpenAPI spec beside the project");
    let props = |schema: &str| -> Vec<String> {
        let start = spec
            .find(&format!("\n    {schema}:\n"))
            .unwrap_or_else(|| panic!("schema {schema} in the spec"));
        let rest = &spec[start + schema.len() + 7..];
        rest.lines()
            .take_while(|l| l.is_empty() || l.starts_with("      "))
            .filter(|l| {
                l.starts_with("        ")
                    && !l.starts_with("         ")
                    && l.trim_end().ends_with(':')
            })
            .map(|l| l.trim().trim_end_matches(':').to_string())
            .collect()
    };
    let invoice = props("Invoice");
    let line = props("LineItem");
    let contact = props("Contact");
    let credit = props("CreditNote");
    for r in requests
        .iter()
        .filter(|r| !r.body.is_empty() && r.url.path().contains("api.xro"))
    {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let check = |obj: &serde_json::Value, allowed: &[String], what: &str| {
            for k in obj.as_object().into_iter().flatten().map(|(k, _)| k) {
                assert!(
                    allowed.contains(k),
                    "{what} field {k:?} sent to {} is not in the spec",
                    r.url.path()
                );
            }
        };
        for inv in body["Invoices"].as_array().into_iter().flatten() {
            check(inv, &invoice, "Invoice");
            assert!(
                inv["Type"] == "ACCREC"
                    && inv["Contact"]["ContactID"].is_string()
                    && inv["LineItems"].is_array()
            );
            check(&inv["Contact"], &contact, "Contact");
            for l in inv["LineItems"].as_array().into_iter().flatten() {
                check(l, &line, "LineItem");
                assert!(
                    l["Quantity"].is_number() && l["UnitAmount"].is_number(),
                    "amounts are JSON numbers: {l}"
                );
            }
        }
        for n in body["CreditNotes"].as_array().into_iter().flatten() {
            check(n, &credit, "CreditNote");
        }
        for c in body["Contacts"].as_array().into_iter().flatten() {
            check(c, &contact, "Contact");
        }
    }
}

/// Xero's day spent: the work waits until the day's window reopens, counted on the client's
/// clock (the pipeline's), not the machine's: a pipeline clock ahead of the wall clock must not
/// see the wait as over already.
async fn a_spent_day_says_until_when_on_the_clients_clock(app: TestApp) {
    let server = MockServer::start().await;
    connected(&server).await;
    Mock::given(method("PUT"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "3600")
                .insert_header("X-Rate-Limit-Problem", "day"),
        )
        .mount(&server)
        .await;
    let at = "2027-03-01T10:00:00Z".parse().unwrap();
    let clock = Arc::new(rebill::clock::TestClock::at(at));
    let client = XeroClient::new_on(
        &config(&server, "custom_connection"),
        app.store.clone(),
        clock,
    )
    .await
    .unwrap();
    let err = client
        .create_invoices(&[draft("RB-1")], "key-1")
        .await
        .unwrap_err();
    match err {
        XeroError::DayBudgetSpent { until } => {
            assert_eq!(until, at + chrono::Duration::hours(1))
        }
        other => panic!("expected the day spent, got {other:?}"),
    }
}

async fn a_429_with_retry_after_is_waited_out_and_nothing_is_duplicated(app: TestApp) {
    let server = MockServer::start().await;
    connected(&server).await;
    Mock::given(method("PUT"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .insert_header("X-Rate-Limit-Problem", "minute"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created("RB-1")))
        .mount(&server)
        .await;
    let client = XeroClient::new(&config(&server, "custom_connection"), app.store.clone())
        .await
        .unwrap();
    let out = client
        .create_invoices(&[draft("RB-1")], "key-1")
        .await
        .unwrap();
    assert!(matches!(&out[0], InvoiceOutcome::Created(r) if r.sub_total.to_string() == "49.95"));
    let puts: Vec<Request> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "PUT")
        .collect();
    assert_eq!(puts.len(), 2);
    assert!(
        puts.iter()
            .all(|r| r.headers.get("Idempotency-Key").unwrap() == "key-1"),
        "the retry reuses the key"
    );
    assert!(puts.iter().all(
        |r| r.headers.get("xero-tenant-id").unwrap() == "70784a63-d24b-46a9-a4db-0e70a274b056"
    ));
    check_against_spec(&puts);
}

async fn a_500_on_a_batch_is_retried_with_the_same_idempotency_key(app: TestApp) {
    let server = MockServer::start().await;
    connected(&server).await;
    Mock::given(method("PUT"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created("RB-2")))
        .mount(&server)
        .await;
    let client = XeroClient::new(&config(&server, "custom_connection"), app.store.clone())
        .await
        .unwrap();
    client
        .create_invoices(&[draft("RB-2")], "batch-key")
        .await
        .unwrap();
    let keys: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "PUT")
        .map(|r| {
            r.headers
                .get("Idempotency-Key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(keys, vec!["batch-key"; 3]);
}

async fn a_400_refusal_is_returned_at_once_and_never_retried(app: TestApp) {
    let server = MockServer::start().await;
    connected(&server).await;
    Mock::given(method("PUT"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({
            "ErrorNumber": 10, "Type": "ValidationException", "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": [{"Message": "Account code '999' is not a valid code"}]}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = XeroClient::new(&config(&server, "custom_connection"), app.store.clone())
        .await
        .unwrap();
    let e = client
        .create_invoices(&[draft("RB-4")], "batch-key")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, XeroError::Validation(m) if m.iter().any(|m| m.contains("Account code '999'"))),
        "{e:?}"
    );
}

async fn one_invalid_invoice_in_a_batch_does_not_stop_the_others(app: TestApp) {
    let server = MockServer::start().await;
    connected(&server).await;
    mount(&server, "xero/invoices-create-one-invalid.json").await;
    let client = XeroClient::new(&config(&server, "custom_connection"), app.store.clone())
        .await
        .unwrap();
    let out = client
        .create_invoices(&[draft("RB-1000"), draft("RB-1001")], "k")
        .await
        .unwrap();
    assert!(matches!(&out[0], InvoiceOutcome::Created(r) if r.reference == "RB-1000"));
    match &out[1] {
        InvoiceOutcome::Invalid {
            reference,
            messages,
        } => {
            assert_eq!(reference, "RB-1001");
            assert!(messages[0].contains("Account code"), "{messages:?}");
        }
        other => panic!("expected the second invoice refused, got {other:?}"),
    }
    check_against_spec(&server.received_requests().await.unwrap());
}

async fn a_rotated_refresh_token_is_stored_before_use_and_survives_a_restart(app: TestApp) {
    let server = MockServer::start().await;
    mount(&server, "xero/connections.json").await;
    let cfg = config(&server, "authorization_code");
    auth::save_grant(
        &cfg,
        &app.store,
        &XeroTokenRow {
            grant_type: "authorization_code".into(),
            access_token: Some("old-access".into()),
            access_expires_at: Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
            refresh_token: Some("refresh-1".into()),
            tenant_id: Some("70784a63-d24b-46a9-a4db-0e70a274b056".into()),
            refresh_count: 0,
        },
    )
    .await
    .unwrap();
    for (presented, next, access, expires) in [
        ("refresh-1", "refresh-2", "access-2", 60),
        ("refresh-2", "refresh-3", "access-3", 1800),
    ] {
        Mock::given(method("POST"))
            .and(path("/connect/token"))
            .and(body_string_contains(format!("refresh_token={presented}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": access, "refresh_token": next, "expires_in": expires, "token_type": "Bearer"}),
            ))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"Invoices": []})))
        .mount(&server)
        .await;
    let first = XeroClient::new(&cfg, app.store.clone()).await.unwrap();
    first.find_invoice_by_reference("RB-1").await.unwrap();
    assert_eq!(
        auth::load(&cfg, &app.store)
            .await
            .unwrap()
            .unwrap()
            .refresh_token
            .as_deref(),
        Some("refresh-2")
    );
    // A new process (a restart right after the refresh) uses the rotated token, not the spent one.
    drop(first);
    let second = XeroClient::new(&cfg, app.store.clone()).await.unwrap();
    second.find_invoice_by_reference("RB-1").await.unwrap();
    let stored = auth::load(&cfg, &app.store).await.unwrap().unwrap();
    assert_eq!(stored.refresh_token.as_deref(), Some("refresh-3"));
    assert_eq!(stored.refresh_count, 2);
}

async fn a_revoked_grant_stops_with_one_clear_message(app: TestApp) {
    let server = MockServer::start().await;
    mount(&server, "xero/token-invalid-grant.json").await;
    let cfg = config(&server, "authorization_code");
    auth::save_grant(
        &cfg,
        &app.store,
        &XeroTokenRow {
            grant_type: "authorization_code".into(),
            access_token: None,
            access_expires_at: None,
            refresh_token: Some("revoked".into()),
            tenant_id: Some("t".into()),
            refresh_count: 0,
        },
    )
    .await
    .unwrap();
    let client = XeroClient::new(&cfg, app.store.clone()).await.unwrap();
    let e = client
        .create_invoices(&[draft("RB-9")], "k")
        .await
        .unwrap_err();
    assert!(matches!(e, XeroError::Reauthorize { .. }), "{e:?}");
    assert!(e.to_string().contains("rebilld xero connect"), "{e}");
    let sent = server.received_requests().await.unwrap();
    assert!(
        sent.iter().all(|r| !r.url.path().contains("Invoices")),
        "nothing was pushed"
    );
    // The dead grant is forgotten, so that `xero status` can say it is revoked.
    let stored = app.store.xero_token().await.unwrap().unwrap();
    assert!(stored.refresh_token.is_none() && stored.access_expires_at.is_none());
}

async fn xero_tokens_are_sealed_at_rest_and_plain_ones_are_sealed_on_first_read(app: TestApp) {
    let server = MockServer::start().await;
    let cfg = config(&server, "authorization_code");
    let grant = XeroTokenRow {
        grant_type: "authorization_code".into(),
        access_token: Some("access-plain-1".into()),
        access_expires_at: Some(chrono::Utc::now() + chrono::Duration::minutes(20)),
        refresh_token: Some("refresh-plain-1".into()),
        tenant_id: Some("t".into()),
        refresh_count: 0,
    };
    auth::save_grant(&cfg, &app.store, &grant).await.unwrap();
    let raw = app.store.xero_token().await.unwrap().unwrap();
    for t in [&raw.access_token, &raw.refresh_token] {
        let t = t.as_deref().unwrap();
        assert!(auth::is_sealed(t) && !t.contains("plain"), "stored as {t}");
    }
    let opened = auth::load(&cfg, &app.store).await.unwrap().unwrap();
    assert_eq!(opened.access_token.as_deref(), Some("access-plain-1"));
    assert_eq!(opened.refresh_token.as_deref(), Some("refresh-plain-1"));
    // Never printed: the row's Debug hides both tokens, sealed or not.
    let shown = format!("{opened:?} {raw:?}");
    assert!(
        !shown.contains("plain") && !shown.contains("sealed:"),
        "{shown}"
    );

    // A row written in plain text by an earlier version is sealed in place on first read.
    app.store.save_xero_grant(&grant).await.unwrap();
    let opened = auth::load(&cfg, &app.store).await.unwrap().unwrap();
    assert_eq!(opened.refresh_token.as_deref(), Some("refresh-plain-1"));
    let raw = app.store.xero_token().await.unwrap().unwrap();
    assert!(auth::is_sealed(raw.refresh_token.as_deref().unwrap()));
    assert!(auth::is_sealed(raw.access_token.as_deref().unwrap()));

    // Without the key nothing is stored, and the message says how to make one.
    let mut keyless = cfg.clone();
    keyless.token_key = None;
    let e = auth::save_grant(&keyless, &app.store, &grant)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("xero.token_key"), "{e}");
    assert!(e.to_string().contains("/dev/urandom"), "{e}");
}

/// Collects log output so that a test can look for secrets in it.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn no_token_or_secret_reaches_a_log_line_or_an_error(app: TestApp) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = MockServer::start().await;
    connected(&server).await;
    Mock::given(method("PUT"))
        .and(path("/api.xro/2.0/Invoices"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let cfg = config(&server, "custom_connection");
    let client = XeroClient::new(&cfg, app.store.clone()).await.unwrap();
    let e = client
        .create_invoices(&[draft("RB-3")], "k")
        .await
        .unwrap_err();
    tracing::info!(config = ?cfg, error = %e, "after a failed push");
    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("Xero server error"),
        "the retries were logged: {logs}"
    );
    for secret in [SECRET, "fixture-access-token"] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
        assert!(!e.to_string().contains(secret));
        assert!(!format!("{cfg:?}").contains(secret));
    }
}

backend_tests!(
    a_429_with_retry_after_is_waited_out_and_nothing_is_duplicated,
    a_spent_day_says_until_when_on_the_clients_clock,
    a_500_on_a_batch_is_retried_with_the_same_idempotency_key,
    a_400_refusal_is_returned_at_once_and_never_retried,
    one_invalid_invoice_in_a_batch_does_not_stop_the_others,
    a_rotated_refresh_token_is_stored_before_use_and_survives_a_restart,
    a_revoked_grant_stops_with_one_clear_message,
    xero_tokens_are_sealed_at_rest_and_plain_ones_are_sealed_on_first_read,
    no_token_or_secret_reaches_a_log_line_or_an_error,
);
