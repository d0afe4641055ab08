//! Prices with effective dates (issue 11, case 8): a price change is in force from its day, so a
//! resync of a period billed before it plans nothing, and a month the change falls in is billed
//! day by day at each price, rounded once on the line. And `--dry-run` says per line whether the
//! resync updates, credits, adds or voids.

use rebill::domain::{ItemId, ItemKind, Money, NonEmpty, Period, Transition};
use rebill::pipeline::{PlanKind, ResyncOutcome, ResyncRequest, resync};
use rebill::store::NewItem;
use rust_decimal::Decimal;

use crate::common::TestApp;
use crate::common::world::{World, build, day, service};

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

fn m(s: &str) -> Money {
    Money::parse(s).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn resync_of(w: &World, period: Period, dry_run: bool) -> ResyncOutcome {
    resync(
        &w.pipeline,
        &ResyncRequest {
            period,
            customer: None,
            dry_run,
        },
    )
    .await
    .unwrap()
}

/// The amount of the live line with key `key` on `customer`'s invoice for `period`.
async fn line_amount(
    app: &TestApp,
    customer: rebill::domain::CustomerId,
    period: Period,
    key: &str,
) -> Option<Money> {
    let inv = app
        .store
        .invoices(Some(period), Some(customer))
        .await
        .unwrap()
        .into_iter()
        .next()?;
    app.store
        .invoice_lines(inv.id)
        .await
        .unwrap()
        .into_iter()
        .find(|l| !l.removed && l.charge_key.as_str() == key)
        .map(|l| l.amount)
}

async fn recurring(
    app: &TestApp,
    w: &World,
    customer: rebill::domain::CustomerId,
    what: &str,
    amount: &str,
) -> ItemId {
    let c = app.store.customer(customer).await.unwrap();
    app.store
        .add_item(
            &app.actor(),
            &NewItem {
                customer_id: customer,
                kind: ItemKind::Recurring,
                description: NonEmpty::parse("description", what).unwrap(),
                amount: m(amount),
                starts_on: Some(day("2026-11-01")),
                autotask: c.target.is_autotask().then_some(w.coding),
            },
        )
        .await
        .unwrap()
        .id
}

async fn price_change_does_not_rewrite_a_billed_period(app: TestApp) {
    let w = build(&app).await;
    let support = recurring(&app, &w, w.enabled.id, "Support", "100").await;
    w.pipeline.run_period(nov()).await.unwrap();
    let who = w.enabled.target.xero_contact().unwrap().to_string();
    let billed = w.sandboxes.xero.net_of_contact(&who);
    // SIP 49.95 + install 150 + support 100.
    assert_eq!(billed, d("299.95"));

    // The catalogue is re-imported with a new SIP price from December, the trunk's price and the
    // support item change from December too.
    let mut sip = service(
        "sip-acme",
        Some("voip-providers"),
        "60.00",
        &["0299990001", "0299990002"],
    );
    sip.name = NonEmpty::parse("name", "SIP Trunk 10 channels").unwrap();
    // Its cost as the sample world has it: only the price changes.
    sip.monthly_cost = m("31.50");
    app.store
        .import_service_from(&app.actor(), &sip, Some(day("2026-12-01")))
        .await
        .unwrap();
    app.store
        .set_service_price(&app.actor(), w.trunk, m("35.00"), day("2026-12-01"), true)
        .await
        .unwrap();
    app.store
        .set_item_price(&app.actor(), support, m("120"), day("2026-12-01"), true)
        .await
        .unwrap();
    assert_eq!(
        app.store.service(w.sip).await.unwrap().monthly_price,
        m("60.00")
    );

    let again = resync_of(&w, nov(), false).await;
    assert!(
        again.plan.is_noop(),
        "November was billed at November's prices: {:#?}",
        again.plan
    );
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), billed);

    // December is billed at the new prices.
    w.clock.set("2027-01-01T13:30:00Z".parse().unwrap());
    let dec = nov().next();
    w.pipeline.run_period(dec).await.unwrap();
    let sip_key = format!("svc-{}-fee", w.sip);
    assert_eq!(
        line_amount(&app, w.enabled.id, dec, &sip_key).await,
        Some(m("60.00"))
    );
    assert_eq!(
        line_amount(&app, w.enabled.id, dec, &format!("item-{support}")).await,
        Some(m("120"))
    );
    assert_eq!(
        line_amount(&app, w.disabled.id, dec, &format!("svc-{}-fee", w.trunk)).await,
        Some(m("35.00"))
    );
    assert!(resync_of(&w, nov(), false).await.plan.is_noop());
}

