//! Autotask 5xx replies classified by their body (issue 13): Autotask's own validation words are
//! permanent, a server fault (its "unexpected error … Error ID", an HTML page, an empty body) is
//! transient: retried where safe, and for a create an unknown outcome, never a permanent failure.

use crate::common::TestApp;
use crate::common::fixtures::mount;
use rebill::autotask::query::Filter;
use rebill::autotask::{AutotaskClient, AutotaskConfig, AutotaskError, ChargeDraft};
use rebill::domain::Money;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Autotask's body for a server fault (research sample error.unexpected-with-errorId.json).
const UNEXPECTED: &str = r#"{"errors":["An unexpected error has occurred.  If the problem persists, please contact Autotask Support and reference Error ID: 54634.","If the problem persists, please contact Autotask Support and reference Error ID: 54634."],"errorId":54634}"#;

const CHARGES: &str = "/ATServicesRest/V1.0/Contracts/29684183/Charges";

fn config(server: &MockServer) -> AutotaskConfig {
    let mut c = rebill::sandbox::autotask_config(&server.uri());
    // The zone is cached in the database per API user: one user per server, so that a later
    // server of the same test (wiremock pools them) is never reached through an earlier one's URL.
    c.username = Some(format!("api-{}@example.com", server.address().port()));
    c.retry_base_ms = 5;
    c
}

fn draft() -> ChargeDraft {
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
        marker: "rb 2026-11 c3 svc-6-fee".into(),
        billable: true,
    }
}

/// A server whose charge create answers `status` with `body` (as `content_type`).
async fn create_answers(status: u16, body: &str, content_type: &str) -> MockServer {
    let server = MockServer::start().await;
    mount(&server, "autotask/zone-information.json").await;
    mount(&server, "autotask/contract-charges-query-empty.json").await;
    Mock::given(method("POST"))
        .and(path(CHARGES))
        .respond_with(
            ResponseTemplate::new(status)
                .insert_header("Content-Type", content_type)
                .set_body_string(body),
        )
        .expect(1)
        .mount(&server)
        .await;
    server
}

fn posts_to(requests: &[wiremock::Request], p: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == p)
        .count()
}

async fn a_create_answered_by_a_server_fault_is_an_unknown_outcome_not_a_refusal(app: TestApp) {
    for (i, (body, content_type)) in [
        (UNEXPECTED, "application/json"),
        (
            "<!DOCTYPE html><html><body><h2>500 - Internal server error.</h2></body></html>",
            "text/html",
        ),
        ("", "text/plain"),
    ]
    .into_iter()
    .enumerate()
    {
        let server = create_answers(500, body, content_type).await;
        // Another API user each time: the zone cached for one server is not another's.
        let mut cfg = config(&server);
        cfg.username = Some(format!("api{i}@example.com"));
        let client = AutotaskClient::new(&cfg, app.store.clone()).await.unwrap();
        let e = client.push_charge(&draft()).await.unwrap_err();
        assert!(
            matches!(e, AutotaskError::Http { status: 500, .. }),
            "{body:?}: {e:?}"
        );
        assert!(
            !e.is_permanent(),
            "{body:?}: retried later, not parked for a resync"
        );
        let sent = server.received_requests().await.unwrap();
        assert_eq!(
            posts_to(&sent, CHARGES),
            1,
            "{body:?}: never sent twice blind"
        );
        assert_eq!(
            posts_to(&sent, "/ATServicesRest/V1.0/ContractCharges/query"),
            2,
            "{body:?}: the marker was looked for before and after the create"
        );
    }
}

async fn a_create_refused_in_autotasks_words_on_a_500_is_permanent(app: TestApp) {
    let server = create_answers(
        500,
        r#"{"errors":["Product 232 does not exist or is not active."]}"#,
        "application/json",
    )
    .await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let e = client.push_charge(&draft()).await.unwrap_err();
    assert!(
        matches!(&e, AutotaskError::Refused(w) if w[0].contains("Product 232")),
        "{e:?}"
    );
    assert!(e.is_permanent());
}

async fn a_query_answered_by_a_server_fault_is_retried(app: TestApp) {
    let server = MockServer::start().await;
    mount(&server, "autotask/zone-information.json").await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("Content-Type", "application/json")
                .set_body_string(UNEXPECTED),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "items": [{"id": 1}],
            "pageDetails": {"count": 1, "requestCount": 500, "prevPageUrl": null, "nextPageUrl": null}
        })))
        .mount(&server)
        .await;
    let client = AutotaskClient::new(&config(&server), app.store.clone())
        .await
        .unwrap();
    let got: Vec<Value> = client
        .query("Companies", &Filter::eq("id", 1))
        .await
        .unwrap();
    assert_eq!(got.len(), 1, "the server fault was retried");
}

backend_tests!(
    a_create_answered_by_a_server_fault_is_an_unknown_outcome_not_a_refusal,
    a_create_refused_in_autotasks_words_on_a_500_is_permanent,
    a_query_answered_by_a_server_fault_is_retried,
);
