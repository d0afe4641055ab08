//! The unattended daemon: schedule and catch-up (with a test clock), leases, signals, metrics,
//! one SQLite daemon per file, and the systemd unit.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::TestApp;
use crate::common::world::build;
use chrono::{DateTime, Utc};
use rebill::clock::Clock;
use rebill::daemon::metrics::Metrics;
use rebill::daemon::schedule::Schedule;
use rebill::domain::Period;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn schedule() -> Schedule {
    Schedule::parse("0 0 2 1 * *", "Australia/Sydney".parse().unwrap()).unwrap()
}

async fn the_schedule_fires_the_run_once_at_its_local_time(app: TestApp) {
    let w = build(&app).await;
    let metrics = Metrics::default();
    // 2026-11-01 01:59 AEDT: not yet.
    let clock = &w.clock;
    clock.set(at("2026-10-31T14:59:00Z"));
    assert!(
        rebill::daemon::tick(&w.pipeline, &schedule(), &metrics)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(w.sandboxes.xero.invoices().is_empty());
    clock.set(at("2026-10-31T15:00:30Z")); // 02:00:30 AEDT
    let ran = rebill::daemon::tick(&w.pipeline, &schedule(), &metrics)
        .await
        .unwrap();
    assert_eq!(ran, vec![Period::parse("2026-11").unwrap()]);
    assert_eq!(w.sandboxes.xero.invoices().len(), 2);
    clock.set(at("2026-11-05T00:00:00Z"));
    assert!(
        rebill::daemon::tick(&w.pipeline, &schedule(), &metrics)
            .await
            .unwrap()
            .is_empty(),
        "no second run"
    );
    assert_eq!(w.sandboxes.xero.invoices().len(), 2);
    assert!(metrics.render().contains("rebill_runs_total 1"));
}

async fn missed_periods_are_caught_up_oldest_first_exactly_once(app: TestApp) {
    let w = build(&app).await;
    let metrics = Metrics::default();
    let sep = Period::parse("2026-09").unwrap();
    app.store
        .try_acquire_period_lease(sep, "old", w.clock.now(), chrono::Duration::seconds(1))
        .await
        .unwrap();
    app.store
        .mark_period_done(sep, w.clock.now())
        .await
        .unwrap();
    app.store.release_period_lease(sep, "old").await.unwrap();
    let clock = &w.clock;
    clock.set(at("2026-11-10T00:00:00Z"));
    let ran = rebill::daemon::tick(&w.pipeline, &schedule(), &metrics)
        .await
        .unwrap();
    assert_eq!(
        ran,
        vec![
            Period::parse("2026-10").unwrap(),
            Period::parse("2026-11").unwrap()
        ]
    );
    let again = rebill::daemon::tick(&w.pipeline, &schedule(), &metrics)
        .await
        .unwrap();
    assert!(again.is_empty());
    let runs = app.store.last_runs(10).await.unwrap();
    assert!(
        runs.iter()
            .all(|r| r.status == rebill::domain::RunStatus::Done),
        "{runs:?}"
    );
}

async fn a_dead_holders_lease_expires_and_another_daemon_finishes_the_period_once(app: TestApp) {
    let w = build(&app).await;
    let nov = Period::parse("2026-11").unwrap();
    let now = w.clock.now();
    // Daemon A takes the lease, records the run, claims the pushes, and dies.
    assert!(
        app.store
            .try_acquire_period_lease(nov, "daemon-a", now, chrono::Duration::seconds(60))
            .await
            .unwrap()
    );
    let a = w.pipeline.clone();
    // B cannot take it while A's lease holds…
    assert!(
        !app.store
            .try_acquire_period_lease(nov, "daemon-b", now, chrono::Duration::seconds(60))
            .await
            .unwrap()
    );
    // …but can once it expired.
    assert!(
        app.store
            .try_acquire_period_lease(
                nov,
                "daemon-b",
                now + chrono::Duration::seconds(61),
                chrono::Duration::seconds(60)
            )
            .await
            .unwrap()
    );
    app.store
        .release_period_lease(nov, "daemon-b")
        .await
        .unwrap();
    // A's half-done work: invoices recorded and pushes claimed by A, then A vanished.
    a.run_period(nov).await.unwrap();
    rebill::on_db!(app.store, p => sqlx::query(
        "UPDATE outbox SET status = 'in_flight', claimed_by = 'daemon-a', claimed_until = $1 WHERE status = 'done'")
        .bind(now - chrono::Duration::seconds(1))
        .execute(p).await.unwrap().rows_affected());
    let mut b = w.pipeline.clone();
    b.owner = "daemon-b".into();
    b.run_period(nov).await.unwrap();
    assert_eq!(w.sandboxes.xero.invoices().len(), 2, "each invoice once");
    assert_eq!(w.sandboxes.xero.emails().len(), 1, "each email once");
    assert_eq!(w.sandboxes.autotask.charges().len(), 2, "each charge once");
    assert!(app.store.period_done(nov).await.unwrap());
}

backend_tests!(
    the_schedule_fires_the_run_once_at_its_local_time,
    missed_periods_are_caught_up_oldest_first_exactly_once,
    a_dead_holders_lease_expires_and_another_daemon_finishes_the_period_once,
);

#[tokio::test]
async fn metrics_parse_as_prometheus_text() {
    let app = TestApp::sqlite().await;
    let m = std::sync::Arc::new(Metrics::default());
    m.record_run("2026-11", true, 1_790_000_000);
    let (addr, _h) = rebill::http::serve(
        rebill::daemon::metrics::router(m, app.store.clone()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.unwrap();
    let mut types = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        assert!(types.contains_key(name), "{name} has no TYPE line");
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(
                labels.starts_with('{') && labels.ends_with('}') && labels.contains("=\""),
                "{labels}"
            );
        }
    }
    assert!(text.contains("rebill_outbox_depth 0"));
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

fn daemon(db: &std::path::Path, extra: &[(&str, String)]) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebilld"));
    c.env_remove("RUST_LOG")
        .env("REBILL_DATABASE__URL", format!("sqlite://{}", db.display()))
        .env("REBILL_SCHEDULE__OUTBOX_EVERY_SECS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn sigterm(child: &Child) {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
}

fn wait(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rebill.db");
    let mut first = daemon(&db, &[]);
    let lock = std::path::PathBuf::from(format!("{}.daemon.lock", db.display()));
    for _ in 0..100 {
        if lock.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = daemon(&db, &[]).wait_with_output().unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr)
            .contains("another rebilld daemon is already running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    sigterm(&first);
    let status =
        wait(&mut first, Duration::from_secs(20)).expect("the first daemon stops on SIGTERM");
    assert!(status.success(), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_push_lets_the_action_finish_and_records_it() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let db = app.dir.path().join("rebill.db");
    // Every Xero create takes two seconds: SIGTERM arrives while the first is in flight.
    w.sandboxes.xero.faults.push(
        "PUT",
        "/Invoices",
        rebill::sandbox::Fault::Delay(Duration::from_secs(2)),
    );
    let x = &w.sandboxes.xero_url;
    let a = &w.sandboxes.autotask_url;
    let env = vec![
        ("REBILL_XERO__CLIENT_ID", "sandbox-client".to_string()),
        (
            "REBILL_XERO__CLIENT_SECRET",
            "sandbox-client-secret".to_string(),
        ),
        (
            "REBILL_XERO__TOKEN_KEY",
            rebill::sandbox::SANDBOX_TOKEN_KEY.to_string(),
        ),
        ("REBILL_XERO__API_URL", format!("{x}/api.xro/2.0")),
        ("REBILL_XERO__IDENTITY_URL", x.clone()),
        ("REBILL_XERO__TOKEN_URL", format!("{x}/connect/token")),
        (
            "REBILL_AUTOTASK__USERNAME",
            rebill::sandbox::autotask::USERNAME.to_string(),
        ),
        (
            "REBILL_AUTOTASK__SECRET",
            rebill::sandbox::autotask::SECRET.to_string(),
        ),
        (
            "REBILL_AUTOTASK__INTEGRATION_CODE",
            rebill::sandbox::autotask::INTEGRATION_CODE.to_string(),
        ),
        (
            "REBILL_AUTOTASK__ZONE_LOOKUP_URL",
            format!("{a}/atservicesrest/v1.0/zoneInformation"),
        ),
        // Due every minute: the current period is due at start (catch-up).
        ("REBILL_SCHEDULE__CRON", "0 * * * * *".to_string()),
    ];
    let mut child = daemon(&db, &env);
    for _ in 0..200 {
        if w.sandboxes.xero.requests() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || {
        let s = wait(&mut child, Duration::from_secs(30));
        (s, child)
    })
    .await
    .unwrap();
    let (status, child) = status;
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(status.expect("stopped").success(), "{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    // Whatever reached Xero is recorded locally: no invoice exists remotely without its ledger row.
    let remote = w.sandboxes.xero.invoices();
    let ledger = app.store.ledger(None).await.unwrap();
    for inv in &remote {
        let id = inv["InvoiceID"].as_str().unwrap();
        assert!(
            ledger.iter().any(|l| l.remote_id.as_deref() == Some(id)
                && l.outcome == rebill::domain::LedgerOutcome::Ok),
            "invoice {id} created but not recorded"
        );
    }
    assert!(!remote.is_empty(), "the in-flight create finished");
}

#[test]
fn the_unit_file_sets_what_the_readme_promises() {
    let unit = std::fs::read_to_string("config/rebilld.service").unwrap();
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "ProtectSystem=strict",
        "StateDirectory=rebill",
        "LoadCredential=xero.client_secret",
        "Restart=on-failure",
        "User=rebill",
    ] {
        assert!(unit.contains(key), "the unit sets {key}");
    }
}

/// Compiled in only where build.rs found `systemd-analyze`; elsewhere reported as ignored.
#[test]
#[cfg_attr(
    not(rebill_systemd_analyze),
    ignore = "skipped: systemd-analyze is not installed here"
)]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string("config/rebilld.service").unwrap();
    // Verify a copy whose ExecStart is this build (the install path does not exist here).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("rebilld.service");
    let unit = unit
        .replace("/usr/local/bin/rebilld", env!("CARGO_BIN_EXE_rebilld"))
        .lines()
        .filter(|l| !l.starts_with("Documentation="))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&copy, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("rebilld.service:"),
        "systemd-analyze verify: {text}"
    );
}

