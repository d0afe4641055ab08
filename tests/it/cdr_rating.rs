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

backend_tests!(shared_and_default_plans_price_services_without_their_own);