async fn a_price_change_mid_month_bills_each_day_at_its_price(app: TestApp) {
    let w = build(&app).await;
    let support = recurring(&app, &w, w.enabled.id, "Support", "100").await;
    w.pipeline.run_period(nov()).await.unwrap();
    // Back-dated into November, from the 16th: 15 days at each price of a 30-day month.
    app.store
        .set_service_price(&app.actor(), w.sip, m("80.00"), day("2026-11-16"), true)
        .await
        .unwrap();
    app.store
        .set_item_price(&app.actor(), support, m("40"), day("2026-11-21"), true)
        .await
        .unwrap();
    let out = resync_of(&w, nov(), false).await;
    let sip_key = format!("svc-{}-fee", w.sip);
    let support_key = format!("item-{support}");
    // (15 × 49.95 + 15 × 80.00) ÷ 30 = 64.975 → 64.98, rounded once on the line.
    assert_eq!(
        line_amount(&app, w.enabled.id, nov(), &sip_key).await,
        Some(m("64.98"))
    );
    // (20 × 100 + 10 × 40) ÷ 30 = 80.00.
    assert_eq!(
        line_amount(&app, w.enabled.id, nov(), &support_key).await,
        Some(m("80.00"))
    );
    let kinds: Vec<(Option<String>, PlanKind)> = out
        .plan
        .actions
        .iter()
        .filter(|a| a.customer_id == w.enabled.id)
        .map(|a| (a.charge_key.clone(), a.kind))
        .collect();
    assert!(
        kinds.contains(&(Some(sip_key.clone()), PlanKind::Update)),
        "the unpaid invoice's line is updated: {kinds:?}"
    );
    let who = w.enabled.target.xero_contact().unwrap().to_string();
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("294.98"));
    assert!(resync_of(&w, nov(), false).await.plan.is_noop());
}

async fn a_dry_run_says_per_line_whether_it_updates_credits_adds_or_voids(app: TestApp) {
    let w = build(&app).await;
    let maintenance = recurring(&app, &w, w.disabled.id, "Maintenance", "40").await;
    w.pipeline.run_period(nov()).await.unwrap();
    let enabled = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    w.sandboxes.xero.pay(&enabled.number);
    w.sandboxes.autotask.bill_all_charges();

    // Paid invoice, raised: an extra invoice (add). Unpaid invoice: a line changed (update) and
    // a line taken off (void). Billed Autotask charge, lowered: a correcting charge (credit).
    app.store
        .set_service_price(&app.actor(), w.sip, m("60.00"), day("2026-11-01"), true)
        .await
        .unwrap();
    app.store
        .set_item_price(&app.actor(), maintenance, m("45"), day("2026-11-01"), true)
        .await
        .unwrap();
    app.store
        .transition(
            &app.actor(),
            w.trunk,
            Transition::Exclude,
            day("2026-11-20"),
        )
        .await
        .unwrap();
    app.store
        .set_service_price(
            &app.actor(),
            w.at_service,
            m("100.00"),
            day("2026-11-01"),
            true,
        )
        .await
        .unwrap();

    let who = w.enabled.target.xero_contact().unwrap().to_string();
    let charges_before = w.sandboxes.autotask.charges().len();
    let dry = resync_of(&w, nov(), true).await;
    let kind_of = |c: rebill::domain::CustomerId, key: String| {
        dry.plan
            .actions
            .iter()
            .find(|a| a.customer_id == c && a.charge_key.as_deref() == Some(key.as_str()))
            .map(|a| a.kind)
    };
    assert_eq!(
        kind_of(w.enabled.id, format!("svc-{}-fee", w.sip)),
        Some(PlanKind::Add),
        "{:#?}",
        dry.plan
    );
    assert_eq!(
        kind_of(w.disabled.id, format!("item-{maintenance}")),
        Some(PlanKind::Update),
        "{:#?}",
        dry.plan
    );
    assert_eq!(
        kind_of(w.disabled.id, format!("svc-{}-fee", w.trunk)),
        Some(PlanKind::Void),
        "{:#?}",
        dry.plan
    );
    assert_eq!(
        kind_of(w.autotask.id, format!("svc-{}-fee", w.at_service)),
        Some(PlanKind::Credit),
        "{:#?}",
        dry.plan
    );
    assert!(dry.pushed.is_none());
    assert_eq!(
        w.sandboxes.xero.net_of_contact(&who),
        d("199.95"),
        "a dry run changes nothing"
    );
    assert_eq!(w.sandboxes.autotask.charges().len(), charges_before);

    // Carried out, it does what it said.
    let done = resync_of(&w, nov(), false).await;
    assert!(done.pushed.is_some());
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("210.00"));
    assert!(resync_of(&w, nov(), false).await.plan.is_noop());
}

