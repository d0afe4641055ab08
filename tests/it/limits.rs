//! The stand-ins enforce the remotes' limits on a clock (a client that ignores them gets 429s with
//! Retry-After), count every request by kind, and reset their windows on a scaled clock; the
//! clients pace themselves so that they get none; `bench cycle` runs and reports every figure.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rebill::clock::{Clock, ScaledClock, TestClock};
use rebill::sandbox::autotask::{self as at, AutotaskSandbox};
use rebill::sandbox::faults::Fault;
use rebill::sandbox::limits::LimitRules;
use rebill::sandbox::xero::{TENANT_ID, XeroSandbox};

async fn serve(router: axum::Router) -> String {
    let (addr, _task) = rebill::http::serve(router, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    format!("http://{addr}")
}

/// A Xero request as a client that knows nothing of the limits sends it.
fn xero_get(http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    http.get(format!("{base}/api.xro/2.0/Invoices"))
        .bearer_auth("sandbox-test")
        .header("xero-tenant-id", TENANT_ID)
}

fn retry_after(r: &reqwest::Response) -> Option<u64> {
    r.headers().get("Retry-After")?.to_str().ok()?.parse().ok()
}

#[tokio::test]
async fn a_client_ignoring_xeros_minute_limit_gets_429_with_retry_after_until_the_minute_turns() {
    let clock = Arc::new(TestClock::at(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 15).unwrap(),
    ));
    let sb = XeroSandbox::limited(clock.clone());
    let base = serve(sb.router()).await;
    let http = reqwest::Client::new();
    for i in 0..60 {
        let r = xero_get(&http, &base).send().await.unwrap();
        assert_eq!(r.status(), 200, "request {i} of the minute");
    }
    let r = xero_get(&http, &base).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        retry_after(&r),
        Some(45),
        "seconds of the clock until 10:01"
    );
    assert_eq!(r.headers()["X-Rate-Limit-Problem"], "minute");
    clock.advance(chrono::Duration::seconds(45));
    let r = xero_get(&http, &base).send().await.unwrap();
    assert_eq!(r.status(), 200, "a new minute");
    assert_eq!(sb.limits.throttled(), 1);
}

#[tokio::test]
async fn a_sixth_xero_request_at_once_gets_429() {
    let clock = Arc::new(TestClock::at(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
    ));
    let sb = XeroSandbox::limited(clock);
    let base = serve(sb.router()).await;
    let http = reqwest::Client::new();
    // Five creates held by the stand-in (in flight) while a sixth request comes.
    for _ in 0..5 {
        sb.faults
            .push("PUT", "/Invoices", Fault::Delay(Duration::from_secs(2)));
    }
    let mut held = Vec::new();
    for _ in 0..5 {
        let req = http
            .put(format!("{base}/api.xro/2.0/Invoices"))
            .bearer_auth("sandbox-test")
            .header("xero-tenant-id", TENANT_ID)
            .json(&serde_json::json!({"Invoices": []}));
        held.push(tokio::spawn(req.send()));
    }
    while sb.limits.in_flight() < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = xero_get(&http, &base).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["X-Rate-Limit-Problem"], "concurrent");
    assert!(retry_after(&r).is_some_and(|s| s >= 1));
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().status(), 200);
    }
}

#[tokio::test]
async fn a_fourth_autotask_request_at_once_on_one_endpoint_gets_429() {
    let clock = Arc::new(TestClock::at(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
    ));
    let sb = AutotaskSandbox::limited(clock);
    let base = serve(sb.router()).await;
    sb.set_base(&base);
    let http = reqwest::Client::new();
    let query = |entity: &str| {
        http.post(format!("{base}/ATServicesRest/V1.0/{entity}/query"))
            .header("ApiIntegrationCode", at::INTEGRATION_CODE)
            .header("UserName", at::USERNAME)
            .header("Secret", at::SECRET)
            .json(&serde_json::json!({"filter": []}))
    };
    for _ in 0..3 {
        sb.faults.push(
            "POST",
            "/Contracts/query",
            Fault::Delay(Duration::from_secs(2)),
        );
    }
    let held: Vec<_> = (0..3)
        .map(|_| tokio::spawn(query("Contracts").send()))
        .collect();
    while sb.limits.in_flight() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = query("Contracts").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(retry_after(&r).is_some_and(|s| s >= 1));
    let other = query("Companies").send().await.unwrap();
    assert_eq!(other.status(), 200, "another endpoint has its own three");
    for h in held {
        h.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn the_counter_counts_every_request_by_kind_refused_or_not() {
    let clock = Arc::new(TestClock::at(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
    ));
    let sb = XeroSandbox::limited(clock);
    let base = serve(sb.router()).await;
    let http = reqwest::Client::new();
    for _ in 0..65 {
        xero_get(&http, &base).send().await.unwrap();
    }
    // Unauthorised, and to an id: counted all the same.
    http.get(format!("{base}/api.xro/2.0/Invoices"))
        .send()
        .await
        .unwrap();
    http.get(format!(
        "{base}/api.xro/2.0/Invoices/7cb5d0a0-0000-4000-8000-000000000001"
    ))
    .bearer_auth("sandbox-test")
    .header("xero-tenant-id", TENANT_ID)
    .send()
    .await
    .unwrap();
    let kinds = sb.limits.requests_by_kind();
    assert_eq!(kinds["GET /api.xro/2.0/Invoices"], 65 + 1);
    assert_eq!(kinds["GET /api.xro/2.0/Invoices/{id}"], 1);
    assert_eq!(sb.limits.requests(), 67);
    assert_eq!(sb.limits.throttled(), 5 + 2, "past 60 in the minute");
    assert_eq!(sb.requests(), 60, "the handlers saw only what was admitted");
}

#[tokio::test]
async fn on_a_scaled_clock_the_day_budget_resets_at_midnight() {
    // Ten simulated minutes before midnight pass in a second.
    let clock = Arc::new(ScaledClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 23, 50, 0).unwrap(),
        600.0,
    ));
    let mut rules = LimitRules::xero();
    rules.windows[1].max = 2;
    let sb = XeroSandbox::limited_by(rules, clock.clone());
    let base = serve(sb.router()).await;
    let http = reqwest::Client::new();
    for _ in 0..2 {
        assert_eq!(xero_get(&http, &base).send().await.unwrap().status(), 200);
    }
    let r = xero_get(&http, &base).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["X-Rate-Limit-Problem"], "day");
    let refused_on = clock.now().date_naive();
    let after = Duration::from_secs(retry_after(&r).unwrap());
    assert!(after <= Duration::from_secs(600), "{after:?}");
    tokio::time::sleep(clock.real_duration(after)).await;
    assert!(
        clock.now().date_naive() > refused_on,
        "the clock reached the next day"
    );
    let r = xero_get(&http, &base).send().await.unwrap();
    assert_eq!(r.status(), 200, "the day's budget was reset");
}

