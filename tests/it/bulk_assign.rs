//! `rebilld service assign --from FILE` (issue 16): many assignments from one file, all or none,
//! every row checked first, Autotask's choices read once per contract, product and material code
//! however many rows name them.

use std::process::{Command, Output};

use rebill::domain::ServiceId;
use rebill::store::NewAssignment;

use crate::common::TestApp;
use crate::common::world::{World, build, day, service};

fn env(w: &World, database_url: &str) -> Vec<(&'static str, String)> {
    let a = &w.sandboxes.autotask_url;
    vec![
        ("REBILL_DATABASE__URL", database_url.to_string()),
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

/// Runs `rebilld ARGS` in the test's directory, on its database and stand-ins.
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

fn said(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Four free services, `bulk-1` to `bulk-4`.
async fn four_services(app: &TestApp) -> Vec<ServiceId> {
    let mut ids = Vec::new();
    for n in 1..=4 {
        let s = service(
            &format!("bulk-{n}"),
            None,
            "20",
            &[&format!("029999100{n}")],
        );
        ids.push(app.store.import_service(&app.actor(), &s).await.unwrap().0);
    }
    ids
}

fn write(app: &TestApp, name: &str, text: &str) {
    std::fs::write(app.dir.path().join(name), text).unwrap();
}

/// Requests the Autotask stand-in counted of kinds that end with `tail`.
fn counted(w: &World, tail: &str) -> u64 {
    w.sandboxes
        .autotask
        .limits
        .requests_by_kind()
        .iter()
        .filter(|(k, _)| k.ends_with(tail))
        .map(|(_, n)| *n)
        .sum()
}

async fn held_by(app: &TestApp, id: ServiceId) -> Option<(i64, chrono::NaiveDate)> {
    app.store
        .live_assignment(id)
        .await
        .unwrap()
        .map(|a| (a.customer_id.get(), a.starts_on))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_assignments_is_assigned_in_full_reading_each_autotask_choice_once() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let ids = four_services(&app).await;
    let (c, p, m) = (
        w.coding.contract_id,
        w.coding.product_id,
        w.coding.material_code_id,
    );
    write(
        &app,
        "assign.csv",
        &format!(
            "service,customer,starts_on,contract,product,material_code\n\
             bulk-1,acme,2026-11-01,,,\n\
             bulk-2,autotask:174,2026-11-01,{c},{p},{m}\n\
             bulk-3,autotask:174,2026-11-16,{c},{p},{m}\n\
             {},{},2026-11-01,{c},{p},{m}\n",
            ids[3], w.autotask.id
        ),
    );
    let before = [
        "/Contracts/{id}",
        "/Products/{id}",
        "/BillingCodes/{id}",
        "/entityInformation/fields",
    ]
    .map(|k| counted(&w, k));
    let out = rebilld(&app, &w, &["service", "assign", "--from", "assign.csv"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 service(s) assigned"),
        "{}",
        said(&out)
    );
    assert_eq!(
        held_by(&app, ids[0]).await,
        Some((w.enabled.id.get(), day("2026-11-01")))
    );
    assert_eq!(
        held_by(&app, ids[2]).await,
        Some((w.autotask.id.get(), day("2026-11-16")))
    );
    assert_eq!(
        held_by(&app, ids[3]).await.map(|h| h.0),
        Some(w.autotask.id.get()),
        "by id as well as by external reference"
    );
    let coding = app
        .store
        .live_assignment(ids[1])
        .await
        .unwrap()
        .unwrap()
        .autotask()
        .unwrap();
    assert_eq!(coding, Some(w.coding));
    let after = [
        "/Contracts/{id}",
        "/Products/{id}",
        "/BillingCodes/{id}",
        "/entityInformation/fields",
    ]
    .map(|k| counted(&w, k));
    for (i, what) in ["contract", "product", "billing code", "field definitions"]
        .iter()
        .enumerate()
    {
        assert!(
            after[i] - before[i] <= 1,
            "the {what} read once for three Autotask rows: {} reads",
            after[i] - before[i]
        );
    }
    assert_eq!(after[0] - before[0], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_row_assigns_nothing_and_each_refusal_names_the_file_and_line() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let ids = four_services(&app).await;
    let (c, p) = (w.coding.contract_id, w.coding.product_id);
    write(
        &app,
        "assign.csv",
        &format!(
            "service,customer,starts_on,contract,product,material_code\n\
             bulk-1,acme,2026-11-01,,,\n\
             no-such-service,acme,2026-11-01,,,\n\
             bulk-2,autotask:174,2026-11-01,{c},{p},999999\n\
             bulk-3,acme,1 Nov,,,\n\
             bulk-4,autotask:174,2026-11-01,,,\n"
        ),
    );
    let out = rebilld(&app, &w, &["service", "assign", "--from", "assign.csv"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for (line, why) in [
        (3, "no-such-service"),
        (4, "999999"),
        (5, "starts_on"),
        (6, "Autotask account"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("assign.csv:{line}:")) && l.contains(why)),
            "line {line} ({why}) is named: {}",
            said(&out)
        );
    }
    assert!(err.contains("nothing was assigned"), "{}", said(&out));
    for id in ids {
        assert_eq!(held_by(&app, id).await, None, "nothing half-written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_column_refuses_the_file_naming_it() {
    let app = TestApp::sqlite().await;
    let w = build(&app).await;
    let ids = four_services(&app).await;
    write(
        &app,
        "assign.csv",
        "service,customer,start_date\nbulk-1,acme,2026-11-01\n",
    );
    let out = rebilld(&app, &w, &["service", "assign", "--from", "assign.csv"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("assign.csv") && err.contains("start_date"),
        "{}",
        said(&out)
    );
    assert_eq!(held_by(&app, ids[0]).await, None);
}

/// The store half, on both backends: a list whose last assignment is refused writes none of it.
async fn assign_all_writes_every_assignment_or_none(app: TestApp) {
    let w = build(&app).await;
    let ids = four_services(&app).await;
    let new = |id: ServiceId| NewAssignment {
        service_id: id,
        customer_id: w.enabled.id,
        starts_on: day("2026-11-01"),
        coding: None,
    };
    // The sample's SIP service is held already.
    let refused = app
        .store
        .assign_all(&app.actor(), &[new(ids[0]), new(ids[1]), new(w.sip)])
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("assign"), "{refused}");
    assert_eq!(held_by(&app, ids[0]).await, None);
    assert_eq!(held_by(&app, ids[1]).await, None);
    // A service twice passes each check alone; the database refuses the second inside the one
    // transaction, and the first is rolled back with it.
    let twice = app
        .store
        .assign_all(&app.actor(), &[new(ids[2]), new(ids[3]), new(ids[3])])
        .await;
    assert!(twice.is_err(), "{twice:?}");
    assert_eq!(held_by(&app, ids[2]).await, None);
    assert_eq!(held_by(&app, ids[3]).await, None);
    let made = app
        .store
        .assign_all(&app.actor(), &[new(ids[0]), new(ids[1])])
        .await
        .unwrap();
    assert_eq!(made.len(), 2);
    assert!(held_by(&app, ids[1]).await.is_some());
}

backend_tests!(assign_all_writes_every_assignment_or_none);
