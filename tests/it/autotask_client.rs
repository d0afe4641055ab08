//! The Autotask client against wiremock servers speaking Autotask's wire format.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::common::TestApp;
use crate::common::fixtures::{mock, mount};
use rebill::autotask::query::Filter;
use rebill::autotask::{AutotaskClient, AutotaskConfig, AutotaskError, ChargeDraft};
use rebill::domain::{AutotaskCoding, AutotaskCompanyId, Money};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SECRET: &str = "autotask-secret-do-not-log";
const CODE: &str = "INTEGRATIONCODE123";

fn config(zone_server: &MockServer) -> AutotaskConfig {
    let mut c = rebill::sandbox::autotask_config(&zone_server.uri());
    c.username = Some("api@example.com".into());
    c.secret = Some(SecretString::from(SECRET));
    c.integration_code = Some(SecretString::from(CODE));
    c.retry_base_ms = 5;
    c
}

async fn zone_to(server: &MockServer) {
    mount(server, "autotask/zone-information.json").await;
}

fn draft(marker: &str) -> ChargeDraft {
    ChargeDraft {
        contract_id: 29684183.try_into().unwrap(),
        product_id: 232.try_into().unwrap(),
        material_code_id: 29682804.try_into().unwrap(),
        name: "SIP Trunk".into(),
        description: "SIP Trunk — November 2026".into(),
        unit_quantity: "1".parse().unwrap(),
        unit_price: Money::parse("49.95").unwrap(),
        unit_cost: Money::parse("31.5").unwrap(),
        date_purchased: "2026-11-01".parse().unwrap(),
        marker: marker.into(),
        billable: true,
    }
}

fn charge(id: i64, marker: &str) -> Value {
    json!({"id": id, "contractID": 29684183, "purchaseOrderNumber": marker, "unitQuantity": 1, "unitPrice": 49.95, "unitCost": 31.5, "isBilled": false})
}

fn page(items: Vec<Value>, next: Option<String>) -> Value {
    json!({"items": items, "pageDetails": {"count": 0, "requestCount": 500, "prevPageUrl": null, "nextPageUrl": next}})
}

async fn the_zone_is_discovered_cached_and_re_resolved_after_a_401(app: TestApp) {
    let lookup = MockServer::start().await;
    let old_zone = MockServer::start().await;
    let new_zone = MockServer::start().await;
    // The first lookup sends us to the old zone, which then refuses us; the second to the new one.
    Mock::given(method("GET"))
        .and(path("/atservicesrest/v1.0/zoneInformation"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"url": format!("{}/ATServicesRest/", old_zone.uri())})),
        )
        .up_to_n_times(1)
        .mount(&lookup)
        .await;
    Mock::given(method("GET"))
        .and(path("/atservicesrest/v1.0/zoneInformation"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"url": format!("{}/ATServicesRest/", new_zone.uri())})),
        )
        .mount(&lookup)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&old_zone)
        .await;
    Mock::given(method("POST"))
        .and(path("/ATServicesRest/V1.0/Companies/query"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(
            vec![json!({"id": 174, "companyName": "Autotask Corporation"})],
            None,
        )))
        .mount(&new_zone)
        .await;
    let client = AutotaskClient::new(&config(&lookup), app.store.clone())
        .await
        .unwrap();
    let found: Vec<Value> = client
        .query("Companies", &Filter::eq("id", 174))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(
        app.store.autotask_zone("api@example.com").await.unwrap(),
        Some(format!("{}/ATServicesRest/", new_zone.uri()))
    );
    let sent = &new_zone.received_requests().await.unwrap()[0];
    assert_eq!(sent.headers.get("ApiIntegrationCode").unwrap(), CODE);
    assert_eq!(sent.headers.get("UserName").unwrap(), "api@example.com");
    assert_eq!(sent.headers.get("Secret").unwrap(), SECRET);
    // A second client (a restart) uses the cached zone without a lookup.
    let lookups = lookup.received_requests().await.unwrap().len();
    let again = AutotaskClient::new(&config(&lookup), app.store.clone())
        .await
        .unwrap();
    let _: Vec<Value> = again
        .query("Companies", &Filter::eq("id", 174))
        .await
        .unwrap();
    assert_eq!(lookup.received_requests().await.unwrap().len(), lookups);
}

