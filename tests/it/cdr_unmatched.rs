//! Calls that must never go missing unnoticed: unmatched numbers and unrated calls listed, and the
//! same calls from a second source detected and billed once. On both backends.

use crate::common::TestApp;
use rebill::cdr::{ImportOptions, Mapping, import_file};
use rebill::domain::Period;
use rebill::domain::rating::RatePlan;
use rebill::domain::text::Country;

fn opts() -> ImportOptions {
    ImportOptions {
        tz: "Australia/Sydney".parse().unwrap(),
        country: Country::AU,
        batch_rows: 100,
        progress: false,
    }
}

fn mapping(source: &str) -> Mapping {
    let mut m = Mapping::from_toml(&format!(
        "source = \"{source}\"\n[columns]\ncall_id = \"call_id\"\nuser = \"user\"\nstart = \"start\"\nduration = \"duration\"\n\
         destination = \"destination\"\ncall_type = \"call_type\"\ncost = \"cost\"\n"
    ))
    .unwrap();
    m.skip_dispositions.clear();
    m
}

async fn setup(app: &TestApp) -> rebill::domain::ServiceId {
    let s = crate::common::world::service("sip", None, "0", &["0299990001"]);
    let (id, _) = app.store.import_service(&app.actor(), &s).await.unwrap();
    let plan: RatePlan =
        toml::from_str("kind = \"per_minute\"\n[rates.national]\nper_minute = \"0.60\"\n").unwrap();
    app.store
        .set_rate_plan(&app.actor(), id, &plan)
        .await
        .unwrap();
    id
}

async fn import(
    app: &TestApp,
    name: &str,
    source: &str,
    rows: &[&str],
) -> rebill::cdr::ImportReport {
    let header = "call_id,user,start,duration,destination,call_type,cost";
    let file = app.dir.path().join(name);
    std::fs::write(&file, format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    import_file(&app.store, &mapping(source), &file, None, &opts())
        .await
        .unwrap()
}

async fn the_same_calls_from_a_second_source_are_reported_and_billed_once(app: TestApp) {
    let id = setup(&app).await;
    let pbx = import(
        &app,
        "pbx.csv",
        "pbx",
        &[
            "1759442400.18,02 9999 0001,2026-10-03T09:00:00+10:00,60,0298765432,national,",
            "1759442401.19,0299990001,2026-10-03T10:00:00+10:00,120,0298765432,national,",
        ],
    )
    .await;
    assert_eq!(pbx.imported, 2, "{pbx:?}");
    // The carrier's file: its own call ids, the numbers written internationally; one call of
    // its own (11:00) that the PBX did not record.
    let carrier = import(
        &app,
        "carrier.csv",
        "carrier",
        &[
            "C-1,+61 2 9999 0001,2026-10-03T09:00:00+10:00,60,0298765432,national,0.01",
            "C-2,+61 2 9999 0001,2026-10-03T10:00:00+10:00,120,0298765432,national,0.02",
            "C-3,+61 2 9999 0001,2026-10-03T11:00:00+10:00,30,0298765432,national,0.01",
        ],
    )
    .await;
    assert_eq!(
        (carrier.imported, carrier.second_source, carrier.duplicates),
        (1, 2, 0),
        "{carrier:?}"
    );
    let s = rebill::cdr::summary::summary(&app.store, id, Period::parse("2026-10").unwrap())
        .await
        .unwrap();
    assert_eq!(s.totals.calls, 3, "each call once");
    // Importing the carrier's file again adds nothing, and still says why.
    let again = import(
        &app,
        "carrier.csv",
        "carrier",
        &[
            "C-1,+61 2 9999 0001,2026-10-03T09:00:00+10:00,60,0298765432,national,0.01",
            "C-2,+61 2 9999 0001,2026-10-03T10:00:00+10:00,120,0298765432,national,0.02",
            "C-3,+61 2 9999 0001,2026-10-03T11:00:00+10:00,30,0298765432,national,0.01",
        ],
    )
    .await;
    assert_eq!(
        (again.imported, again.duplicates + again.second_source),
        (0, 3),
        "{again:?}"
    );
}

async fn unmatched_numbers_are_listed_with_their_call_counts(app: TestApp) {
    setup(&app).await;
    import(
        &app,
        "a.csv",
        "pbx",
        &[
            "u1,0299990001,2026-10-03T09:00:00+10:00,60,0298765432,national,",
            "u2,02 9999 0007,2026-10-03T09:01:00+10:00,60,0298765432,national,",
            "u3,+61299990007,2026-10-04T09:01:00+10:00,30,0298765432,national,",
            "u4,205,2026-10-05T09:01:00+10:00,30,0298765432,national,",
            "u5,205,2026-11-05T09:01:00+11:00,30,0298765432,national,",
        ],
    )
    .await;
    let (start, end) = Period::parse("2026-10").unwrap().bounds(opts().tz);
    let rows = app.store.unmatched_numbers(start, end).await.unwrap();
    let got: Vec<(&str, i64, i64)> = rows
        .iter()
        .map(|r| (r.user_ref.as_str(), r.calls, r.seconds))
        .collect();
    assert_eq!(got, [("+61299990007", 2, 90), ("205", 1, 30)]);
}

async fn unrated_calls_are_listed_by_service_and_call_type(app: TestApp) {
    let id = setup(&app).await;
    import(
        &app,
        "a.csv",
        "pbx",
        &[
            "r1,0299990001,2026-10-03T09:00:00+10:00,60,0298765432,national,",
            "r2,0299990001,2026-10-03T09:01:00+10:00,60,0412345678,satellite,",
            "r3,0299990001,2026-10-03T09:02:00+10:00,30,0412345678,satellite,",
        ],
    )
    .await;
    let (start, end) = Period::parse("2026-10").unwrap().bounds(opts().tz);
    let rows = app.store.unrated_groups(start, end).await.unwrap();
    let got: Vec<(i64, &str, i64)> = rows
        .iter()
        .map(|r| (r.service_id, r.call_type.as_str(), r.calls))
        .collect();
    assert_eq!(got, [(id.get(), "satellite", 2)]);
    assert_eq!(app.store.unrated_calls(start, end).await.unwrap(), 2);
}

backend_tests!(
    the_same_calls_from_a_second_source_are_reported_and_billed_once,
    unmatched_numbers_are_listed_with_their_call_counts,
    unrated_calls_are_listed_by_service_and_call_type,
);
