//! Data in and out: strict mappings and imports, files that fail loudly, rejects that can be fixed
//! and re-imported, safe CSV, and the edge cases of reading real files. On both backends.

use crate::common::TestApp;
use rebill::cdr::{ImportOptions, Mapping, import_file};
use rebill::domain::rating::RatePlan;
use rebill::domain::text::Country;
use rebill::domain::{Period, ServiceId};

const HEADER: &str = "call_id,user,start,duration,destination,call_type,cost,direction,disposition";

fn opts() -> ImportOptions {
    ImportOptions {
        tz: "Australia/Sydney".parse().unwrap(),
        country: Country::AU,
        batch_rows: 100,
        progress: false,
    }
}

/// A service with users 0299990001 and 0299990002, rated at 10 c/min for every call type.
async fn service(app: &TestApp) -> ServiceId {
    let s = crate::common::world::service("sip", None, "0", &["0299990001", "0299990002"]);
    let (id, _) = app.store.import_service(&app.actor(), &s).await.unwrap();
    let plan: RatePlan = toml::from_str(
        "kind = \"per_minute\"\n[rates.national]\nper_minute = \"0.10\"\n[rates.mobile]\nper_minute = \"0.10\"\n",
    )
    .unwrap();
    app.store
        .set_rate_plan(&app.actor(), id, &plan)
        .await
        .unwrap();
    id
}

fn good_row(i: usize) -> String {
    format!(
        "k{i},0299990001,2026-10-05T10:{:02}:{:02}+11:00,60,0299990000,national,0.01,out,ANSWERED",
        i / 60,
        i % 60
    )
}

fn write(app: &TestApp, name: &str, text: impl AsRef<[u8]>) -> std::path::PathBuf {
    let p = app.dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn rejects(r: &rebill::cdr::ImportReport) -> Vec<Vec<String>> {
    let path = r.rejects_file.as_ref().expect("a rejects file");
    csv::Reader::from_path(path)
        .unwrap()
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect()
}

async fn a_mapped_column_the_file_lacks_is_refused_naming_the_key_and_the_file(app: TestApp) {
    service(&app).await;
    // `direction` misspelt as `Direktion` in the mapping: free inbound calls would be billed.
    let mapping = Mapping::from_toml(
        "[columns]\ncall_id = \"call_id\"\nuser = \"user\"\nstart = \"start\"\nduration = \"duration\"\n\
         destination = \"destination\"\ndirection = \"Direktion\"\n",
    )
    .unwrap();
    let file = write(&app, "carrier.csv", format!("{HEADER}\n{}\n", good_row(0)));
    let e = import_file(&app.store, &mapping, &file, None, &opts())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("columns.direction") && e.contains("Direktion"),
        "{e}"
    );
    assert!(e.contains("carrier.csv"), "{e}");
    // A position beyond the header's columns is refused the same way.
    let mapping = Mapping::from_toml(
        "[columns]\nuser = 2\nstart = 3\nduration = 4\ndestination = 5\ncost = 12\n",
    )
    .unwrap();
    let e = import_file(&app.store, &mapping, &file, None, &opts())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("columns.cost"), "{e}");
    // An unknown key in a mapping is refused, naming it.
    let e = Mapping::from_toml(
        "[columns]\nuser = 2\nstart = 3\nduration = 4\ndestination = 5\ncots = 7\n",
    )
    .unwrap_err();
    assert!(e.contains("cots"), "{e}");
}

