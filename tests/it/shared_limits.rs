//! The remote tenant's limits are shared by every process on the database (issues 13 and 16):
//! two clients on one database (two processes: they share nothing but the database) together
//! stay within Xero's 60 a minute and 5 at once, and within Autotask's share of the hourly budget,
//! against stand-ins that answer 429 past each limit; the day's Xero budget is kept for the
//! invoice creates still waiting; and the budgets and every request are on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rebill::autotask::AutotaskClient;
use rebill::autotask::query::Filter;
use rebill::clock::{Clock, ScaledClock, TestClock};
use rebill::sandbox::Fault;
use rebill::sandbox::autotask::AutotaskSandbox;
use rebill::sandbox::limits::{LimitRules, Window};
use rebill::sandbox::xero::XeroSandbox;
use rebill::store::budget::{self, Ask, IN_FLIGHT_WAIT};
use rebill::xero::{XeroClient, XeroError};
use serde_json::Value;

use crate::common::TestApp;
use crate::common::world::build;

/// The requests the Xero stand-in received on its Accounting API (not the identity endpoints).
fn api_requests(sb: &XeroSandbox) -> u64 {
    sb.limits
        .requests_by_kind()
        .iter()
        .filter(|(kind, _)| kind.contains(" /api.xro/"))
        .map(|(_, n)| n)
        .sum()
}

async fn serve(router: axum::Router) -> String {
    let (addr, _task) = rebill::http::serve(router, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    format!("http://{addr}")
}

/// A Xero client as a separate process builds it: its own memory, the shared database.
async fn xero_process(
    app: &TestApp,
    base: &str,
    clock: Arc<dyn Clock>,
    per_day: u32,
) -> XeroClient {
    let mut cfg = rebill::sandbox::xero_config(base);
    cfg.requests_per_minute = 60;
    cfg.requests_per_day = per_day;
    cfg.max_concurrent = 5;
    XeroClient::new_on(&cfg, app.store.clone(), clock)
        .await
        .unwrap()
}

async fn two_processes_together_stay_within_xeros_60_a_minute(app: TestApp) {
    // 140 reads at 60 a minute: more than two minutes of the clock, a fraction of a second real.
    let clock = Arc::new(ScaledClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
        600.0,
    ));
    let sb = XeroSandbox::limited(clock.clone());
    let base = serve(sb.router()).await;
    let a = xero_process(&app, &base, clock.clone(), 5_000).await;
    let b = xero_process(&app, &base, clock.clone(), 5_000).await;
    let started = clock.now();
    let reads = |c: XeroClient, who: &'static str| async move {
        for i in 0..70 {
            c.invoices_with_reference(&format!("RB-{who}{i}"))
                .await
                .unwrap();
        }
    };
    tokio::join!(reads(a, "a"), reads(b, "b"));
    assert_eq!(
        sb.limits.throttled(),
        0,
        "together within 60 a minute: {:?}",
        sb.limits.throttled_by_kind()
    );
    assert_eq!(
        sb.limits.requests_by_kind()["GET /api.xro/2.0/Invoices"],
        140
    );
    assert!(
        clock.now() - started >= chrono::Duration::minutes(2),
        "140 requests at 60 a minute take two minutes of the clock, whoever sends them"
    );
}

async fn two_processes_together_send_at_most_five_at_once_to_xero(app: TestApp) {
    let clock = Arc::new(TestClock::at(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
    ));
    let sb = XeroSandbox::limited(clock.clone());
    let base = serve(sb.router()).await;
    // Every read is held by the stand-in for a while: each process would fill its five.
    for _ in 0..16 {
        sb.faults
            .push("GET", "/Invoices", Fault::Delay(Duration::from_millis(300)));
    }
    let a = xero_process(&app, &base, clock.clone(), 5_000).await;
    let b = xero_process(&app, &base, clock.clone(), 5_000).await;
    let reads = (0..16).map(|i| {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { c.invoices_with_reference(&format!("RB-{i}")).await }
    });
    for r in futures::future::join_all(reads).await {
        r.unwrap();
    }
    assert_eq!(
        sb.limits.throttled(),
        0,
        "at most five in flight together: {:?}",
        sb.limits.throttled_by_kind()
    );
}

