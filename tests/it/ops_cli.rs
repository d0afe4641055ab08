//! Operating the CLI as on-call does (issue 15): linking to Xero in all three ways, pipes that
//! close early, tables that read right, backups while the daemon writes, private database files.
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use chrono::TimeZone;
use predicates::str::contains;
use rebill::domain::{BillingTarget, NewCustomer, NonEmpty};
use rebill::sandbox::Sandboxes;

use crate::common::TestApp;

fn db_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("rebill.db").display())
}

fn rebilld(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("rebilld").unwrap();
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env("REBILL_DATABASE__URL", db_url(dir))
        .arg("--actor")
        .arg("ops-anna");
    c
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("rebilld")
}

/// A config file whose Xero section talks to the stand-in at `xero_url` (custom connection), its
/// secrets in files beside it as the README says.
fn xero_config_file(dir: &Path, xero_url: &str) -> PathBuf {
    let secret = dir.join("xero.client_secret");
    std::fs::write(&secret, "sandbox-client-secret").unwrap();
    let key = dir.join("xero.token_key");
    std::fs::write(&key, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
    let path = dir.join("rebill.toml");
    std::fs::write(
        &path,
        format!(
            "[xero]\nclient_id = \"sandbox-client\"\nclient_secret_file = \"{}\"\ntoken_key_file = \"{}\"\n\
             api_url = \"{xero_url}/api.xro/2.0\"\nidentity_url = \"{xero_url}\"\n\
             token_url = \"{xero_url}/connect/token\"\nretry_base_ms = 10\ntimeout_secs = 5\n",
            secret.display(),
            key.display()
        ),
    )
    .unwrap();
    path
}

fn json_out(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_link_xero_takes_create_contact_number_and_contact_id() {
    let sb = Sandboxes::start(0, 0).await.unwrap();
    let existing = sb.xero.add_contact("Existing Pty Ltd", None);
    let url = sb.xero_url.clone();
    let existing_for_cmd = existing.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cfg = xero_config_file(d, &url);
        let run = |args: &[&str]| {
            rebilld(d)
                .arg("--config")
                .arg(&cfg)
                .arg("--json")
                .args(args)
                .output()
                .unwrap()
        };
        for (name, reference) in [("Acme", "C-100"), ("Beta", "C-200"), ("Gamma", "C-300")] {
            json_out(&run(&[
                "customer",
                "add",
                "--name",
                name,
                "--external-ref",
                reference,
            ]));
        }
        // --create makes the contact from customer 1 (its ContactNumber is the external ref).
        let created = json_out(&run(&["customer", "link-xero", "1", "--create"]));
        // --contact-number finds that contact again for customer 2.
        let by_number = json_out(&run(&[
            "customer",
            "link-xero",
            "2",
            "--contact-number",
            "C-100",
        ]));
        // --contact-id links customer 3 to a contact made in Xero.
        let by_id = json_out(&run(&[
            "customer",
            "link-xero",
            "3",
            "--contact-id",
            &existing_for_cmd,
        ]));
        (created, by_number, by_id)
    })
    .await
    .unwrap();
    let contact = |v: &serde_json::Value| v["target"]["contact_id"].as_str().map(str::to_string);
    let (created, by_number, by_id) = outcome;
    let made = contact(&created).expect("customer 1 linked to a new contact");
    assert_ne!(made, existing);
    assert_eq!(contact(&by_number), Some(made), "{by_number}");
    assert_eq!(contact(&by_id), Some(existing), "{by_id}");
}