crate::backend_tests!(
    price_change_does_not_rewrite_a_billed_period,
    a_price_change_mid_month_bills_each_day_at_its_price,
    a_dry_run_says_per_line_whether_it_updates_credits_adds_or_voids,
);

/// The command line: `service price` records a change from its day and `service show` lists the
/// history; a re-import with a changed price is a change from `--prices-from`; `item price` is for
/// recurring items only. Dates far ahead, so nothing here depends on the day it runs.
mod cli {
    use std::path::Path;

    use assert_cmd::Command;

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

    fn json(c: &mut Command) -> serde_json::Value {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    #[test]
    fn service_price_and_a_changed_import_record_prices_from_their_day() {
        let dir = tempfile::tempdir().unwrap();
        let csv = |price: &str| {
            format!(
                "external_ref,name,kind,rebill_enabled,monthly_price,monthly_cost\nsvc-1,SIP trunk,sip,yes,{price},10\n"
            )
        };
        std::fs::write(dir.path().join("catalogue.csv"), csv("30")).unwrap();
        rebilld(dir.path())
            .args(["service", "import", "catalogue.csv"])
            .assert()
            .success();
        let set = json(rebilld(dir.path()).args([
            "--json",
            "service",
            "price",
            "1",
            "--price",
            "35",
            "--from",
            "2090-01-01",
        ]));
        let dec = |v: &serde_json::Value| {
            v.as_str()
                .unwrap_or_default()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        };
        assert_eq!(dec(&set["was"]), rust_decimal::Decimal::from(30), "{set}");
        std::fs::write(dir.path().join("catalogue.csv"), csv("40")).unwrap();
        rebilld(dir.path())
            .args([
                "service",
                "import",
                "catalogue.csv",
                "--prices-from",
                "2091-01-01",
            ])
            .assert()
            .success();
        let shown = json(rebilld(dir.path()).args(["--json", "service", "show", "1"]));
        let prices: Vec<(String, rust_decimal::Decimal)> = shown["prices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["from"].to_string(), dec(&c["amount"])))
            .collect();
        assert_eq!(
            prices,
            vec![
                ("null".into(), 30.into()),
                ("\"2090-01-01\"".into(), 35.into()),
                ("\"2091-01-01\"".into(), 40.into()),
            ],
            "{shown}"
        );
        rebilld(dir.path())
            .args(["customer", "add", "--name", "Acme"])
            .assert()
            .success();
        rebilld(dir.path())
            .args([
                "item",
                "add-once",
                "--customer",
                "1",
                "--description",
                "Install",
                "--amount",
                "150",
            ])
            .assert()
            .success();
        rebilld(dir.path())
            .args([
                "item",
                "price",
                "1",
                "--amount",
                "10",
                "--from",
                "2090-01-01",
            ])
            .assert()
            .failure();
    }
}
