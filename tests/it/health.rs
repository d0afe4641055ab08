//! What on-call alerts on (issue 15): `/metrics` read from the database (it survives a restart),
//! the open outbox by system and state, and `/healthz` turning 503 when the database does not
//! answer or an action has stood failed longer than `metrics.failed_action_alert_secs`.

use std::sync::Arc;

use rebill::clock::{Clock, TestClock};
use rebill::daemon::metrics::{Health, Metrics, router_with};
use rebill::domain::Period;
use rebill::sandbox::Fault;

use crate::common::TestApp;
use crate::common::world::build;

async fn serve(app: &TestApp, clock: Arc<TestClock>) -> std::net::SocketAddr {
    let health = Health {
        clock,
        failed_action_alert: chrono::Duration::hours(1),
    };
    let (addr, _) = rebill::http::serve(
        router_with(Arc::new(Metrics::default()), app.store.clone(), health),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    addr
}

async fn health_is_503_once_an_action_has_stood_failed_longer_than_the_alert_time(app: TestApp) {
    let w = build(&app).await;
    w.sandboxes.xero.faults.push(
        "PUT",
        "/Invoices",
        Fault::Status {
            status: 400,
            body: serde_json::json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [
                {"Message": "The contact has been archived."}]}]}),
            retry_after: None,
        },
    );
    w.pipeline
        .run_period(Period::parse("2026-11").unwrap())
        .await
        .unwrap();
    let failed_at = app
        .store
        .outbox_health(w.clock.now())
        .await
        .unwrap()
        .oldest_failed
        .expect("an action failed");
    let clock = Arc::new(TestClock::at(failed_at + chrono::Duration::minutes(30)));
    let addr = serve(&app, clock.clone()).await;
    let get = |path: &'static str| async move {
        reqwest::get(format!("http://{addr}{path}")).await.unwrap()
    };
    assert_eq!(
        get("/healthz").await.status(),
        200,
        "failed 30 min ago: not yet"
    );
    let metrics = get("/metrics").await.text().await.unwrap();
    let failed: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rebill_outbox_actions{system=\"xero\",state=\"failed\"} "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .parse()
        .unwrap();
    assert!(failed >= 1, "{metrics}");
    assert!(
        metrics.contains("rebill_outbox_actions{system=\"autotask\",state=\"failed\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rebill_oldest_failed_action_age_seconds 1800"),
        "{metrics}"
    );
    clock.set(failed_at + chrono::Duration::hours(2));
    let h = get("/healthz").await;
    assert_eq!(h.status(), 503);
    assert!(h.text().await.unwrap().contains("failed"));
}

async fn metrics_read_the_last_successful_run_from_the_database_after_a_restart(app: TestApp) {
    let w = build(&app).await;
    w.pipeline
        .run_period(Period::parse("2026-11").unwrap())
        .await
        .unwrap();
    // A fresh process: nothing in memory.
    let addr = serve(&app, w.clock.clone()).await;
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("rebill_last_successful_run_timestamp_seconds{period=\"2026-11\"}"))
        .unwrap_or_else(|| panic!("{text}"));
    let at: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(at > 0, "{line}");
    assert!(
        text.contains("rebill_outbox_actions{system=\"xero\",state=\"pending\"} 0"),
        "{text}"
    );
}

async fn health_is_503_when_the_database_does_not_answer(app: TestApp) {
    let clock = Arc::new(TestClock::at("2026-12-01T13:30:00Z".parse().unwrap()));
    let addr = serve(&app, clock).await;
    let ok = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    app.store.close().await;
    let down = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(down.status(), 503);
    assert!(down.text().await.unwrap().contains("database"));
}

fn gauge(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .parse()
        .unwrap()
}

async fn metrics_show_when_the_xero_tokens_expire_and_a_revoked_grant(app: TestApp) {
    let w = build(&app).await;
    let clock = w.clock.clone();
    let addr = serve(&app, clock).await;
    let scrape = || async move {
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let none = scrape().await;
    assert_eq!(gauge(&none, "rebill_xero_grant_usable"), 0, "no grant yet");
    assert_eq!(
        gauge(&none, "rebill_xero_access_token_expiry_timestamp_seconds"),
        0
    );
    // An authorization-code grant (the tokens are never read for the metrics).
    let access_until: chrono::DateTime<chrono::Utc> = "2026-12-01T14:00:00Z".parse().unwrap();
    app.store
        .save_xero_grant(&rebill::store::xero::XeroTokenRow {
            grant_type: "authorization_code".into(),
            access_token: Some("sealed-access".into()),
            access_expires_at: Some(access_until),
            refresh_token: Some("sealed-refresh".into()),
            tenant_id: None,
            refresh_count: 0,
        })
        .await
        .unwrap();
    let times = app.store.xero_token_times().await.unwrap().unwrap();
    let text = scrape().await;
    assert_eq!(gauge(&text, "rebill_xero_grant_usable"), 1);
    assert_eq!(
        gauge(&text, "rebill_xero_access_token_expiry_timestamp_seconds"),
        access_until.timestamp()
    );
    assert_eq!(
        gauge(&text, "rebill_xero_refresh_token_expiry_timestamp_seconds"),
        (times.updated_at + chrono::Duration::days(60)).timestamp()
    );
    // Xero refused the grant: its tokens are cleared, and the gauge says so.
    app.store.revoke_xero_grant("sealed-refresh").await.unwrap();
    let revoked = scrape().await;
    assert_eq!(gauge(&revoked, "rebill_xero_grant_usable"), 0);
    assert_eq!(
        gauge(
            &revoked,
            "rebill_xero_refresh_token_expiry_timestamp_seconds"
        ),
        0
    );
}

backend_tests!(
    metrics_show_when_the_xero_tokens_expire_and_a_revoked_grant,
    health_is_503_once_an_action_has_stood_failed_longer_than_the_alert_time,
    metrics_read_the_last_successful_run_from_the_database_after_a_restart,
    health_is_503_when_the_database_does_not_answer,
);