async fn two_processes_together_stay_within_the_autotask_share(app: TestApp) {
    // An hour of the clock passes in a second; the tenant allows this integration 50 an hour.
    let clock = Arc::new(ScaledClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
        3_600.0,
    ));
    let mut rules = LimitRules::autotask();
    rules.windows = vec![Window {
        max: 50,
        secs: 3_600,
        problem: "hour",
    }];
    let sb = AutotaskSandbox::limited_by(rules, clock.clone());
    let base = serve(sb.router()).await;
    sb.set_base(&base);
    let mut cfg = rebill::sandbox::autotask_config(&base);
    cfg.hourly_budget = 100;
    cfg.budget_share = 0.5;
    // The second hour's turn is waited for, not parked.
    cfg.max_budget_wait_secs = 7_200;
    app.store
        .save_autotask_zone(
            cfg.username.as_deref().unwrap(),
            &format!("{base}/ATServicesRest/"),
        )
        .await
        .unwrap();
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let a = AutotaskClient::new_on(&cfg, app.store.clone(), dyn_clock.clone())
        .await
        .unwrap();
    let b = AutotaskClient::new_on(&cfg, app.store.clone(), dyn_clock)
        .await
        .unwrap();
    let queries = |c: AutotaskClient| async move {
        for i in 1..=40 {
            let _: Vec<Value> = c.query("Companies", &Filter::eq("id", i)).await.unwrap();
        }
    };
    let started = clock.now();
    tokio::join!(queries(a), queries(b));
    assert_eq!(
        sb.limits.throttled(),
        0,
        "together within the share: {:?}",
        sb.limits.throttled_by_kind()
    );
    assert_eq!(
        sb.limits.requests_by_kind()["POST /ATServicesRest/V1.0/Companies/query"],
        80
    );
    assert!(
        clock.now() - started >= chrono::Duration::hours(1),
        "80 requests at 50 an hour need a second hour"
    );
}

/// The tenant's own threshold, read from Autotask, sets the share every process paces to: a
/// tenant allowed 80 an hour gives this integration (a 50 % share) 40, whatever the configured
/// default budget says.
async fn the_tenants_threshold_sets_the_share_every_process_paces_to(app: TestApp) {
    let clock = Arc::new(ScaledClock::new(
        Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap(),
        1.0,
    ));
    let mut rules = LimitRules::autotask();
    rules.windows = vec![Window {
        max: 80,
        secs: 3_600,
        problem: "hour",
    }];
    let sb = AutotaskSandbox::limited_by(rules, clock.clone());
    let base = serve(sb.router()).await;
    sb.set_base(&base);
    let mut cfg = rebill::sandbox::autotask_config(&base);
    cfg.budget_share = 0.5;
    app.store
        .save_autotask_zone(
            cfg.username.as_deref().unwrap(),
            &format!("{base}/ATServicesRest/"),
        )
        .await
        .unwrap();
    let at = AutotaskClient::new_on(&cfg, app.store.clone(), clock)
        .await
        .unwrap();
    let t = at.prepare_run().await.unwrap();
    assert_eq!(t.external_request_threshold, Some(80));
    assert_eq!(at.pace_limit().await, 40);
}

async fn other_requests_leave_the_days_budget_to_the_invoice_creates_waiting(app: TestApp) {
    let w = build(&app).await;
    // Xero's creates fail for now (a 503 every time they are tried): the period's two invoices
    // wait in the outbox, to be created later today.
    for _ in 0..20 {
        w.sandboxes.xero.faults.push(
            "PUT",
            "/Invoices",
            Fault::Status {
                status: 503,
                body: serde_json::json!({}),
                retry_after: None,
            },
        );
    }
    w.pipeline
        .run_period(crate::common::world::nov())
        .await
        .unwrap();
    assert_eq!(app.store.xero_creates_waiting().await.unwrap(), 2);
    // Every request to the Accounting API so far counts in today's budget.
    let used = api_requests(&w.sandboxes.xero) as u32;
    let clock: Arc<dyn Clock> = Arc::new(rebill::clock::SystemClock);
    // Three requests left today, one of them kept for the creates (two invoices: one batch).
    let c = xero_process(&app, &w.sandboxes.xero_url, clock, used + 3).await;
    for i in 0..2 {
        c.invoices_with_reference(&format!("RB-{i}")).await.unwrap();
    }
    let refused = c.invoices_with_reference("RB-2").await.unwrap_err();
    assert!(
        matches!(refused, XeroError::RateLimited { .. }),
        "the last request of the day is the creates': {refused}"
    );
    assert!(
        c.find_invoice_by_reference("RB-3").await.is_ok(),
        "a create's look-up may use it"
    );
}