async fn a_file_whose_every_row_is_rejected_fails_and_the_spool_moves_it_to_failed(app: TestApp) {
    service(&app).await;
    let spool = app.dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    // Semicolons where the mapping expects commas: every row has the wrong number of fields.
    let mut text = format!("{HEADER}\n");
    for i in 0..5 {
        text.push_str(&good_row(i).replace(',', ";"));
        text.push('\n');
    }
    std::fs::write(spool.join("pbx.csv"), text).unwrap();
    let mut mostly_good = format!("{HEADER}\n");
    for i in 0..18 {
        mostly_good.push_str(&good_row(i));
        mostly_good.push('\n');
    }
    mostly_good.push_str("bad,0299990001,yesterday,60,0299990000,national,0.01,out,ANSWERED\n");
    mostly_good.push_str("bad2,0299990001,yesterday,60,0299990000,national,0.01,out,ANSWERED\n");
    std::fs::write(spool.join("some-bad.csv"), mostly_good).unwrap();
    let cfg = rebill::cdr::CdrConfig {
        spool_dir: Some(spool.clone()),
        spool_settle_secs: 0,
        ..Default::default()
    };
    let reports = rebill::cdr::import_spool_once(
        &app.store,
        &cfg,
        &opts(),
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u32::MAX as u64 * 2),
    )
    .await
    .unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let all_bad = &reports[0];
    assert!(
        all_bad
            .failed
            .as_deref()
            .is_some_and(|r| r.contains("every row")),
        "{all_bad:?}"
    );
    assert!(spool.join("failed/pbx.csv").exists());
    assert!(
        spool.join("failed/pbx.csv.rejects.csv").exists(),
        "its rejects beside it"
    );
    assert!(!spool.join("done/pbx.csv").exists());
    // 2 of 20 rejected is 10 %, more than the default 5 %: failed too, its good rows imported.
    let some_bad = &reports[1];
    assert_eq!(some_bad.imported, 18);
    assert!(
        some_bad
            .failed
            .as_deref()
            .is_some_and(|r| r.contains("max_reject_share")),
        "{some_bad:?}"
    );
    assert!(spool.join("failed/some-bad.csv").exists());
}

async fn crlf_rejects_keep_their_line_and_raw_text_for_reimport(app: TestApp) {
    service(&app).await;
    let bad = "k9,\"02 9999 0001\",2026-10-05T10:00:00+11:00,-5,\"=HYPERLINK(\"\"x\"\")\",national,0.01,out,ANSWERED";
    let text = format!(
        "{HEADER}\r\n{}\r\n{}\r\n\r\n{bad}\r\n{}\r\n",
        good_row(0),
        good_row(1),
        good_row(2)
    );
    let file = write(&app, "crlf.csv", text);
    let r = import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    assert_eq!((r.imported, r.rejected), (3, 1), "{r:?}");
    let rows = rejects(&r);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0][0], "5",
        "the bad row is on line 5 (after a blank line 4)"
    );
    assert!(rows[0][1].contains("negative"), "{rows:?}");
    assert_eq!(rows[0][2], bad, "the row exactly as read, quotes and all");
    // Fixed and put under the header, the raw text imports.
    let fixed = write(
        &app,
        "fixed.csv",
        format!("{HEADER}\n{}\n", rows[0][2].replace(",-5,", ",5,")),
    );
    let again = import_file(&app.store, &Mapping::standard(), &fixed, None, &opts())
        .await
        .unwrap();
    assert_eq!((again.imported, again.rejected), (1, 0), "{again:?}");
}

async fn a_nul_byte_rejects_its_row_wherever_it_is(app: TestApp) {
    service(&app).await;
    let mut text = format!("{HEADER}\n");
    for i in 0..200 {
        text.push_str(&good_row(i));
        text.push('\n');
    }
    // Far past the first 4 KiB.
    text.push_str(
        "nul,0299990001,2026-10-06T10:00:00+11:00,60,02999\u{0}90000,national,0.01,out,ANSWERED\n",
    );
    let file = write(&app, "nul.csv", text);
    let r = import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    assert_eq!((r.imported, r.rejected), (200, 1), "{r:?}");
    let rows = rejects(&r);
    assert_eq!(rows[0][0], "202");
    assert!(rows[0][1].contains("NUL"), "{rows:?}");
}

