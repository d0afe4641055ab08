//! `rebilld demo`, the README's first command, and the sample world it seeds
//! (`rebill::sandbox::world`).

use crate::common::TestApp;
use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use rebill::sandbox::world::{
    Catalogue, NoContacts, SAMPLE, SampleAssignment, SampleDates, SampleDay,
};

/// The demo bills the sample world (the one the other tests bill) exactly: a disabled customer
/// invoiced but not emailed, a part-month item prorated, the excluded service left out, the
/// customer with nothing billable skipped; and it reconciles clean. (The period is given, so the figures do not depend on today's date.)
#[test]
fn the_demo_bills_its_sample_world_and_reconciles_clean() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("rebilld")
        .unwrap()
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .args(["demo", "--dir", "demo", "--period", "2026-11"])
        .assert()
        .success()
        .stdout(contains(
            "CDRs demo/cdrs-2026-10.csv: 242 rows, 227 imported, 15 skipped by rule (not answered), 1 unmatched (unknown user), 0 rejected",
        ))
        .stdout(contains("billing run 2026-11: 3 invoice(s) recorded"))
        .stdout(contains("RB-1000 Acme Plumbing Pty Ltd       379.01 → Xero invoice"))
        .stdout(contains(
            "RB-1001 Beta Cafe                   109.75 → Xero invoice",
        ))
        .stdout(contains("(AUTHORISED), not emailed: customer disabled"))
        .stdout(contains(
            "RB-1002 Autotask Corporation        196.52 → 3 Autotask contract charge(s) on contract 17401",
        ))
        .stdout(contains("Hosted Network Service — calls in October 2026 (45 calls, 228 min)"))
        .stdout(contains("After-hours support — 16–30 November 2026 (15 of 30 days)"))
        .stdout(predicates::str::contains("Hosted PBX (old)").not())
        .stdout(contains(
            "skipped Delta Dental: no billable services or items this period",
        ))
        .stdout(contains(
            "pushed: 2 Xero invoice(s), 1 email(s), 3 Autotask charge(s); 0 failed",
        ))
        .stdout(contains(
            "total cost:  179.06   total calls: 118   duration: 582:16",
        ))
        .stdout(contains(
            "reconcile 2026-11: 2 Xero invoice(s), 3 Autotask charge(s) checked — no differences",
        ));
}

/// The whole catalogue is checked before the first row is written: a catalogue that names a
/// service it does not hold is refused and leaves the database empty.
async fn a_broken_sample_catalogue_writes_nothing(app: TestApp) {
    let broken = Catalogue {
        assignments: &[SampleAssignment {
            service: "no-such-service",
            customer: "delta",
            starts: SampleDay::Since,
            excluded: None,
        }],
        ..SAMPLE
    };
    let dates = SampleDates {
        since: "2026-01-01".parse().unwrap(),
        mid: "2026-11-16".parse().unwrap(),
    };
    let refused = broken
        .seed(&app.store, &app.actor(), dates, None, &NoContacts)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("no-such-service"), "{refused}");
    assert!(app.store.customers().await.unwrap().is_empty());
    assert!(app.store.services().await.unwrap().is_empty());
    assert!(
        app.store
            .audit_log(None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A world with an Autotask customer needs the Autotask stand-in for its company's coding:
/// without it the seed is refused before the first row.
async fn an_autotask_sample_without_the_stand_in_is_refused_before_any_write(app: TestApp) {
    let dates = SampleDates {
        since: "2026-01-01".parse().unwrap(),
        mid: "2026-11-16".parse().unwrap(),
    };
    let refused = SAMPLE
        .seed(&app.store, &app.actor(), dates, None, &NoContacts)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("Autotask Corporation"),
        "{refused}"
    );
    assert!(app.store.services().await.unwrap().is_empty());
    assert!(
        app.store
            .audit_log(None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

backend_tests!(
    a_broken_sample_catalogue_writes_nothing,
    an_autotask_sample_without_the_stand_in_is_refused_before_any_write,
);