#[tokio::test]
async fn a_client_that_paces_itself_gets_no_429_where_the_limits_bite() {
    // 130 reads at Xero's 60 a minute: more than two minutes of the clock, a quarter second real.
    let clock = Arc::new(ScaledClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
        600.0,
    ));
    let sb = XeroSandbox::limited(clock.clone());
    let base = serve(sb.router()).await;
    let app = crate::common::TestApp::sqlite().await;
    let mut cfg = rebill::sandbox::xero_config(&base);
    cfg.requests_per_minute = 60;
    cfg.requests_per_day = 5_000;
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let client = rebill::xero::XeroClient::new_on(&cfg, app.store.clone(), dyn_clock)
        .await
        .unwrap();
    let started = clock.now();
    for i in 0..130 {
        client
            .find_invoice_by_reference(&format!("RB-{i}"))
            .await
            .unwrap();
    }
    assert_eq!(
        sb.limits.throttled(),
        0,
        "{:?}",
        sb.limits.throttled_by_kind()
    );
    assert!(
        clock.now() - started >= chrono::Duration::minutes(2),
        "130 requests at 60 a minute take two minutes of the clock"
    );
}

/// A bench makes its own databases: it must not create the configured one (by default
/// `./rebill.db`) in the directory it is run from.
#[test]
fn a_bench_leaves_no_database_where_it_is_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("rebilld")
        .unwrap()
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("REBILL_DATABASE__URL")
        .args(["bench", "cdr", "--rows", "1000", "--dir"])
        .arg(dir.path().join("bench"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rebill.db"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn bench_cycle_runs_and_reports_every_figure_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("rebilld")
        .unwrap()
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env(
            "REBILL_DATABASE__URL",
            format!("sqlite://{}", dir.path().join("rebill.db").display()),
        )
        .args(["bench", "cycle", "--customers", "100", "--calls", "10000"])
        .arg("--dir")
        .arg(dir.path().join("bench"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for step in ["seed", "import", "rate", "compute_record"] {
        assert!(
            r["local_seconds"]["sqlite"][step].is_number(),
            "{step}: {r}"
        );
    }
    for sys in ["xero", "autotask"] {
        for figure in ["requests", "ratio", "throttled", "lower_bound_seconds"] {
            assert!(r[sys][figure].is_number(), "{sys}.{figure}: {r}");
        }
        assert!(r[sys]["minimum"]["total"].as_u64().unwrap() > 0, "{r}");
        assert!(r[sys]["by_kind"].is_object());
    }
    for figure in ["simulated_seconds", "lower_bound_seconds", "real_seconds"] {
        assert!(r["push"][figure].is_number(), "push.{figure}: {r}");
    }
    assert!(r["peak_memory_mb"].as_f64().unwrap() > 0.0);
    for figure in [
        "changed_customers",
        "xero_requests",
        "autotask_requests",
        "simulated_seconds",
    ] {
        assert!(r["resync"][figure].is_number(), "resync.{figure}: {r}");
    }
    assert_eq!(r["resync"]["failed"], 0, "{r}");
    assert_eq!(r["size"]["customers"], 100);
    assert_eq!(r["size"]["xero_customers"], 70);
    assert_eq!(r["push"]["failed"], 0, "{r}");
    // Every emailed invoice was emailed: the work was done, not only measured.
    assert_eq!(r["xero"]["emails"], r["xero"]["minimum"]["emails"], "{r}");
    assert_eq!(r["xero"]["throttled"], 0, "the client paces itself: {r}");
    assert_eq!(r["autotask"]["throttled"], 0, "{r}");
}