async fn a_missing_closing_quote_and_a_huge_field_are_rejected(app: TestApp) {
    service(&app).await;
    let huge = "x".repeat(100 * 1024);
    let text = format!(
        "{HEADER}\n{}\nq1,0299990001,2026-10-06T10:00:00+11:00,60,\"0299990000,national,0.01,out,ANSWERED\n{}\nbig,0299990001,2026-10-07T10:00:00+11:00,60,0299990000,{huge},0.01,out,ANSWERED\n",
        good_row(0),
        good_row(1),
    );
    let file = write(&app, "quote.csv", text);
    let r = import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    assert_eq!(r.imported, 1, "only the first good row: {r:?}");
    let rows = rejects(&r);
    assert!(
        rows.iter()
            .any(|x| x[0] == "3" && (x[1].contains("quote") || x[1].contains("fields"))),
        "{rows:?}"
    );
    let stored = app
        .store
        .user_calls(
            ServiceId::new(1).unwrap(),
            "0299990001",
            0,
            i64::MAX,
            (i64::MIN, 0),
            10,
        )
        .await
        .unwrap();
    assert!(
        stored.iter().all(|c| c.call_type.len() < 100),
        "no 100 KiB field stored"
    );
}

async fn absurd_costs_are_rejected_not_wrapped_into_the_total(app: TestApp) {
    let id = service(&app).await;
    let text = format!(
        "{HEADER}\n{}\nx1,0299990001,2026-10-06T10:00:00+11:00,60,0299990000,national,9000000000000,out,ANSWERED\nx2,0299990001,2026-10-06T11:00:00+11:00,60,0299990000,national,9000000000000,out,ANSWERED\n",
        good_row(0)
    );
    let file = write(&app, "absurd.csv", text);
    let r = import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    assert_eq!((r.imported, r.rejected), (1, 2), "{r:?}");
    let s = rebill::cdr::summary::summary(&app.store, id, Period::parse("2026-10").unwrap())
        .await
        .unwrap();
    assert_eq!(s.totals.wholesale_cost.to_string(), "0.01");
}

async fn a_number_written_internationally_matches_its_national_user(app: TestApp) {
    let id = service(&app).await;
    let text = format!(
        "{HEADER}\nn1,+61 2 9999 0001,2026-10-06T10:00:00+11:00,60,0299990000,national,0.01,out,ANSWERED\n\
         n2,0011 61 2 9999 0002,2026-10-06T11:00:00+11:00,60,0299990000,national,0.01,out,ANSWERED\n\
         n3,+61 2 9999 0009,2026-10-06T12:00:00+11:00,60,0299990000,national,0.01,out,ANSWERED\n"
    );
    let file = write(&app, "intl.csv", text);
    let r = import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    assert_eq!((r.imported, r.unmatched), (3, 1), "{r:?}");
    let s = rebill::cdr::summary::summary(&app.store, id, Period::parse("2026-10").unwrap())
        .await
        .unwrap();
    let users: Vec<(&str, i64)> = s
        .by_user
        .iter()
        .map(|g| (g.key.as_str(), g.calls))
        .collect();
    assert_eq!(
        users,
        [("0299990001", 1), ("0299990002", 1)],
        "under the catalogue's own reference"
    );
    // The unmatched one, added later in national form, is matched by a re-rate.
    let later = crate::common::world::service("later", None, "0", &["02 9999 0009"]);
    let (later, _) = app
        .store
        .import_service(&app.actor(), &later)
        .await
        .unwrap();
    let rr = rebill::cdr::rerate(
        &app.store,
        Period::parse("2026-10").unwrap(),
        opts().tz,
        Country::AU,
    )
    .await
    .unwrap();
    assert_eq!(rr.matched, 1);
    let s = rebill::cdr::summary::summary(&app.store, later, Period::parse("2026-10").unwrap())
        .await
        .unwrap();
    assert_eq!(s.totals.calls, 1);
}