#[test]
fn a_reader_that_stops_reading_ends_the_command_quietly_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    rebilld(dir.path())
        .args(["customer", "add", "--name", "Acme"])
        .assert()
        .success();
    let mut child = StdCommand::new(bin())
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("REBILL_DATABASE__URL", db_url(dir.path()))
        .args(["customer", "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head` that has already read what it wanted: the reading end is gone before the table.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "{stderr}");
}

#[test]
fn customer_list_aligns_wide_characters_by_display_width() {
    let dir = tempfile::tempdir().unwrap();
    for (name, email) in [
        ("東京商事", "info@tokyo.example"),
        ("Café 🍕", "pizza@cafe.example"),
        ("Acme", "ops@acme.example"),
    ] {
        rebilld(dir.path())
            .args(["customer", "add", "--name", name, "--email", email])
            .assert()
            .success();
    }
    let out = rebilld(dir.path())
        .args(["customer", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // The email column starts at the same terminal column on every row (CJK and emoji are two
    // columns wide each).
    let starts: Vec<usize> = text
        .lines()
        .skip(2)
        .map(|l| {
            // The email is the last column: it starts after the last space.
            let at = l.rfind(' ').expect("columns") + 1;
            display_width(&l[..at])
        })
        .collect();
    assert_eq!(starts.len(), 3, "{text}");
    assert!(starts.iter().all(|s| *s == starts[0]), "{text}");
}

/// Terminal columns: two for CJK ideographs and emoji, one for everything else used here.
fn display_width(s: &str) -> usize {
    s.chars()
        .map(|c| {
            let u = c as u32;
            if (0x4E00..=0x9FFF).contains(&u) || (0x1F300..=0x1FAFF).contains(&u) {
                2
            } else {
                1
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_list_sorts_numbers_as_numbers_and_dates_emails_in_the_business_zone() {
    let app = TestApp::sqlite().await;
    let mut ids = Vec::new();
    for name in ["Acme", "Beta"] {
        let c = app
            .store
            .add_customer(
                &app.actor(),
                &NewCustomer {
                    external_ref: None,
                    name: NonEmpty::parse("name", name).unwrap(),
                    enabled: true,
                    target: BillingTarget::Xero { contact_id: None },
                    email: None,
                    details: Default::default(),
                    payment_terms_days: None,
                },
            )
            .await
            .unwrap();
        ids.push(c.id.get());
    }
    let rebill::store::Db::Sqlite(pool) = app.store.db() else {
        unreachable!()
    };
    // RB-10 recorded first; emailed at 02:00 on 1 January in Sydney (15:00 UTC on 31 December).
    let emailed = chrono::Utc
        .with_ymd_and_hms(2026, 12, 31, 15, 0, 0)
        .unwrap();
    for (customer, number) in [(ids[0], "RB-10"), (ids[1], "RB-7")] {
        sqlx::query(
            "INSERT INTO invoices (customer_id, period, number, destination, issue_date, due_date, \
             currency, total_micros, email_decision, emailed_at, created_at, updated_at) \
             VALUES ($1, '2027-01', $2, 'xero', '2027-01-01', '2027-01-15', 'AUD', 0, 'send', $3, $3, $3)",
        )
        .bind(customer)
        .bind(number)
        .bind(emailed)
        .execute(pool)
        .await
        .unwrap();
    }
    let dir = app.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        rebilld(&dir)
            .args(["invoice", "list", "--period", "2027-01"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let seven = text.find("RB-7").expect(&text);
    let ten = text.find("RB-10").expect(&text);
    assert!(seven < ten, "RB-7 must come before RB-10:\n{text}");
    assert_eq!(text.matches("emailed 2027-01-01").count(), 2, "{text}");
    assert!(!text.contains("2026-12-31"), "{text}");
}

#[test]
fn service_assign_without_starts_on_begins_on_the_first_of_the_month() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("catalogue.csv"),
        "external_ref,name,kind,rebill_enabled,monthly_price,monthly_cost\n\
         svc-1,SIP trunk,sip,yes,30,10\n",
    )
    .unwrap();
    rebilld(dir.path())
        .args(["service", "import", "catalogue.csv"])
        .assert()
        .success();
    rebilld(dir.path())
        .args(["customer", "add", "--name", "Acme"])
        .assert()
        .success();
    let out = rebilld(dir.path())
        .args(["--json", "service", "assign", "1", "--customer", "1"])
        .output()
        .unwrap();
    let v = json_out(&out);
    let starts = v["starts_on"].as_str().expect("starts_on");
    assert!(starts.ends_with("-01"), "starts on {starts}, not the 1st");
}

/// Adds customers in a loop on its own connection, remembering each one once committed.
async fn write_customers_until(
    app_store: rebill::store::Store,
    actor: rebill::store::Actor,
    committed: std::sync::Arc<std::sync::Mutex<Vec<i64>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        let c = app_store
            .add_customer(
                &actor,
                &NewCustomer {
                    external_ref: Some(format!("loop-{n}")),
                    name: NonEmpty::parse("name", &format!("Customer {n}")).unwrap(),
                    enabled: true,
                    target: BillingTarget::Xero { contact_id: None },
                    email: None,
                    details: Default::default(),
                    payment_terms_days: None,
                },
            )
            .await
            .unwrap();
        committed.lock().unwrap().push(c.id.get());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_another_connection_writes_holds_every_committed_row() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let app = TestApp::sqlite().await;
    let committed = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_customers_until(
        app.store.clone(),
        app.actor(),
        committed.clone(),
        stop.clone(),
    ));
    while committed.lock().unwrap().len() < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before: Vec<i64> = committed.lock().unwrap().clone();
    let dir = app.dir.path().to_path_buf();
    let copy = dir.join("backup.db");
    let copy_for_cmd = copy.clone();
    let out = tokio::task::spawn_blocking(move || {
        rebilld(&dir)
            .arg("backup")
            .arg(&copy_for_cmd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let during = committed.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    let all: Vec<i64> = committed.lock().unwrap().clone();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("integrity ok"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        during > before.len(),
        "the writer kept writing during the backup"
    );
    let copy_pool = sqlx::SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&copy)
            .read_only(true),
    )
    .await
    .unwrap();
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&copy_pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&copy_pool)
        .await
        .unwrap();
    assert!(migrations > 0);
    let in_copy: Vec<i64> = sqlx::query_scalar("SELECT id FROM customers ORDER BY id")
        .fetch_all(&copy_pool)
        .await
        .unwrap();
    copy_pool.close().await;
    for id in &before {
        assert!(
            in_copy.contains(id),
            "customer {id} committed before the backup is missing"
        );
    }
    // A snapshot: the copy holds a prefix of the committed rows, nothing half-written.
    assert_eq!(in_copy, all[..in_copy.len()].to_vec());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy holds what the database holds");
    }
}

#[test]
fn a_backup_never_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    rebilld(dir.path()).arg("migrate").assert().success();
    std::fs::write(dir.path().join("old.db"), b"last week's backup").unwrap();
    rebilld(dir.path())
        .args(["backup", "old.db"])
        .assert()
        .failure()
        .stderr(contains("old.db already exists"));
    assert_eq!(
        std::fs::read(dir.path().join("old.db")).unwrap(),
        b"last week's backup"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(rebill_pg),
    ignore = "skipped: set REBILL_TEST_POSTGRES_URL to run on PostgreSQL"
)]
async fn a_backup_of_postgresql_says_to_use_pg_dump_and_exits_2() {
    TestApp::run_on_postgres(|app: TestApp| async move {
        let url = app.database_url.clone();
        let dir = app.dir.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            rebilld(&dir)
                .env("REBILL_DATABASE__URL", &url)
                .args(["backup", "copy.db"])
                .assert()
                .code(2)
                .stderr(contains("pg_dump"));
            assert!(!dir.join("copy.db").exists());
        })
        .await
        .unwrap();
    })
    .await;
}

#[cfg(unix)]
#[test]
fn a_new_database_and_its_wal_and_shm_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // The daemon keeps the database open, so its -wal and -shm files exist while we look.
    let mut child = StdCommand::new("sh")
        .arg("-c")
        .arg("umask 022 && exec \"$0\"")
        .arg(bin())
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("REBILL_DATABASE__URL", db_url(dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let shm = dir.path().join("rebill.db-shm");
    let wal = dir.path().join("rebill.db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(shm.exists() && wal.exists()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let modes: Vec<(String, u32)> = ["rebill.db", "rebill.db-wal", "rebill.db-shm"]
        .iter()
        .map(|f| {
            let m = std::fs::metadata(dir.path().join(f))
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            (f.to_string(), m)
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    for (f, m) in modes {
        assert_eq!(m, 0o600, "{f} is {m:o}");
    }
}
