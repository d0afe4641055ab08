//! A plan can price per extension (issue 14): each service user has a kind (standard or
//! advanced), a plan a monthly price per kind; billed as its own line per service and kind, pushed
//! to Xero with the rest, and a billed month keeps the count and the price it was billed with.

use rebill::domain::Period;
use rebill::domain::extensions::{ExtensionKind, ExtensionPrices};
use rebill::pipeline::reconcile;
use rebill::store::billing::StoredLine;
use rust_decimal::Decimal;

use crate::common::TestApp;
use crate::common::world::{World, build, nov};

fn prices(toml_text: &str) -> ExtensionPrices {
    toml::from_str(toml_text).unwrap()
}

/// Gives SIP (Acme's trunk) a new version of its own plan: the same call rates, these
/// extension prices.
async fn price_extensions(app: &TestApp, w: &World, toml_text: &str) {
    let (_, plan) = app
        .store
        .rate_plans()
        .await
        .unwrap()
        .remove(&w.sip.get())
        .expect("the sample SIP trunk has a plan");
    app.store
        .set_rate_plan_with(&app.actor(), w.sip, &plan, &prices(toml_text))
        .await
        .unwrap();
}

async fn extension_lines(app: &TestApp, w: &World, period: Period) -> Vec<StoredLine> {
    let inv = app
        .store
        .invoices(Some(period), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    app.store
        .invoice_lines(inv.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.charge_key.as_str().contains("-ext-"))
        .collect()
}

fn line<'a>(lines: &'a [StoredLine], key: &str) -> &'a StoredLine {
    lines
        .iter()
        .find(|l| l.charge_key.as_str() == key)
        .unwrap_or_else(|| panic!("no line {key}: {lines:#?}"))
}

async fn a_plan_bills_each_extension_kind_as_its_own_line_and_a_billed_month_keeps_it(
    app: TestApp,
) {
    let w = build(&app).await;
    let users = app.store.extensions(Some(w.sip)).await.unwrap();
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(
        users.iter().all(|u| u.kind == "standard"),
        "the default kind"
    );
    app.store
        .set_extension_kind(&app.actor(), &users[0].user_ref, ExtensionKind::Advanced)
        .await
        .unwrap();
    price_extensions(&app, &w, "standard = \"5.00\"\nadvanced = \"8.00\"\n").await;

    w.pipeline.run_period(nov()).await.unwrap();
    let lines = extension_lines(&app, &w, nov()).await;
    let sip = w.sip;
    let adv = line(&lines, &format!("svc-{sip}-ext-advanced"));
    assert_eq!(
        (
            adv.quantity,
            adv.unit_price.to_string(),
            adv.amount.to_string()
        ),
        (Decimal::ONE, "8.00".into(), "8.00".into())
    );
    assert!(
        adv.description.contains("Advanced extensions × 1 @ 8.00"),
        "{}",
        adv.description
    );
    let std = line(&lines, &format!("svc-{sip}-ext-standard"));
    assert_eq!(std.amount.to_string(), "5.00");
    let inv = app
        .store
        .invoices(Some(nov()), Some(w.enabled.id))
        .await
        .unwrap()
        .remove(0);
    let xero = w
        .sandboxes
        .xero
        .invoices()
        .into_iter()
        .find(|i| i["Reference"] == inv.number.as_str())
        .unwrap();
    assert_eq!(
        xero["SubTotal"]
            .to_string()
            .trim_matches('"')
            .parse::<Decimal>()
            .unwrap(),
        inv.total().amount(),
        "the extension lines went to Xero with the rest"
    );

    // After November is billed: the second user becomes advanced, and the price goes up.
    app.store
        .set_extension_kind(&app.actor(), &users[1].user_ref, ExtensionKind::Advanced)
        .await
        .unwrap();
    price_extensions(&app, &w, "standard = \"5.00\"\nadvanced = \"9.00\"\n").await;
    let r = w.resync(nov()).await;
    let acme: Vec<_> = r
        .plan
        .actions
        .iter()
        .filter(|a| a.customer_id == w.enabled.id)
        .collect();
    assert!(
        acme.iter()
            .all(|a| a.kind == rebill::pipeline::PlanKind::Unchanged),
        "November keeps the count and price it was billed with: {acme:#?}"
    );
    assert_eq!(extension_lines(&app, &w, nov()).await, lines);

    // December is billed with what holds at its run: two advanced at 9.00, no standard.
    let dec = Period::parse("2026-12").unwrap();
    w.pipeline.run_period(dec).await.unwrap();
    let dec_lines = extension_lines(&app, &w, dec).await;
    assert_eq!(dec_lines.len(), 1, "{dec_lines:#?}");
    let adv = line(&dec_lines, &format!("svc-{sip}-ext-advanced"));
    assert_eq!(
        (adv.quantity, adv.amount.to_string()),
        (Decimal::from(2), "18.00".into())
    );
    for period in [nov(), dec] {
        let clean = reconcile(&w.pipeline, period).await.unwrap();
        assert!(clean.is_clean(), "{clean:#?}");
    }
}

