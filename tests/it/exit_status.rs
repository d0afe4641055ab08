//! The exit status contract (issue 15), driven through the real binary against the stand-ins:
//! 0 done; 1 a remote action failed or a difference found; 2 usage; 75 parked for a rate limit or
//! the period held by another process; 78 configuration (see `cli_core`).

use std::process::{Command, Output};

use rebill::domain::Period;
use rebill::sandbox::Fault;

use crate::common::TestApp;
use crate::common::world::{World, build};

fn env(w: &World, database_url: &str) -> Vec<(&'static str, String)> {
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
        ("REBILL_XERO__RETRY_BASE_MS", "10".into()),
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
    ]
}

/// Runs `rebilld ARGS` on the world's database and stand-ins.
fn rebilld(app: &TestApp, w: &World, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebilld"));
    c.current_dir(app.dir.path())
        .env_remove("RUST_LOG")
        .args(["--actor", "ops-anna"])
        .args(args);
    for (k, v) in env(w, &app.database_url) {
        c.env(k, v);
    }
    tokio::task::block_in_place(|| c.output().unwrap())
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn said(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn refused_by_xero() -> Fault {
    Fault::Status {
        status: 400,
        body: serde_json::json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [
            {"Message": "The contact has been archived."}]}]}),
        retry_after: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_action_exits_1_in_run_status_and_outbox_list_until_retried_and_sent() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    w.sandboxes
        .xero
        .faults
        .push("PUT", "/Invoices", refused_by_xero());

    let run = rebilld(&app, &w, &["run", "--period", "2026-11"]);
    assert_eq!(code(&run), 1, "{}", said(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("failed"),
        "{}",
        said(&run)
    );
    let status = rebilld(&app, &w, &["status"]);
    assert_eq!(code(&status), 1, "{}", said(&status));

    let list = rebilld(&app, &w, &["--json", "outbox", "list", "--failed"]);
    assert_eq!(code(&list), 1, "{}", said(&list));
    let failed: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert!(!failed.is_empty(), "{}", said(&list));
    for f in &failed {
        assert_eq!(f["status"], "failed", "{f}");
        assert_eq!(f["action"], "xero_invoice", "{f}");
        assert!(f["invoice"].as_str().is_some_and(|n| !n.is_empty()), "{f}");
    }

    for f in &failed {
        let id = f["id"].to_string();
        let retry = rebilld(&app, &w, &["outbox", "retry", &id]);
        assert_eq!(code(&retry), 0, "{}", said(&retry));
    }
    let push = rebilld(&app, &w, &["push"]);
    assert_eq!(code(&push), 0, "{}", said(&push));
    assert_eq!(w.sandboxes.xero.invoices().len(), 2);
    assert_eq!(w.sandboxes.xero.emails().len(), 1, "the email followed");
    let status = rebilld(&app, &w, &["status"]);
    assert_eq!(code(&status), 0, "{}", said(&status));
    let list = rebilld(&app, &w, &["outbox", "list"]);
    assert_eq!(code(&list), 0, "{}", said(&list));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_parked_for_a_rate_limit_exits_75_and_is_not_a_failure() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    w.sandboxes.xero.faults.push(
        "PUT",
        "/Invoices",
        Fault::Status {
            status: 429,
            body: serde_json::json!({"Title": "Too Many Requests"}),
            retry_after: Some(3600),
        },
    );
    let run = rebilld(&app, &w, &["run", "--period", "2026-11"]);
    assert_eq!(code(&run), 75, "{}", said(&run));
    assert!(w.sandboxes.xero.invoices().is_empty());
    let status = rebilld(&app, &w, &["status"]);
    assert_eq!(code(&status), 0, "parked is not failed: {}", said(&status));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_exits_0_when_clean_and_1_on_a_difference() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let run = rebilld(&app, &w, &["run", "--period", "2026-11"]);
    assert_eq!(code(&run), 0, "{}", said(&run));
    let clean = rebilld(&app, &w, &["reconcile", "--period", "2026-11"]);
    assert_eq!(code(&clean), 0, "{}", said(&clean));
    let reference = w.sandboxes.xero.invoices()[0]["Reference"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandboxes.xero.void(&reference);
    let differs = rebilld(&app, &w, &["reconcile", "--period", "2026-11"]);
    assert_eq!(code(&differs), 1, "{}", said(&differs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_of_a_customer_that_does_not_exist_exits_1_naming_it() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let out = rebilld(
        &app,
        &w,
        &["--resync", "--period", "2026-11", "--customer", "999"],
    );
    assert_eq!(code(&out), 1, "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("999") && err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_with_no_wait_exits_75_while_another_process_holds_the_period() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    // Another process's lease, valid until long after this test.
    let far: chrono::DateTime<chrono::Utc> = "2100-01-01T00:00:00Z".parse().unwrap();
    assert!(
        app.store
            .try_acquire_period_lease(
                Period::parse("2026-11").unwrap(),
                "another-host:1",
                far,
                chrono::Duration::hours(1),
            )
            .await
            .unwrap()
    );
    let out = rebilld(&app, &w, &["--resync", "--period", "2026-11", "--no-wait"]);
    assert_eq!(code(&out), 75, "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another process"),
        "{}",
        said(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_whose_push_is_refused_exits_1() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let run = rebilld(&app, &w, &["run", "--period", "2026-11"]);
    assert_eq!(code(&run), 0, "{}", said(&run));
    // An amount edited in Xero: the resync repairs it with an update, and Xero refuses that.
    let reference = w.sandboxes.xero.invoices()[0]["Reference"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandboxes
        .xero
        .tamper_amount(&reference, rust_decimal::Decimal::new(1, 0));
    w.sandboxes
        .xero
        .faults
        .push("POST", "/Invoices", refused_by_xero());
    let resync = rebilld(&app, &w, &["--resync", "--period", "2026-11"]);
    assert_eq!(code(&resync), 1, "{}", said(&resync));
}

/// A duplicate found in Xero is removed by a resync, and the command says so: ops must see a
/// removal wherever it happened, not only in `--json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_that_removes_a_duplicate_says_so() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let run = rebilld(&app, &w, &["run", "--period", "2026-11"]);
    assert_eq!(code(&run), 0, "{}", said(&run));
    let reference = w.sandboxes.xero.invoices()[0]["Reference"]
        .as_str()
        .unwrap()
        .to_string();
    w.sandboxes.xero.plant_duplicate(&reference).unwrap();
    let resync = rebilld(&app, &w, &["--resync", "--period", "2026-11"]);
    assert_eq!(code(&resync), 0, "{}", said(&resync));
    assert!(
        String::from_utf8_lossy(&resync.stdout).contains("removed 1 duplicate(s)"),
        "{}",
        said(&resync)
    );
}

#[test]
fn the_man_page_and_the_help_document_every_exit_status() {
    let man = Command::new(env!("CARGO_BIN_EXE_rebilld"))
        .arg("man")
        .output()
        .unwrap();
    assert!(man.status.success());
    let help = Command::new(env!("CARGO_BIN_EXE_rebilld"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    for out in [&man.stdout, &help.stdout] {
        let text = String::from_utf8_lossy(out);
        assert!(text.contains("Exit status"), "{text}");
        for needle in ["EX_TEMPFAIL", "EX_CONFIG", "75", "78", "reconcile"] {
            assert!(text.contains(needle), "{needle} missing in:\n{text}");
        }
    }
}

#[test]
fn a_skip_without_a_reason_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rebilld"))
        .current_dir(dir.path())
        .env(
            "REBILL_DATABASE__URL",
            format!("sqlite://{}", dir.path().join("rebill.db").display()),
        )
        .args(["outbox", "skip", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", said(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_show_prints_the_link_that_opens_the_invoice_in_xero() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let run = rebilld(&app, &w, &["run", "--period", "2026-11"]);
    assert_eq!(code(&run), 0, "{}", said(&run));
    let remote = &w.sandboxes.xero.invoices()[0];
    let number = remote["Reference"].as_str().unwrap();
    let id = remote["InvoiceID"].as_str().unwrap();
    let show = rebilld(&app, &w, &["invoice", "show", number]);
    assert_eq!(code(&show), 0, "{}", said(&show));
    let link = format!("https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={id}");
    assert!(
        String::from_utf8_lossy(&show.stdout).contains(&format!("open in Xero: {link}")),
        "{}",
        said(&show)
    );
    let json = rebilld(&app, &w, &["--json", "invoice", "show", number]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["xero_url"], link.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_email_exits_0_once_sent_and_1_for_a_disabled_customer() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let run = rebilld(&app, &w, &["run", "--period", "2026-11"]);
    assert_eq!(code(&run), 0, "{}", said(&run));
    let number = |c: rebill::domain::CustomerId| {
        let store = app.store.clone();
        async move {
            store
                .invoices(Some(Period::parse("2026-11").unwrap()), Some(c))
                .await
                .unwrap()[0]
                .number
                .clone()
        }
    };
    let enabled = number(w.enabled.id).await;
    let sent = rebilld(&app, &w, &["invoice", "email", &enabled]);
    assert_eq!(code(&sent), 0, "{}", said(&sent));
    assert_eq!(w.sandboxes.xero.emails().len(), 2);
    let disabled = number(w.disabled.id).await;
    let refused = rebilld(&app, &w, &["invoice", "email", &disabled]);
    assert_eq!(code(&refused), 1, "{}", said(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("disabled"),
        "{}",
        said(&refused)
    );
    assert_eq!(w.sandboxes.xero.emails().len(), 2);
}
