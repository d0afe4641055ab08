//! The admin CLI as a user drives it: exit codes and messages.
use std::path::Path;

use assert_cmd::Command;
use predicates::str::contains;

fn rebilld(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("rebilld").unwrap();
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env(
            "REBILL_DATABASE__URL",
            format!("sqlite://{}", dir.join("rebill.db").display()),
        )
        .arg("--actor")
        .arg("ops-anna");
    c
}

#[test]
fn a_config_error_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[invoices]\npayment_terms_days = \"soon\"\n",
    )
    .unwrap();
    rebilld(dir.path())
        .args(["--config", "bad.toml", "customer", "list"])
        .assert()
        .code(78)
        .stderr(contains("invoices.payment_terms_days"))
        .stderr(contains("bad.toml"));
    rebilld(dir.path())
        .env("REBILL_BUSINESS__TIMEZONE", "Mars/Base")
        .args(["customer", "list"])
        .assert()
        .code(78)
        .stderr(contains("business.timezone"));
}

#[test]
fn a_missing_secret_file_is_a_config_error_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[xero]\nclient_id = \"APP-ID\"\nclient_secret_file = \"/nonexistent/xero\"\n",
    )
    .unwrap();
    // Asked for only by a command that uses Xero.
    rebilld(dir.path())
        .args(["--config", "c.toml", "push"])
        .assert()
        .code(78)
        .stderr(contains("xero.client_secret_file"));
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"this is a spreadsheet, not a database\n".repeat(200);
    std::fs::write(dir.path().join("rebill.db"), &garbage).unwrap();
    rebilld(dir.path())
        .args(["customer", "list"])
        .assert()
        .failure()
        .stderr(contains("not a rebill database"));
    assert_eq!(
        std::fs::read(dir.path().join("rebill.db")).unwrap(),
        garbage
    );
}

#[test]
fn another_applications_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rebill.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        sqlx::query("CREATE TABLE invoices_of_someone_else (id INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    rebilld(dir.path())
        .args(["customer", "list"])
        .assert()
        .failure()
        .stderr(contains("not a rebill database"))
        .stderr(contains("invoices_of_someone_else"));
}

#[test]
fn customer_import_reports_each_bad_row_by_line_and_keeps_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("customers.csv"),
        "external_ref,name,email,target,autotask_company_id\n\
         c1,Acme,ops@acme.example,xero,\n\
         c2,,x@y.example,xero,\n\
         c3,Beta,,autotask,\n\
         c4,Gamma,,autotask,175\n",
    )
    .unwrap();
    rebilld(dir.path())
        .args(["customer", "import", "customers.csv"])
        .assert()
        .failure()
        .stderr(contains("customers.csv:3: `name` is missing"))
        .stderr(contains(
            "customers.csv:4: `autotask_company_id` is missing",
        ))
        .stdout(contains("2 created"));
    // Idempotent: the same file again creates nothing new.
    rebilld(dir.path())
        .args(["customer", "import", "customers.csv"])
        .assert()
        .failure()
        .stdout(contains("0 created, 0 updated, 2 unchanged"));
    rebilld(dir.path())
        .args(["--json", "customer", "list"])
        .assert()
        .success()
        .stdout(contains("\"Acme\""))
        .stdout(contains("\"Gamma\""));
}

#[test]
fn assigning_a_parent_service_fails_with_the_reason_and_the_audit_names_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("services.json"),
        r#"[
  {"external_ref": "child", "parent_ref": "prov", "name": "SIP 1", "rebill_enabled": true, "monthly_price": "49.95",
   "users": [{"user_ref": "0299990001", "label": "Reception"}]},
  {"external_ref": "prov", "name": "VoIP Service Providers", "rebill_enabled": true}
]"#,
    )
    .unwrap();
    rebilld(dir.path())
        .args(["service", "import", "services.json"])
        .assert()
        .success()
        .stdout(contains("2 created"));
    rebilld(dir.path())
        .args([
            "customer",
            "add",
            "--name",
            "Acme",
            "--email",
            "a@acme.example",
        ])
        .assert()
        .success();
    rebilld(dir.path())
        .args(["service", "assign", "1", "--customer", "1"])
        .assert()
        .failure()
        .stderr(contains("VoIP Service Providers"))
        .stderr(contains("parent"));
    rebilld(dir.path())
        .args(["service", "assign", "2", "--customer", "1"])
        .assert()
        .success()
        .stdout(contains("ASSIGNED"));
    rebilld(dir.path())
        .args(["service", "unassign", "2"])
        .assert()
        .failure()
        .stderr(contains("exclude it first"));
    rebilld(dir.path())
        .args(["audit", "--entity", "assignment"])
        .assert()
        .success()
        .stdout(contains("ops-anna"));
}

/// A CDR file of `rows` calls of one user, in October 2026.
fn cdr_file(dir: &Path, rows: usize) -> std::path::PathBuf {
    let mut text = String::from(
        "call_id,user,start,duration,destination,call_type,cost,direction,disposition\n",
    );
    for i in 0..rows {
        text.push_str(&format!(
            "k{i},0299990001,2026-10-05T{:02}:{:02}:00+11:00,60,0412345678,mobile,0.10,out,ANSWERED\n",
            i / 60,
            i % 60
        ));
    }
    let path = dir.join("october.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `rebilld cdr import` inside a pseudo-terminal (util-linux `script`), as an operator would.
fn import_on_a_terminal(dir: &Path, file: &Path, extra: &str) -> String {
    let command = format!(
        "{} cdr import {extra} {}",
        env!("CARGO_BIN_EXE_rebilld"),
        file.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env(
            "REBILL_DATABASE__URL",
            format!("sqlite://{}", dir.join("rebill.db").display()),
        )
        .env("REBILL_CDR__BATCH_ROWS", "100")
        .output()
        .expect("util-linux `script` runs the import in a pseudo-terminal");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_cdr_import_shows_a_progress_bar_on_a_terminal_and_only_the_report_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let file = cdr_file(dir.path(), 250);

    let shown = import_on_a_terminal(dir.path(), &file, "");
    assert!(
        shown.contains("100 rows") && shown.contains("KiB/19.74 KiB"),
        "{shown}"
    );
    assert!(shown.contains("250 rows read, 250 imported"), "{shown}");

    let json = import_on_a_terminal(dir.path(), &file, "--json");
    assert!(!json.contains("KiB"), "--json shows no bar: {json}");
    assert!(json.contains("\"duplicates\":250"), "{json}");

    let piped = rebilld(dir.path())
        .env("REBILL_CDR__BATCH_ROWS", "100")
        .args(["cdr", "import"])
        .arg(&file)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&piped.stdout),
        String::from_utf8_lossy(&piped.stderr)
    );
    assert!(!all.contains("KiB"), "no bar without a terminal: {all}");
    assert!(
        all.contains("250 rows read, 0 imported, 250 duplicates"),
        "{all}"
    );
}