async fn a_kind_for_a_number_no_service_has_is_refused(app: TestApp) {
    let _w = build(&app).await;
    let e = app
        .store
        .set_extension_kind(&app.actor(), "0299999999", ExtensionKind::Advanced)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("0299999999") && e.contains("no service"), "{e}");
}

backend_tests!(
    a_plan_bills_each_extension_kind_as_its_own_line_and_a_billed_month_keeps_it,
    a_kind_for_a_number_no_service_has_is_refused,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_imported_and_a_plan_file_with_extension_prices_are_taken_from_the_command_line() {
    use crate::common::world::service;
    let app = TestApp::sqlite().await;
    let (sid, _) = app
        .store
        .import_service(
            &app.actor(),
            &service(
                "sip-1",
                None,
                "49.95",
                &["0290001000", "0290001001", "0290001002"],
            ),
        )
        .await
        .unwrap();
    let dir = app.dir.path().to_path_buf();
    std::fs::write(
        dir.join("kinds.csv"),
        "user_ref,kind\n02 9000 1000,advanced\n0290001001,Advanced\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("bad.csv"),
        "user_ref,kind\n0290001002,premium\n0299999999,standard\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("plan.toml"),
        "kind = \"cost_plus\"\nmultiplier = \"1.3\"\n\n[extensions]\nstandard = \"5.00\"\n\
         advanced = [{ price = \"8.00\" }, { from = \"2027-01-01\", price = \"9.00\" }]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("typo.toml"),
        "kind = \"cost_plus\"\nmultiplier = \"1.3\"\n\n[extensions]\npremium = \"5.00\"\n",
    )
    .unwrap();
    let url = app.database_url.clone();
    let sid_text = sid.to_string();
    let outs = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            assert_cmd::Command::cargo_bin("rebilld")
                .unwrap()
                .current_dir(&dir)
                .env_remove("RUST_LOG")
                .env("REBILL_DATABASE__URL", &url)
                .args(args)
                .output()
                .unwrap()
        };
        [
            run(&["extension", "import", "bad.csv"]),
            run(&["extension", "import", "kinds.csv"]),
            run(&["cdr", "plan", "--service", &sid_text, "typo.toml"]),
            run(&["cdr", "plan", "--service", &sid_text, "plan.toml"]),
            run(&["extension", "list", "--service", &sid_text]),
        ]
    })
    .await
    .unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let [bad, kinds, typo, plan, list] = &outs;
    assert!(!bad.status.success(), "{}", text(bad));
    assert!(
        text(bad).contains("bad.csv:2") && text(bad).contains("bad.csv:3"),
        "each bad row named by file and line: {}",
        text(bad)
    );
    assert!(kinds.status.success(), "{}", text(kinds));
    assert!(
        !typo.status.success() && text(typo).contains("premium"),
        "{}",
        text(typo)
    );
    assert!(plan.status.success(), "{}", text(plan));
    let listed = text(list);
    assert_eq!(listed.matches("advanced").count(), 2, "{listed}");
    assert_eq!(listed.matches("standard").count(), 1, "{listed}");
    let prices = app.store.extension_prices().await.unwrap();
    let adv = prices[&sid.get()].of(ExtensionKind::Advanced).unwrap();
    assert_eq!(adv.on("2027-01-01".parse().unwrap()).to_string(), "9.00");
    assert_eq!(adv.on("2026-12-31".parse().unwrap()).to_string(), "8.00");
}
