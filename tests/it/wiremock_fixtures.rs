//! `wiremock-fixtures/`: each stub is used by a test, no two stubs answer the same request, and
//! the files work as they are in a standalone WireMock server (its own templating, not ours).
use std::collections::BTreeSet;

use crate::common::TestApp;
use crate::common::fixtures::{self, BASE_URL_TEMPLATE, mount};
use rebill::autotask::{AutotaskClient, ChargeDraft};
use rebill::domain::Money;
use rebill::xero::{EmailOutcome, XeroClient};
use serde_json::Value;
use wiremock::MockServer;

/// The sources of this test binary (where fixtures are named).
fn test_sources() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut text = String::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            text.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    text
}

#[test]
fn every_fixture_is_used_by_a_test() {
    let sources = test_sources();
    let unused: Vec<String> = fixtures::all()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !sources.contains(&format!("\"{name}\"")))
        .collect();
    assert!(unused.is_empty(), "fixtures no test loads: {unused:?}");
}

#[test]
fn templated_fixtures_use_wiremocks_own_template_and_ask_for_it() {
    for (name, stub) in fixtures::all() {
        let body = stub["response"].to_string();
        assert!(
            !body.contains("{{base}}"),
            "{name}: {{{{base}}}} is not a WireMock template; use {BASE_URL_TEMPLATE}"
        );
        if body.contains("{{") {
            assert!(
                fixtures::templated(&stub),
                "{name}: a template without \"transformers\": [\"response-template\"] stays literal in WireMock"
            );
            let rest = body.replace(BASE_URL_TEMPLATE, "");
            assert!(!rest.contains("{{"), "{name}: an unexpected template");
        }
    }
}

/// A sample path that `stub`'s URL matcher accepts (a pattern's classes filled in).
fn sample_path(req: &Value) -> String {
    if let Some(p) = req["urlPath"].as_str() {
        return p.to_string();
    }
    req["urlPathPattern"]
        .as_str()
        .unwrap_or("/")
        .replace("[0-9a-f-]+", "0f1e2d3c-0000-4000-8000-000000000001")
        .replace("[0-9]+", "29684183")
}

fn path_accepts(req: &Value, sample: &str) -> bool {
    match (req["urlPath"].as_str(), req["urlPathPattern"].as_str()) {
        (Some(p), _) => p == sample,
        (None, Some(p)) => regex_lite_match(p, sample),
        _ => true,
    }
}

/// Enough of a regex for the fixtures' path patterns: literal text, `[0-9]+` and `[0-9a-f-]+`.
fn regex_lite_match(pattern: &str, text: &str) -> bool {
    let classes = [
        (
            "[0-9a-f-]+",
            (|c: char| c.is_ascii_hexdigit() || c == '-') as fn(char) -> bool,
        ),
        ("[0-9]+", |c: char| c.is_ascii_digit()),
    ];
    if pattern.is_empty() {
        return text.is_empty();
    }
    for (class, ok) in classes {
        if let Some(rest) = pattern.strip_prefix(class) {
            let run = text.chars().take_while(|c| ok(*c)).count();
            return (1..=run).any(|n| regex_lite_match(rest, &text[n..]));
        }
    }
    let c = pattern.chars().next().unwrap();
    text.starts_with(c) && regex_lite_match(&pattern[c.len_utf8()..], &text[c.len_utf8()..])
}

/// The body patterns of a stub as (contains, doesNotContain) sets.
fn body_patterns(req: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut yes = BTreeSet::new();
    let mut no = BTreeSet::new();
    for p in req["bodyPatterns"].as_array().into_iter().flatten() {
        if let Some(s) = p["contains"].as_str() {
            yes.insert(s.to_string());
        }
        if let Some(s) = p["doesNotContain"].as_str() {
            no.insert(s.to_string());
        }
    }
    (yes, no)
}