async fn metrics_show_every_request_and_the_budgets_every_process_used(app: TestApp) {
    let w = build(&app).await;
    w.pipeline
        .run_period(crate::common::world::nov())
        .await
        .unwrap();
    let (addr, _) = rebill::http::serve(
        rebill::daemon::metrics::router(
            Arc::new(rebill::daemon::metrics::Metrics::default()),
            app.store.clone(),
        ),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    // Counted in this process (other tests share it): at least this run's.
    assert!(value("rebill_remote_requests_total{api=\"xero\",status=\"200\"} ") >= 2.0);
    assert!(value("rebill_remote_requests_total{api=\"autotask\",status=\"200\"} ") >= 2.0);
    value("rebill_remote_retries_total{api=\"xero\"} ");
    value("rebill_remote_rate_limit_waits_total{api=\"autotask\"} ");
    value("rebill_remote_rate_limit_wait_seconds_total{api=\"xero\"} ");
    // Read from the database: what every process on it used, each request the stand-in saw.
    let used = api_requests(&w.sandboxes.xero);
    assert!(used >= 2, "the create and the email");
    assert_eq!(
        value("rebill_remote_budget_used{api=\"xero\"} "),
        used as f64
    );
    assert_eq!(
        value("rebill_remote_budget_limit{api=\"xero\"} "),
        1_000_000.0,
        "the stand-ins' xero.requests_per_day"
    );
    assert!(value("rebill_remote_budget_used{api=\"autotask\"} ") >= 2.0);
}

fn at(secs: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap() + chrono::Duration::seconds(secs)
}

async fn a_request_counts_from_its_turn_until_a_window_after_its_answer(app: TestApp) {
    let windows = [budget::Window::new(2, Duration::from_secs(60))];
    let ask = Ask {
        budget: "xero:test",
        holder: "a",
        windows: &windows,
        at_once: None,
        lease: Duration::from_secs(35),
    };
    let s = &app.store;
    let first = s.take_budget(&ask, at(0)).await.unwrap().unwrap();
    let second = s.take_budget(&ask, at(0)).await.unwrap().unwrap();
    assert_eq!(
        s.take_budget(&ask, at(1)).await.unwrap(),
        Err(IN_FLIGHT_WAIT),
        "both still in flight: look again soon"
    );
    s.budget_answered(first, at(10)).await.unwrap();
    s.budget_answered(second, at(20)).await.unwrap();
    assert_eq!(
        s.take_budget(&ask, at(30)).await.unwrap(),
        Err(Duration::from_secs(40)),
        "the first leaves the window a minute after its answer"
    );
    let other = Ask {
        holder: "b",
        ..ask.clone()
    };
    assert!(
        s.take_budget(&other, at(69)).await.unwrap().is_err(),
        "another process sees the same count"
    );
    assert!(s.take_budget(&other, at(70)).await.unwrap().is_ok());
}

async fn a_dead_processs_request_leaves_the_at_once_count_when_its_lease_ends(app: TestApp) {
    let windows = [budget::Window::new(100, Duration::from_secs(60))];
    let ask = Ask {
        budget: "xero:test",
        holder: "dead",
        windows: &windows,
        at_once: Some(1),
        lease: Duration::from_secs(35),
    };
    let s = &app.store;
    s.take_budget(&ask, at(0)).await.unwrap().unwrap();
    let other = Ask {
        holder: "alive",
        ..ask.clone()
    };
    assert_eq!(
        s.take_budget(&other, at(10)).await.unwrap(),
        Err(IN_FLIGHT_WAIT),
        "one at once: the dead process's request is still in flight"
    );
    assert!(
        s.take_budget(&other, at(36)).await.unwrap().is_ok(),
        "its lease ended"
    );
}

async fn a_dead_process_of_this_machine_gives_its_turn_back_at_once(app: TestApp) {
    let windows = [budget::Window::new(100, Duration::from_secs(60))];
    // A process that ran on this machine and is gone (reaped).
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let me = budget::holder_name("t");
    let dead = me.replacen(&format!(":{}:", std::process::id()), &format!(":{pid}:"), 1);
    assert_ne!(dead, me);
    let ask = Ask {
        budget: "xero:test",
        holder: &dead,
        windows: &windows,
        at_once: Some(1),
        lease: Duration::from_secs(35),
    };
    let s = &app.store;
    s.take_budget(&ask, at(0)).await.unwrap().unwrap();
    let alive = Ask {
        holder: &me,
        ..ask.clone()
    };
    assert!(
        s.take_budget(&alive, at(1)).await.unwrap().is_ok(),
        "its holder is dead: the turn came back before the lease"
    );
    assert_eq!(
        s.take_budget(&alive, at(2)).await.unwrap(),
        Err(IN_FLIGHT_WAIT),
        "a live holder's turn is kept"
    );
}

backend_tests!(
    a_dead_process_of_this_machine_gives_its_turn_back_at_once,
    a_request_counts_from_its_turn_until_a_window_after_its_answer,
    a_dead_processs_request_leaves_the_at_once_count_when_its_lease_ends,
    two_processes_together_stay_within_xeros_60_a_minute,
    two_processes_together_send_at_most_five_at_once_to_xero,
    two_processes_together_stay_within_the_autotask_share,
    the_tenants_threshold_sets_the_share_every_process_paces_to,
    other_requests_leave_the_days_budget_to_the_invoice_creates_waiting,
    metrics_show_every_request_and_the_budgets_every_process_used,
);
