//! Shutdown (issue 13): on SIGTERM `rebilld run` (and `push`) finishes the action in flight,
//! releases the claims it had not started, and exits within the grace; a restart sends the rest,
//! and nothing twice.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rebill::domain::{OutboxAction, OutboxStatus};
use rebill::sandbox::Fault;

use crate::common::TestApp;
use crate::common::world::build;

fn rebilld(env: &[(&'static str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebilld"));
    c.env_remove("RUST_LOG")
        .args(["run", "--period", "2026-11"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_push_finishes_the_action_in_flight_and_releases_the_rest() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let mut env = crate::crash::env(&w, &app.database_url);
    // Claims far longer than the test: a restart must not need them to expire.
    env.retain(|(k, _)| *k != "REBILL_SCHEDULE__CLAIM_SECS");
    env.push(("REBILL_SCHEDULE__CLAIM_SECS", "600".into()));
    env.push(("REBILL_SCHEDULE__SHUTDOWN_TIMEOUT_SECS", "20".into()));
    // One charge at a time, the first one slow: the second is claimed and not yet started.
    env.push(("REBILL_AUTOTASK__MAX_CONCURRENT", "1".into()));
    w.sandboxes.autotask.faults.push(
        "POST",
        "/Charges",
        Fault::LateApply(Duration::from_millis(1500)),
    );
    let mut child = rebilld(&env).spawn().unwrap();

    // Mid-push: the slow create has been sent (its entry is marked uncertain while in flight).
    let started = Instant::now();
    loop {
        let open = app.store.outbox(None).await.unwrap();
        if open.iter().any(|e| {
            e.action == OutboxAction::AutotaskCharge
                && e.status == OutboxStatus::InFlight
                && e.uncertain_since.is_some()
        }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the Autotask create never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let signalled = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(20),
            "did not exit within the grace"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The action in flight finished: the slow charge was created and recorded.
    assert_eq!(w.sandboxes.autotask.charges().len(), 1, "{stdout}");
    let open = app.store.outbox(None).await.unwrap();
    assert!(
        open.iter().all(|e| e.status != OutboxStatus::InFlight),
        "nothing stays claimed: {open:#?}"
    );
    assert!(
        open.iter()
            .any(|e| e.action == OutboxAction::AutotaskCharge && e.status == OutboxStatus::Pending),
        "the charge not started waits: {open:#?}"
    );

    // The restart (at once: no claim to wait for) sends the rest, nothing twice.
    let again = tokio::task::block_in_place(|| rebilld(&env).output().unwrap());
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let charges = w.sandboxes.autotask.charges();
    let mut markers: Vec<&str> = charges
        .iter()
        .map(|c| c["purchaseOrderNumber"].as_str().unwrap_or(""))
        .collect();
    markers.sort_unstable();
    markers.dedup();
    assert_eq!((charges.len(), markers.len()), (2, 2), "{charges:#?}");
    let mut refs: Vec<String> = w
        .sandboxes
        .xero
        .invoices()
        .iter()
        .map(|i| i["Reference"].to_string())
        .collect();
    refs.sort_unstable();
    refs.dedup();
    assert_eq!((w.sandboxes.xero.invoices().len(), refs.len()), (2, 2));
    assert_eq!(w.sandboxes.xero.emails().len(), 1);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
}