async fn summary_csv_quotes_fields_neutralises_formulas_and_marks_unrated_calls(app: TestApp) {
    let id = service(&app).await;
    let text = format!(
        "{HEADER}\nc1,0299990001,2026-10-06T10:00:00+11:00,60,=1+1,\"Mobile, Telstra\",0.01,out,ANSWERED\n\
         c2,0299990001,2026-10-06T11:00:00+11:00,60,0299990000,national,0.01,out,ANSWERED\n"
    );
    let file = write(&app, "types.csv", text);
    import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    let mut out = Vec::new();
    let tz = opts().tz;
    let s = rebill::cdr::summary::write(
        &app.store,
        id,
        Period::parse("2026-10").unwrap(),
        tz,
        "csv",
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(s.totals.unrated_calls, 1, "`mobile, telstra` has no rate");
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<Vec<String>> = csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 7), "{text}");
    let c1 = rows
        .iter()
        .find(|r| r[1] == "'=1+1")
        .expect("the formula neutralised");
    assert_eq!(c1[4], "mobile, telstra");
    assert_eq!((c1[5].as_str(), c1[6].as_str()), ("", "unrated"));
    let idle = rows.iter().find(|r| r[0] == "0299990002").unwrap();
    assert_eq!(idle[1..6], ["", "", "", "", ""], "no words in data columns");
    assert_eq!(idle[6], "no calls");
    assert!(!text.contains("No Records Found"));
    let mut json = Vec::new();
    rebill::cdr::summary::write(
        &app.store,
        id,
        Period::parse("2026-10").unwrap(),
        tz,
        "json",
        &mut json,
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["calls"].as_array().unwrap().len(), 2);
    let unrated = v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rated"] == false)
        .unwrap();
    assert!(
        unrated["cost"].is_null(),
        "no word in the cost field: {unrated}"
    );
    assert_eq!(v["summary"]["totals"]["unrated_calls"], 1);
    assert_eq!(v["users_without_calls"], serde_json::json!(["0299990002"]));
}

async fn a_bom_before_a_headerless_file_or_a_header_is_ignored(app: TestApp) {
    let id = service(&app).await;
    let mapping = Mapping::from_toml(
        "has_header = false\n[columns]\nuser = 1\nstart = 2\nduration = 3\ndestination = 4\n",
    )
    .unwrap();
    let file = write(
        &app,
        "bom.csv",
        "\u{feff}0299990001,2026-10-05T10:00:00+11:00,60,0299990000\n",
    );
    let r = import_file(&app.store, &mapping, &file, None, &opts())
        .await
        .unwrap();
    assert_eq!((r.imported, r.unmatched), (1, 0), "{r:?}");
    let file = write(
        &app,
        "bom-header.csv",
        "\u{feff}CALL_ID, User ,Start,Duration,Destination\nb1,0299990002,2026-10-05T10:00:00+11:00,60,0299990000\n",
    );
    let r = import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    assert_eq!((r.imported, r.unmatched), (1, 0), "{r:?}");
    let s = rebill::cdr::summary::summary(&app.store, id, Period::parse("2026-10").unwrap())
        .await
        .unwrap();
    assert_eq!(s.totals.calls, 2);
}

backend_tests!(
    a_bom_before_a_headerless_file_or_a_header_is_ignored,
    a_mapped_column_the_file_lacks_is_refused_naming_the_key_and_the_file,
    a_file_whose_every_row_is_rejected_fails_and_the_spool_moves_it_to_failed,
    crlf_rejects_keep_their_line_and_raw_text_for_reimport,
    a_nul_byte_rejects_its_row_wherever_it_is,
    a_missing_closing_quote_and_a_huge_field_are_rejected,
    absurd_costs_are_rejected_not_wrapped_into_the_total,
    a_number_written_internationally_matches_its_national_user,
    summary_csv_quotes_fields_neutralises_formulas_and_marks_unrated_calls,
);

/// Customer and service imports, as a user runs them.
mod imports {
    use assert_cmd::Command;
    use predicates::str::contains;
    use std::path::Path;

    fn rebilld(dir: &Path) -> Command {
        let mut c = Command::cargo_bin("rebilld").unwrap();
        c.current_dir(dir)
            .env_remove("RUST_LOG")
            .env(
                "REBILL_DATABASE__URL",
                format!("sqlite://{}", dir.join("rebill.db").display()),
            )
            .args(["--actor", "ops-anna"]);
        c
    }