async fn queries_page_past_500_rows_reposting_the_same_body(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    let first: Vec<Value> = (1..=500)
        .map(|i| json!({"id": i, "companyName": format!("C{i}")}))
        .collect();
    let second: Vec<Value> = (501..=520)
        .map(|i| json!({"id": i, "companyName": format!("C{i}")}))
        .collect();
    let next = format!(
        "{}/ATServicesRest/V1.0/Companies/query/next?paging=abc",
        server.uri()
    );
    Mock::given(method("POST"))
        .and(path("/ATServicesRest/V1.0/Companies/query"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(first, Some(next))))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/ATServicesRest/V1.0/Companies/query/next"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(second, None)))
        .mount(&server)
        .await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let all: Vec<Value> = client
        .query("Companies", &Filter::eq("isActive", true))
        .await
        .unwrap();
    assert_eq!(all.len(), 520);
    let posts: Vec<Request> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .collect();
    assert_eq!(posts.len(), 2);
    assert_eq!(
        posts[0].body, posts[1].body,
        "the next page is POSTed with the same body"
    );
}

async fn a_page_link_to_another_host_is_refused(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    let evil = "http://127.0.0.2:9/ATServicesRest/V1.0/Companies/query/next".to_string();
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(page(vec![json!({"id": 1})], Some(evil))),
        )
        .mount(&server)
        .await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let e = client
        .query::<Value>("Companies", &Filter::gt("id", 0))
        .await
        .unwrap_err();
    assert!(matches!(e, AutotaskError::ForeignHost(_)), "{e:?}");
}

/// Answers charge-marker queries from a shared list, so a test can make a charge "appear".
struct Charges(Arc<Mutex<Vec<Value>>>);

impl Respond for Charges {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(page(self.0.lock().unwrap().clone(), None))
    }
}

async fn a_validation_error_reported_as_500_is_not_blindly_retried(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    mount(&server, "autotask/contract-charges-query-empty.json").await;
    mock("autotask/charge-create-validation-500.json", &server.uri())
        .expect(1)
        .mount(&server)
        .await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let e = client
        .push_charge(&draft("rb 2026-11 c3 svc-6-fee"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AutotaskError::Refused(w) if w[0].contains("not a Material Cost Code")),
        "{e:?}"
    );
    assert!(e.is_permanent());
}

async fn a_dropped_response_after_the_create_is_found_by_its_marker(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    let existing = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .and(path("/ATServicesRest/V1.0/ContractCharges/query"))
        .respond_with(Charges(existing.clone()))
        .mount(&server)
        .await;
    // The server creates the charge, then the response is lost (an empty 500).
    struct CreateThenDrop(Arc<Mutex<Vec<Value>>>);
    impl Respond for CreateThenDrop {
        fn respond(&self, _: &Request) -> ResponseTemplate {
            self.0
                .lock()
                .unwrap()
                .push(charge(777, "rb 2026-11 c3 svc-6-fee"));
            ResponseTemplate::new(500)
        }
    }
    Mock::given(method("POST"))
        .and(path("/ATServicesRest/V1.0/Contracts/29684183/Charges"))
        .respond_with(CreateThenDrop(existing.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let got = client
        .push_charge(&draft("rb 2026-11 c3 svc-6-fee"))
        .await
        .unwrap();
    assert_eq!(got.id, 777);
    // And pushing again (a retry after a crash) finds it before creating.
    let again = client
        .push_charge(&draft("rb 2026-11 c3 svc-6-fee"))
        .await
        .unwrap();
    assert_eq!(again.id, 777);
    assert_eq!(existing.lock().unwrap().len(), 1, "created once");
}

async fn thread_threshold_and_429_are_backed_off_then_succeed(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({"errors": ["Thread Threshold Exceeded"]})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page(vec![json!({"id": 1})], None)))
        .mount(&server)
        .await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let started = Instant::now();
    let got: Vec<Value> = client
        .query("Companies", &Filter::eq("id", 1))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        started.elapsed().as_millis() >= 1000,
        "Retry-After was honoured"
    );
    assert_eq!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .count(),
        3
    );
}

/// Records when each request arrived.
struct Stamps(Arc<Mutex<Vec<Instant>>>);

impl Respond for Stamps {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.lock().unwrap().push(Instant::now());
        ResponseTemplate::new(200).set_body_json(page(vec![], None))
    }
}

