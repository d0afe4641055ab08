//! Rating against the product guide: plan keys whatever their case, shared and default plans.
//! On both backends.

use crate::common::TestApp;
use rebill::cdr::{ImportOptions, Mapping, import_file};
use rebill::domain::rating::RatePlan;
use rebill::domain::text::Country;
use rebill::domain::{Money, Period, ServiceId};

fn opts() -> ImportOptions {
    ImportOptions {
        tz: "Australia/Sydney".parse().unwrap(),
        country: Country::AU,
        batch_rows: 100,
        progress: false,
    }
}

fn plan(text: &str) -> RatePlan {
    toml::from_str(text).unwrap()
}

async fn service(app: &TestApp, r: &str, user: &str) -> ServiceId {
    let s = crate::common::world::service(r, None, "0", &[user]);
    app.store.import_service(&app.actor(), &s).await.unwrap().0
}

async fn total(app: &TestApp, id: ServiceId) -> (Money, i64) {
    let s = rebill::cdr::summary::summary(&app.store, id, Period::parse("2026-10").unwrap())
        .await
        .unwrap();
    (s.totals.total, s.totals.unrated_calls)
}

async fn shared_and_default_plans_price_services_without_their_own(app: TestApp) {
    let own = service(&app, "own", "0299990001").await;
    let sharing = service(&app, "sharing", "0299990002").await;
    let bare = service(&app, "bare", "0299990003").await;
    let actor = app.actor();
    app.store
        .set_rate_plan(
            &actor,
            own,
            &plan("kind = \"per_minute\"\n[rates.Mobile]\nper_minute = \"1.00\"\n"),
        )
        .await
        .unwrap();
    app.store
        .set_shared_rate_plan(
            &actor,
            "business",
            &plan("kind = \"per_minute\"\n[rates.mobile]\nper_minute = \"0.50\"\n"),
        )
        .await
        .unwrap();
    app.store
        .set_shared_rate_plan(
            &actor,
            "basic",
            &plan("kind = \"per_minute\"\n[rates.MOBILE]\nper_minute = \"0.20\"\n"),
        )
        .await
        .unwrap();
    app.store
        .use_shared_rate_plan(&actor, sharing, "business")
        .await
        .unwrap();
    let e = app
        .store
        .use_shared_rate_plan(&actor, bare, "nonesuch")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("nonesuch"), "{e}");

    let file = app.dir.path().join("calls.csv");
    std::fs::write(
        &file,
        "call_id,user,start,duration,destination,call_type\n\
         a,0299990001,2026-10-03T09:00:00+10:00,60,0412345678,Mobile\n\
         b,0299990002,2026-10-03T09:00:00+10:00,60,0412345678,MOBILE\n\
         c,0299990003,2026-10-03T09:00:00+10:00,60,0412345678,mobile\n",
    )
    .unwrap();
    import_file(&app.store, &Mapping::standard(), &file, None, &opts())
        .await
        .unwrap();
    assert_eq!(
        total(&app, own).await,
        (Money::parse("1.00").unwrap(), 0),
        "[rates.Mobile] prices mobile"
    );
    assert_eq!(
        total(&app, sharing).await,
        (Money::parse("0.50").unwrap(), 0)
    );
    assert_eq!(
        total(&app, bare).await,
        (Money::ZERO, 1),
        "no plan yet: unrated, and said so"
    );

    // The default plan, then a re-rate, prices the service without a plan.
    app.store
        .set_default_rate_plan(&actor, "basic")
        .await
        .unwrap();
    rebill::cdr::rerate(
        &app.store,
        Period::parse("2026-10").unwrap(),
        opts().tz,
        Country::AU,
    )
    .await
    .unwrap();
    assert_eq!(total(&app, bare).await, (Money::parse("0.20").unwrap(), 0));
    assert_eq!(
        total(&app, own).await.0,
        Money::parse("1.00").unwrap(),
        "its own plan still wins"
    );
    // A new version of the shared plan reaches every service that uses it.
    app.store
        .set_shared_rate_plan(
            &actor,
            "business",
            &plan("kind = \"per_minute\"\n[rates.mobile]\nper_minute = \"0.40\"\n"),
        )
        .await
        .unwrap();
    rebill::cdr::rerate(
        &app.store,
        Period::parse("2026-10").unwrap(),
        opts().tz,
        Country::AU,
    )
    .await
    .unwrap();
    assert_eq!(total(&app, sharing).await.0, Money::parse("0.40").unwrap());
}

async fn destination_prefixes_tell_local_from_national_longest_prefix_first(app: TestApp) {
    let id = service(&app, "sip", "0299990001").await;
    let mapping = Mapping::from_toml(
        "call_type_by = \"prefix\"\n[columns]\ncall_id = \"call_id\"\nuser = \"user\"\nstart = \"start\"\n\
         duration = \"duration\"\ndestination = \"destination\"\ncall_type = \"call_type\"\n\
         [call_type_prefixes]\n\"02\" = \"local\"\n\"04\" = \"mobile\"\n\"1300\" = \"13/1300\"\n\"19\" = \"premium\"\n\"0011\" = \"international\"\n",
    )
    .unwrap();
    let file = app.dir.path().join("carrier.csv");
    std::fs::write(
        &file,
        "call_id,user,start,duration,destination,call_type\n\
         a,0299990001,2026-10-03T09:00:00+10:00,60,0298765432,national\n\
         b,0299990001,2026-10-03T09:01:00+10:00,60,0398765432,national\n\
         c,0299990001,2026-10-03T09:02:00+10:00,60,+61 412 345 678,national\n\
         d,0299990001,2026-10-03T09:03:00+10:00,60,1300123456,national\n\
         e,0299990001,2026-10-03T09:04:00+10:00,60,1900123456,national\n\
         f,0299990001,2026-10-03T09:05:00+10:00,60,001144207946,national\n",
    )
    .unwrap();
    import_file(&app.store, &mapping, &file, None, &opts())
        .await
        .unwrap();
    let s = rebill::cdr::summary::summary(&app.store, id, Period::parse("2026-10").unwrap())
        .await
        .unwrap();
    let types: Vec<(&str, i64)> = s
        .by_call_type
        .iter()
        .map(|g| (g.key.as_str(), g.calls))
        .collect();
    assert_eq!(
        types,
        [
            ("13/1300", 1),
            ("international", 1),
            ("local", 1),
            ("mobile", 1),
            ("national", 1),
            ("premium", 1)
        ]
    );
}

backend_tests!(
    shared_and_default_plans_price_services_without_their_own,
    destination_prefixes_tell_local_from_national_longest_prefix_first,
);