    #[test]
    fn an_unknown_import_column_is_refused_naming_it_and_the_file_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("services.csv"),
            "external_ref,name,kind,rebill_enabled,montly_price\ns1,SIP 1,voip,yes,49.95\n",
        )
        .unwrap();
        rebilld(dir.path())
            .args(["service", "import", "services.csv"])
            .assert()
            .failure()
            .stderr(contains("montly_price"))
            .stderr(contains("services.csv"));
        rebilld(dir.path())
            .args(["--json", "service", "list"])
            .assert()
            .success()
            .stdout("[]\n");
        rebilld(dir.path())
            .args(["service", "import", "--allow-extra-columns", "services.csv"])
            .assert()
            .success();
        std::fs::write(
            dir.path().join("customers.json"),
            "[\n {\"external_ref\": \"c1\", \"name\": \"Acme\", \"emial\": \"a@acme.example\"}\n]\n",
        )
        .unwrap();
        rebilld(dir.path())
            .args(["customer", "import", "customers.json"])
            .assert()
            .failure()
            .stderr(contains("emial"))
            .stderr(contains("customers.json:2"));
    }

    #[test]
    fn a_cdr_file_with_too_many_rejected_rows_exits_non_zero_keeping_its_good_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("call_id,user,start,duration,destination\n");
        for i in 0..18 {
            text.push_str(&format!(
                "k{i},0299990001,2026-10-05T10:00:{i:02}+11:00,60,0299990000\n"
            ));
        }
        text.push_str("b1,0299990001,05/10/2026 10:00,60,0299990000\n");
        text.push_str("b2,0299990001,05/10/2026 10:01,60,0299990000\n");
        std::fs::write(dir.path().join("pbx.csv"), text).unwrap();
        rebilld(dir.path())
            .args(["cdr", "import", "pbx.csv"])
            .assert()
            .failure()
            .stdout(contains("18 imported"))
            .stderr(contains("2 of 20 rows"))
            .stderr(contains("max_reject_share"));
        // Allowed a larger share, the same file passes (its calls already stored).
        rebilld(dir.path())
            .env("REBILL_CDR__MAX_REJECT_SHARE", "0.2")
            .args(["cdr", "import", "pbx.csv"])
            .assert()
            .success()
            .stdout(contains("18 duplicates"));
    }

    #[test]
    fn crlf_import_rows_are_reported_on_their_own_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("customers.csv"),
            "external_ref,name,email\r\nc1,Acme,a@acme.example\r\nc2,Beta,not-an-email\r\n",
        )
        .unwrap();
        rebilld(dir.path())
            .args(["customer", "import", "customers.csv"])
            .assert()
            .failure()
            .stderr(contains("customers.csv:3:"));
    }

    #[test]
    fn empty_users_and_label_pairs_in_json_strings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.csv"),
            "external_ref,name,rebill_enabled,users\ns1,SIP 1,yes,0299990001=Reception;=Label\n",
        )
        .unwrap();
        rebilld(dir.path())
            .args(["service", "import", "a.csv"])
            .assert()
            .failure()
            .stderr(contains("a.csv:2:"))
            .stderr(contains("is empty"));
        std::fs::write(
            dir.path().join("b.json"),
            "[{\"external_ref\": \"s2\", \"name\": \"SIP 2\", \"users\": [\"0290003002=Frontdesk\"]}]",
        )
        .unwrap();
        rebilld(dir.path())
            .args(["service", "import", "b.json"])
            .assert()
            .failure()
            .stderr(contains("contains `=`"));
        rebilld(dir.path())
            .args(["--json", "service", "list"])
            .assert()
            .success()
            .stdout("[]\n");
    }

    #[test]
    fn an_external_ref_repeated_in_one_file_is_reported_and_a_rerun_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("customers.csv"),
            "external_ref,name\nc1,Acme\nc2,Beta\nc1,Acme Pty Ltd\n",
        )
        .unwrap();
        for _ in 0..2 {
            rebilld(dir.path())
                .args(["customer", "import", "customers.csv"])
                .assert()
                .failure()
                .stderr(contains(
                    "customers.csv:2: external_ref \"c1\" is also on line 4",
                ))
                .stderr(contains(
                    "customers.csv:4: external_ref \"c1\" is also on line 2",
                ));
        }
        let audit = rebilld(dir.path())
            .args(["--json", "audit"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let audit: serde_json::Value = serde_json::from_slice(&audit).unwrap();
        assert_eq!(
            audit.as_array().map(|a| a.len()),
            Some(1),
            "only c2, created once: {audit}"
        );
    }
}