/// Polls a log file until it holds `needle` (the daemon logs to stderr, redirected there).
fn log_shows(log: &std::path::Path, needle: &str, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn sighup(child: &Child) {
    Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .unwrap();
}

#[test]
fn sighup_reloads_the_config_or_says_why_not_and_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rebill.db");
    let config = dir.path().join("rebill.toml");
    let log = dir.path().join("daemon.log");
    std::fs::write(&config, "[invoices]\npayment_terms_days = 14\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rebilld"))
        .env_remove("RUST_LOG")
        .env("REBILL_DATABASE__URL", format!("sqlite://{}", db.display()))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        log_shows(&log, "rebilld started", Duration::from_secs(30)),
        "the daemon started"
    );

    // A broken file: the reload is refused with the key and the reason, the old config stays.
    std::fs::write(&config, "[invoices]\npayment_terms_days = \"soon\"\n").unwrap();
    sighup(&child);
    assert!(
        log_shows(
            &log,
            "configuration not reloaded; keeping the old one",
            Duration::from_secs(20)
        ),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("invoices.payment_terms_days"), "{text}");
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running after a bad reload"
    );

    // A good file is taken.
    std::fs::write(&config, "[invoices]\npayment_terms_days = 30\n").unwrap();
    sighup(&child);
    assert!(
        log_shows(&log, "configuration reloaded", Duration::from_secs(20)),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    sigterm(&child);
    let status = wait(&mut child, Duration::from_secs(20)).expect("stops on SIGTERM");
    assert!(status.success());
}
