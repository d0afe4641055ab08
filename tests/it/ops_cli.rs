//! Operating the CLI as on-call does (issue 15): linking to Xero in all three ways, pipes that
//! close early, tables that read right, backups while the daemon writes, private database files.
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use chrono::TimeZone;
use predicates::prelude::PredicateBooleanExt;
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

/// A config file whose Autotask section talks to the stand-in at `url`, secrets in files.
fn autotask_config_file(dir: &Path, url: &str) -> PathBuf {
    use rebill::sandbox::autotask::{INTEGRATION_CODE, SECRET, USERNAME};
    std::fs::write(dir.join("autotask.secret"), SECRET).unwrap();
    std::fs::write(dir.join("autotask.integration_code"), INTEGRATION_CODE).unwrap();
    let path = dir.join("rebill.toml");
    std::fs::write(
        &path,
        format!(
            "[autotask]\nusername = \"{USERNAME}\"\nsecret_file = \"{}\"\nintegration_code_file = \"{}\"\n\
             zone_lookup_url = \"{url}/atservicesrest/v1.0/zoneInformation\"\nretry_base_ms = 10\ntimeout_secs = 5\n",
            dir.join("autotask.secret").display(),
            dir.join("autotask.integration_code").display(),
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_all_active_autotask_companies_skips_autotasks_own_company_and_disables_inactive_ones()
 {
    let sb = Sandboxes::start(0, 0).await.unwrap();
    // Autotask lists the tenant's own company, id 0, among the active ones.
    sb.autotask.insert(
        "companies",
        serde_json::json!({"id": 0, "companyName": "Our Own MSP", "isActive": true}),
    );
    sb.autotask.seed_company(175, "Acme Hosting");
    sb.autotask.insert(
        "companies",
        serde_json::json!({"id": 176, "companyName": "Closed Down Pty Ltd", "isActive": false}),
    );
    let url = sb.autotask_url.clone();
    let (all, inactive, listed) = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cfg = autotask_config_file(d, &url);
        let run = |args: &[&str]| {
            rebilld(d)
                .arg("--config")
                .arg(&cfg)
                .args(args)
                .output()
                .unwrap()
        };
        let all = run(&["customer", "import", "--from", "autotask", "--all-active"]);
        let inactive = run(&[
            "customer",
            "import",
            "--from",
            "autotask",
            "--company",
            "176",
        ]);
        let listed = run(&["--json", "customer", "list"]);
        (all, inactive, listed)
    })
    .await
    .unwrap();
    assert!(
        all.status.success(),
        "--all-active: {}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert!(
        inactive.status.success(),
        "--company 176: {}",
        String::from_utf8_lossy(&inactive.stderr)
    );
    let customers = json_out(&listed);
    let customers = customers.as_array().unwrap();
    let names: Vec<&str> = customers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Acme Hosting", "Closed Down Pty Ltd"],
        "{customers:?}"
    );
    assert_eq!(customers[0]["enabled"], true);
    assert_eq!(
        customers[1]["enabled"], false,
        "an inactive company comes in disabled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_to_an_autotask_company_that_does_not_exist_is_refused_naming_it() {
    let sb = Sandboxes::start(0, 0).await.unwrap();
    sb.autotask.seed_company(175, "Acme Hosting");
    let url = sb.autotask_url.clone();
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cfg = autotask_config_file(d, &url);
        rebilld(d)
            .args(["customer", "add", "--name", "Beta"])
            .assert()
            .success();
        rebilld(d)
            .arg("--config")
            .arg(&cfg)
            .args(["customer", "link-autotask", "1", "--company", "999"])
            .assert()
            .failure()
            .stderr(contains("company 999"))
            .stderr(contains("customer 1 (Beta) was not linked"));
        let shown = rebilld(d)
            .args(["--json", "customer", "show", "1"])
            .output()
            .unwrap();
        assert_eq!(json_out(&shown)["customer"]["target"]["kind"], "xero");
        rebilld(d)
            .arg("--config")
            .arg(&cfg)
            .args(["customer", "link-autotask", "1", "--company", "175"])
            .assert()
            .success()
            .stdout(contains("Autotask company 175"));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xero_status_after_a_revoked_grant_says_to_reconnect_not_1970() {
    let app = TestApp::sqlite().await;
    // What a refused refresh token leaves behind: the grant without its tokens.
    app.store
        .save_xero_grant(&rebill::store::xero::XeroTokenRow {
            grant_type: "authorization_code".into(),
            access_token: None,
            access_expires_at: None,
            refresh_token: None,
            tenant_id: Some("70784a63-d24b-46a9-a4db-0e70a274b056".into()),
            refresh_count: 4,
        })
        .await
        .unwrap();
    let dir = app.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        rebilld(&dir)
            .args(["xero", "status"])
            .assert()
            .success()
            .stdout(contains("revoked: run `rebilld xero connect`"))
            .stdout(contains("1970").not());
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xero_connect_with_stdin_closed_waits_for_the_browsers_redirect() {
    use wiremock::matchers::{body_string_contains, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    crate::common::fixtures::mount(&server, "xero/connections.json").await;
    Mock::given(method("POST"))
        .and(path("/connect/token"))
        .and(body_string_contains("grant_type=authorization_code"))
        .and(body_string_contains("code=the-code"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "access_token": "access-1", "refresh_token": "refresh-1", "expires_in": 1800, "token_type": "Bearer"
        })))
        .expect(1)
        .mount(&server)
        .await;
    let url = server.uri();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = tokio::task::spawn_blocking(move || {
        use std::io::{BufRead, Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cfg = xero_config_file(d, &url);
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!(
            "grant = \"authorization_code\"\nredirect_port = {port}\nauthorize_url = \"{url}/identity/connect/authorize\"\n"
        ));
        std::fs::write(&cfg, text).unwrap();
        let mut child = StdCommand::new(bin())
            .current_dir(d)
            .env_remove("RUST_LOG")
            .env("REBILL_DATABASE__URL", db_url(d))
            .arg("--config")
            .arg(&cfg)
            .args(["xero", "connect"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The consent URL carries the state the redirect must return.
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut state = None;
        let mut seen = String::new();
        while state.is_none() {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
            if let Some(u) = line.split_whitespace().find(|w| w.contains("state=")) {
                let u = url::Url::parse(u).unwrap();
                state = u
                    .query_pairs()
                    .find(|(k, _)| k == "state")
                    .map(|(_, v)| v.to_string());
            }
        }
        let state = state.unwrap_or_else(|| panic!("no consent URL: {seen}"));
        // Wait for "Waiting for the redirect" to be acted on: the browser comes back a moment
        // later, by which time a closed stdin must not have ended the command.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let mut browser = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // One write, as a browser sends its request line and headers in one segment.
        let request =
            format!("GET /callback?code=the-code&state={state} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        browser.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = browser.read_to_string(&mut answer);
        let out = child.wait_with_output().unwrap();
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest);
        (out, seen + &rest, answer)
    })
    .await
    .unwrap();
    let (out, stderr, answer) = out;
    assert!(out.status.success(), "{stderr}");
    assert!(answer.contains("connected to Xero"), "{answer}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("connected to Xero organisation"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_token_key_that_is_not_32_bytes_of_base64_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key"), "c2hvcnQ=\n").unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        format!(
            "[xero]\ntoken_key_file = \"{}\"\n",
            dir.path().join("key").display()
        ),
    )
    .unwrap();
    rebilld(dir.path())
        .args(["--config", "c.toml", "customer", "list"])
        .assert()
        .code(78)
        .stderr(contains("xero.token_key"))
        .stderr(contains("32"))
        .stderr(contains("c2hvcnQ").not());
}