async fn the_pace_keeps_this_daemon_within_its_share_of_the_budget(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    let stamps = Arc::new(Mutex::new(Vec::new()));
    Mock::given(method("POST"))
        .respond_with(Stamps(stamps.clone()))
        .mount(&server)
        .await;
    let mut cfg = config(&server);
    // A tenant budget of 10 per 2-second window, half of it ours: at most 5 per window.
    cfg.hourly_budget = 10;
    cfg.budget_share = 0.5;
    cfg.budget_window_secs = 2;
    cfg.max_budget_wait_secs = 5;
    let client = AutotaskClient::new(&cfg, app.store.clone()).await.unwrap();
    for _ in 0..8 {
        let _: Vec<Value> = client
            .query("Companies", &Filter::eq("id", 1))
            .await
            .unwrap();
    }
    let t = stamps.lock().unwrap().clone();
    assert_eq!(t.len(), 8);
    for (i, s) in t.iter().enumerate() {
        let in_window = t
            .iter()
            .filter(|u| **u >= *s && u.duration_since(*s).as_millis() < 1900)
            .count();
        assert!(
            in_window <= 5,
            "request {i}: {in_window} requests within one window"
        );
    }
    // With the budget spent for longer than it may wait, the work is parked, not dropped. The
    // budget is the database's: the eight requests above, another process's, spent this hour.
    cfg.max_budget_wait_secs = 0;
    cfg.budget_window_secs = 3600;
    let parked = AutotaskClient::new(&cfg, app.store.clone()).await.unwrap();
    let e = parked
        .query::<Value>("Companies", &Filter::eq("id", 1))
        .await
        .unwrap_err();
    assert!(e.retry_after().is_some(), "{e:?}");
}

async fn an_invalid_contract_is_refused_at_assignment_with_the_reason(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    mount(&server, "autotask/contract-other-company.json").await;
    mount(&server, "autotask/billing-codes-fields.json").await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let coding = AutotaskCoding {
        contract_id: 29684183.try_into().unwrap(),
        product_id: 232.try_into().unwrap(),
        material_code_id: 29682804.try_into().unwrap(),
    };
    let e = client
        .validate_coding(
            AutotaskCompanyId::new(174).unwrap(),
            &coding,
            "2026-11-01".parse().unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("belongs to company 175, not to company 174"),
        "{e}"
    );
    assert!(
        client.material_code_use_type().await.unwrap() == 6,
        "read from entityInformation/fields, not hard-coded"
    );
}

async fn no_secret_reaches_a_log_line_or_an_error(app: TestApp) {
    let server = MockServer::start().await;
    zone_to(&server).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || Sink(w.clone()))
        .finish();
    let _g = tracing::subscriber::set_default(subscriber);
    let cfg = config(&server);
    let client = AutotaskClient::new(&cfg, app.store.clone()).await.unwrap();
    let e = client
        .query::<Value>("Companies", &Filter::eq("id", 1))
        .await
        .unwrap_err();
    tracing::warn!(config = ?cfg, client = ?client, error = %e, "failed");
    let logs = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("failed"));
    for s in [SECRET, CODE] {
        assert!(!logs.contains(s), "{s} leaked: {logs}");
        assert!(!e.to_string().contains(s));
    }
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

backend_tests!(
    the_zone_is_discovered_cached_and_re_resolved_after_a_401,
    queries_page_past_500_rows_reposting_the_same_body,
    a_page_link_to_another_host_is_refused,
    a_validation_error_reported_as_500_is_not_blindly_retried,
    a_dropped_response_after_the_create_is_found_by_its_marker,
    thread_threshold_and_429_are_backed_off_then_succeed,
    the_pace_keeps_this_daemon_within_its_share_of_the_budget,
    an_invalid_contract_is_refused_at_assignment_with_the_reason,
    no_secret_reaches_a_log_line_or_an_error,
);

mod from_the_stand_in {
    use crate::common::TestApp;
    use rebill::autotask::{AutotaskClient, CompanyImport, import_companies};
    use rebill::domain::BillingTarget;
    use rebill::sandbox::Sandboxes;
    use rebill::store::Upsert;

    async fn customers_are_imported_from_autotask_companies_idempotently(app: TestApp) {
        let sb = Sandboxes::start(0, 0).await.unwrap();
        sb.autotask.seed_company(174, "Autotask Corporation");
        sb.autotask.seed_company(175, "Upstate Document Providers");
        let client = AutotaskClient::new(
            &rebill::sandbox::autotask_config(&sb.autotask_url),
            app.store.clone(),
        )
        .await
        .unwrap();
        let first = import_companies(&client, &app.store, &app.actor(), CompanyImport::AllActive)
            .await
            .unwrap();
        assert_eq!(
            first
                .iter()
                .filter(|(_, o)| *o == Ok(Upsert::Created))
                .count(),
            2
        );
        let again = import_companies(&client, &app.store, &app.actor(), CompanyImport::AllActive)
            .await
            .unwrap();
        assert!(
            again.iter().all(|(_, o)| *o == Ok(Upsert::Unchanged)),
            "{again:?}"
        );
        let c = app
            .store
            .customer_by_ref("autotask:174")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.name.as_str(), "Autotask Corporation");
        assert!(
            matches!(c.target, BillingTarget::Autotask { company_id } if company_id.get() == 174)
        );
        assert_eq!(c.details.city.as_deref(), Some("Sydney"));
    }

    crate::backend_tests!(customers_are_imported_from_autotask_companies_idempotently);
}
