//! Crash safety: the process is aborted (as SIGKILL would stop it) at every step boundary of a
//! run, restarted, and the remote systems end exactly as after an uninterrupted run: no duplicate
//! invoice, email or charge, nothing lost.

use std::process::Command;

use crate::common::TestApp;
use crate::common::world::{World, build};

pub(crate) fn env(w: &World, database_url: &str) -> Vec<(&'static str, String)> {
    let x = &w.sandboxes.xero_url;
    let a = &w.sandboxes.autotask_url;
    vec![
        ("REBILL_DATABASE__URL", database_url.to_string()),
        ("REBILL_XERO__CLIENT_ID", "sandbox-client".into()),
        ("REBILL_XERO__CLIENT_SECRET", "sandbox-client-secret".into()),
        (
            "REBILL_XERO__TOKEN_KEY",
            rebill::sandbox::SANDBOX_TOKEN_KEY.into(),
        ),
        ("REBILL_XERO__API_URL", format!("{x}/api.xro/2.0")),
        ("REBILL_XERO__IDENTITY_URL", x.clone()),
        ("REBILL_XERO__TOKEN_URL", format!("{x}/connect/token")),
        (
            "REBILL_AUTOTASK__USERNAME",
            rebill::sandbox::autotask::USERNAME.into(),
        ),
        (
            "REBILL_AUTOTASK__SECRET",
            rebill::sandbox::autotask::SECRET.into(),
        ),
        (
            "REBILL_AUTOTASK__INTEGRATION_CODE",
            rebill::sandbox::autotask::INTEGRATION_CODE.into(),
        ),
        (
            "REBILL_AUTOTASK__ZONE_LOOKUP_URL",
            format!("{a}/atservicesrest/v1.0/zoneInformation"),
        ),
        ("REBILL_SCHEDULE__CLAIM_SECS", "1".into()),
        // A create cut short by the crash is looked for by its marker once this has passed.
        ("REBILL_AUTOTASK__SETTLE_SECS", "1".into()),
        ("REBILL_SCHEDULE__LEASE_SECS", "1".into()),
    ]
}

fn run(w: &World, db: &str, crash_at: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebilld"));
    c.env_remove("RUST_LOG")
        .args(["run", "--period", "2026-11"]);
    for (k, v) in env(w, db) {
        c.env(k, v);
    }
    if let Some(p) = crash_at {
        c.env("REBILL_CRASH_AT", p);
    }
    c.output().unwrap()
}

/// What the stand-ins hold, comparably: (reference, subtotal) of invoices, emails sent,
/// (marker, unit price) of charges.
pub(crate) type RemoteState = (Vec<(String, String)>, usize, Vec<(String, String)>);

pub(crate) fn remote_state(w: &World) -> RemoteState {
    let mut invoices: Vec<(String, String)> = w
        .sandboxes
        .xero
        .invoices()
        .iter()
        .map(|i| (i["Reference"].to_string(), i["SubTotal"].to_string()))
        .collect();
    invoices.sort();
    let mut charges: Vec<(String, String)> = w
        .sandboxes
        .autotask
        .charges()
        .iter()
        .map(|c| {
            (
                c["purchaseOrderNumber"].to_string(),
                c["unitPrice"].to_string(),
            )
        })
        .collect();
    charges.sort();
    (invoices, w.sandboxes.xero.emails().len(), charges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_step_then_a_restart_ends_as_an_uninterrupted_run() {
    let reference = {
        let app = TestApp::sqlite().await;
        let w = build(&app).await;
        let db = app.database_url.clone();
        let out = tokio::task::block_in_place(|| run(&w, &db, None));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        remote_state(&w)
    };
    assert_eq!(reference.0.len(), 2);
    assert_eq!(reference.1, 1);
    assert_eq!(reference.2.len(), 2);
    for point in [
        "after_record",
        "xero_created_before_ledger",
        "xero_mid_batch",
        "emailed_before_ledger",
        "charge_created_before_ledger",
    ] {
        let app = TestApp::sqlite().await;
        let w = build(&app).await;
        let db = app.database_url.clone();
        let crashed = tokio::task::block_in_place(|| run(&w, &db, Some(point)));
        assert!(
            !crashed.status.success(),
            "{point}: the process was aborted"
        );
        assert!(String::from_utf8_lossy(&crashed.stderr).contains(point));
        // The claim and the lease of the dead process expire; the restart finishes the work.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let again = tokio::task::block_in_place(|| run(&w, &db, None));
        assert!(
            again.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(remote_state(&w), reference, "after a crash at {point}");
        let open = app.store.outbox(None).await.unwrap();
        assert!(open.is_empty(), "{point}: nothing left undone: {open:?}");
    }
}

/// Two processes on one PostgreSQL database: the first is killed mid-run (after some Xero invoices
/// were created and before others), the second takes over the period and finishes it; every
/// invoice, email and charge exists exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(rebill_pg),
    ignore = "skipped: set REBILL_TEST_POSTGRES_URL to run on PostgreSQL"
)]
async fn on_postgres_a_second_process_finishes_the_run_of_one_killed_mid_run() {
    TestApp::run_on_postgres(a_second_process_finishes_the_run_of_one_killed_mid_run).await
}

async fn a_second_process_finishes_the_run_of_one_killed_mid_run(app: TestApp) {
    let w = build(&app).await;
    let first = tokio::task::block_in_place(|| run(&w, &app.database_url, Some("xero_mid_batch")));
    assert!(
        !first.status.success(),
        "the first process was killed mid-run"
    );
    assert_eq!(
        w.sandboxes.xero.invoices().len(),
        2,
        "its batch reached Xero"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let second = tokio::task::block_in_place(|| run(&w, &app.database_url, None));
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let (invoices, emails, charges) = remote_state(&w);
    assert_eq!(invoices.len(), 2);
    assert_eq!(emails, 1);
    assert_eq!(charges.len(), 2);
    assert!(app.store.outbox(None).await.unwrap().is_empty());
    assert!(
        app.store
            .period_done(rebill::domain::Period::parse("2026-11").unwrap())
            .await
            .unwrap()
    );
}
