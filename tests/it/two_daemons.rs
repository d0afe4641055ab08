//! Two daemons on one PostgreSQL database (issue 13): the second starts mid-push, in a push longer
//! than the claim time (every remote write lands over a second after it is sent; claims last one
//! second and are renewed while their work is in flight). Every invoice, email and charge then
//! exists exactly once, nothing is lost, and reconcile is clean.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rebill::domain::{LedgerOutcome, OutboxStatus, RemoteSystem};
use rebill::sandbox::Fault;

use crate::common::TestApp;
use crate::common::world::{World, build};

fn daemon(env: &[(&'static str, String)], log: &std::path::Path) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebilld"));
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    c.env_remove("RUST_LOG")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    for (k, v) in env {
        c.env(k, v);
    }
    c.spawn().unwrap()
}

fn stop(mut child: Child, log: &std::path::Path) {
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a daemon did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(status.success(), "{text}");
}

/// Every remote write lands `late` after it is sent (and is answered then).
fn slow_writes(w: &World, late: Duration) {
    for _ in 0..10 {
        w.sandboxes
            .autotask
            .faults
            .push("POST", "/Charges", Fault::LateApply(late));
        w.sandboxes
            .xero
            .faults
            .push("PUT", "/Invoices", Fault::LateApply(late));
        w.sandboxes
            .xero
            .faults
            .push("POST", "/Email", Fault::LateApply(late));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(rebill_pg),
    ignore = "skipped: set REBILL_TEST_POSTGRES_URL to run on PostgreSQL"
)]
async fn two_daemons_on_postgres_the_second_started_mid_push_leave_everything_once() {
    TestApp::run_on_postgres(second_daemon_mid_push).await
}

async fn second_daemon_mid_push(app: TestApp) {
    let w = build(&app).await;
    slow_writes(&w, Duration::from_millis(1_500));
    let mut env = crate::crash::env(&w, &app.database_url);
    // The current period is due at once (catch-up at start); the outbox is looked at every second.
    env.push(("REBILL_SCHEDULE__CRON", "0 * * * * *".into()));
    env.push(("REBILL_SCHEDULE__OUTBOX_EVERY_SECS", "1".into()));
    // One charge at a time: the Autotask push alone lasts several claim times.
    env.push(("REBILL_AUTOTASK__MAX_CONCURRENT", "1".into()));
    let (log_a, log_b) = (app.dir.path().join("a.log"), app.dir.path().join("b.log"));
    let first = daemon(&env, &log_a);

    // Mid-push: a create has been sent and has not landed yet.
    let started = Instant::now();
    loop {
        let open = app.store.outbox(None).await.unwrap();
        if open
            .iter()
            .any(|e| e.status == OutboxStatus::InFlight && e.uncertain_since.is_some())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first daemon never started pushing: {}",
            std::fs::read_to_string(&log_a).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = daemon(&env, &log_b);

    // Both work until the outbox is empty and the period is done.
    let started = Instant::now();
    let periods = loop {
        let invoices = app.store.invoices(None, None).await.unwrap();
        let periods: BTreeSet<_> = invoices.iter().map(|i| i.period).collect();
        let mut done = !periods.is_empty() && app.store.outbox(None).await.unwrap().is_empty();
        for p in &periods {
            done = done && app.store.period_done(*p).await.unwrap();
        }
        if done {
            break periods;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the work never finished:\n{}\n{}",
            std::fs::read_to_string(&log_a).unwrap_or_default(),
            std::fs::read_to_string(&log_b).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::task::block_in_place(|| {
        stop(first, &log_a);
        stop(second, &log_b);
    });

    // 0 duplicates, 0 losses: each recorded invoice once in Xero, each email once, each charge
    // once, and every remote document is the ledger's.
    let invoices = app.store.invoices(None, None).await.unwrap();
    let remote = w.sandboxes.xero.invoices();
    let xero_invoices: Vec<_> = invoices
        .iter()
        .filter(|i| i.destination == RemoteSystem::Xero)
        .collect();
    assert!(!xero_invoices.is_empty());
    for inv in &xero_invoices {
        let live: Vec<_> = remote
            .iter()
            .filter(|r| r["Reference"] == inv.number.as_str() && r["Status"] != "VOIDED")
            .collect();
        assert_eq!(live.len(), 1, "{}: {live:#?}", inv.number);
        assert_eq!(
            live[0]["InvoiceID"].as_str(),
            inv.xero_invoice_id.as_deref()
        );
    }
    assert_eq!(remote.len(), xero_invoices.len(), "{remote:#?}");
    let emails = w.sandboxes.xero.emails();
    let distinct: BTreeSet<_> = emails.iter().collect();
    assert!(!emails.is_empty());
    assert_eq!(distinct.len(), emails.len(), "an email twice: {emails:?}");
    let ledger = app.store.ledger(None).await.unwrap();
    let charges = w.sandboxes.autotask.charges();
    assert!(!charges.is_empty());
    let markers: BTreeSet<_> = charges
        .iter()
        .map(|c| c["purchaseOrderNumber"].to_string())
        .collect();
    assert_eq!(markers.len(), charges.len(), "a charge twice: {charges:#?}");
    for c in &charges {
        let id = c["id"].to_string();
        assert!(
            ledger
                .iter()
                .any(|l| l.remote_id.as_deref() == Some(id.as_str())
                    && l.outcome == LedgerOutcome::Ok),
            "charge {id} is not in the ledger"
        );
    }
    for p in periods {
        let report = rebill::pipeline::reconcile(&w.pipeline, p).await.unwrap();
        assert!(report.is_clean(), "{p}: {report:#?}");
    }
}