/// No request body can satisfy both: one requires what the other forbids, or both require a
/// different value of the same form field (`grant_type=a` / `grant_type=b`).
fn bodies_disjoint(a: &Value, b: &Value) -> bool {
    let (ay, an) = body_patterns(a);
    let (by, bn) = body_patterns(b);
    if ay.intersection(&bn).next().is_some() || by.intersection(&an).next().is_some() {
        return true;
    }
    ay.iter().any(|x| {
        by.iter()
            .any(|y| match (x.split_once('='), y.split_once('=')) {
                (Some((kx, vx)), Some((ky, vy))) => kx == ky && vx != vy && !kx.contains('"'),
                _ => false,
            })
    })
}

#[test]
fn no_two_stubs_answer_the_same_request() {
    let all = fixtures::all();
    let mut overlaps = Vec::new();
    for (i, (na, a)) in all.iter().enumerate() {
        for (nb, b) in &all[i + 1..] {
            let (ra, rb) = (&a["request"], &b["request"]);
            if ra["method"] != rb["method"] {
                continue;
            }
            let same_path =
                path_accepts(ra, &sample_path(rb)) || path_accepts(rb, &sample_path(ra));
            let queries_differ = ra["queryParameters"] != rb["queryParameters"]
                && ra["queryParameters"].is_object()
                && rb["queryParameters"].is_object();
            if same_path && !queries_differ && !bodies_disjoint(ra, rb) {
                overlaps.push(format!("{na} and {nb}"));
            }
        }
    }
    assert!(overlaps.is_empty(), "stubs that overlap: {overlaps:?}");
}

#[test]
fn the_overlap_check_sees_an_overlap() {
    // The check itself: two token stubs without body patterns overlap; with them they do not.
    let bare: Value = serde_json::json!({"method": "POST", "urlPath": "/connect/token"});
    assert!(!bodies_disjoint(&bare, &bare));
    let cc = serde_json::json!({"bodyPatterns": [{"contains": "grant_type=client_credentials"}]});
    let rt = serde_json::json!({"bodyPatterns": [{"contains": "grant_type=refresh_token"}]});
    assert!(bodies_disjoint(&cc, &rt));
    assert!(regex_lite_match(
        "/ATServicesRest/V1.0/Contracts/[0-9]+/Charges",
        "/ATServicesRest/V1.0/Contracts/29684183/Charges"
    ));
    assert!(!regex_lite_match(
        "/ATServicesRest/V1.0/Contracts/[0-9]+/Charges",
        "/ATServicesRest/V1.0/Contracts/x/Charges"
    ));
}

fn autotask_config(server: &MockServer) -> rebill::autotask::AutotaskConfig {
    let mut c = rebill::sandbox::autotask_config(&server.uri());
    c.retry_base_ms = 5;
    c
}

fn charge(material_code: i64) -> ChargeDraft {
    ChargeDraft {
        contract_id: 29684183.try_into().unwrap(),
        product_id: 232.try_into().unwrap(),
        material_code_id: material_code.try_into().unwrap(),
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

async fn a_charge_autotask_accepts_is_created_with_the_id_it_answers(app: TestApp) {
    let server = MockServer::start().await;
    mount(&server, "autotask/zone-information.json").await;
    mount(&server, "autotask/contract-charges-query-empty.json").await;
    mount(&server, "autotask/charge-create.json").await;
    // Loaded beside it, the validation stub must not answer a good charge (no overlap).
    mount(&server, "autotask/charge-create-validation-500.json").await;
    let client = AutotaskClient::new(&autotask_config(&server), app.store.clone())
        .await
        .unwrap();
    let created = client.push_charge(&charge(29682805)).await.unwrap();
    assert_eq!(created.id, 29683664);
    let refused = client.push_charge(&charge(29682804)).await.unwrap_err();
    assert!(
        refused.to_string().contains("not a Material Cost Code"),
        "{refused}"
    );
}

async fn the_tenants_thresholds_set_this_daemons_pace(app: TestApp) {
    let server = MockServer::start().await;
    mount(&server, "autotask/zone-information.json").await;
    mount(&server, "autotask/threshold-information.json").await;
    let mut cfg = autotask_config(&server);
    cfg.budget_share = 0.5;
    let client = AutotaskClient::new(&cfg, app.store.clone()).await.unwrap();
    let t = client.prepare_run().await.unwrap();
    assert_eq!(t.external_request_threshold, Some(10000));
    // Half of the 10,000-request hour: 5,000 (the 124 already used leave more than that).
    assert_eq!(client.pace_limit().await, 5000);
}

async fn an_invoice_email_xero_accepts_is_sent(app: TestApp) {
    let server = MockServer::start().await;
    mount(&server, "xero/token-client-credentials.json").await;
    // Beside it, the refresh-token refusal must not answer a client-credentials request.
    mount(&server, "xero/token-invalid-grant.json").await;
    mount(&server, "xero/connections.json").await;
    mount(&server, "xero/invoice-email.json").await;
    let cfg = rebill::sandbox::xero_config(&server.uri());
    let client = XeroClient::new(&cfg, app.store.clone()).await.unwrap();
    let out = client
        .email_invoice("0f1e2d3c-0000-4000-8000-000000000001", "email-rb-1000")
        .await
        .unwrap();
    assert!(matches!(out, EmailOutcome::Sent), "{out:?}");
}

backend_tests!(
    a_charge_autotask_accepts_is_created_with_the_id_it_answers,
    the_tenants_thresholds_set_this_daemons_pace,
    an_invoice_email_xero_accepts_is_sent,
);

/// The same files in a real WireMock server (the standalone jar, e.g. from the npm package
/// `wiremock`): its templating fills the zone's URL, and the clients work against it as a
/// staging daemon would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Java and a WireMock standalone jar: set REBILL_WIREMOCK_JAR and run with --ignored"]
async fn the_fixtures_served_by_a_real_wiremock_drive_the_clients() {
    let jar = std::env::var("REBILL_WIREMOCK_JAR")
        .expect("REBILL_WIREMOCK_JAR: the path of wiremock-standalone-*.jar");
    let root = tempfile::tempdir().unwrap();
    let mappings = root.path().join("mappings");
    std::fs::create_dir(&mappings).unwrap();
    for (name, stub) in fixtures::all() {
        std::fs::write(
            mappings.join(name.replace('/', "--")),
            serde_json::to_string(&stub).unwrap(),
        )
        .unwrap();
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = std::process::Command::new("java")
        .args(["-jar", &jar, "--port", &port.to_string(), "--root-dir"])
        .arg(root.path())
        .args(["--bind-address", "127.0.0.1", "--disable-banner"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("java");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..120 {
        if http
            .get(format!("{base}/__admin/mappings"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let outcome = async {
        assert!(up, "WireMock did not start on {base}");
        let zone: Value = http
            .get(format!(
                "{base}/atservicesrest/v1.0/zoneInformation?user=api@example.com"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(zone["url"], format!("{base}/ATServicesRest/"), "{zone}");
        let app = TestApp::sqlite().await;
        let mut at = rebill::sandbox::autotask_config(&base);
        at.retry_base_ms = 5;
        let client = AutotaskClient::new(&at, app.store.clone()).await.unwrap();
        client.prepare_run().await.unwrap();
        assert_eq!(
            client.push_charge(&charge(29682805)).await.unwrap().id,
            29683664
        );
        let xero = XeroClient::new(&rebill::sandbox::xero_config(&base), app.store.clone())
            .await
            .unwrap();
        let sent = xero
            .email_invoice("0f1e2d3c-0000-4000-8000-000000000001", "email-rb-1000")
            .await
            .unwrap();
        assert!(matches!(sent, EmailOutcome::Sent));
    };
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    let _ = server.kill();
    let _ = server.wait();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
