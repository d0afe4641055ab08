//! `rebilld invoice void NUMBER --reason TEXT` (issue 15 "Invoice actions"): Xero VOIDED while
//! unpaid, a credit note once paid; Autotask charges deleted while unbilled, corrected once billed;
//! through the outbox (a lost answer does not void or credit twice), audited, known to reconcile,
//! and settled: neither a resync of the period nor the next run bills it again.

use chrono::Duration;
use rebill::clock::Clock;
use rebill::domain::{Customer, OutboxAction, OutboxStatus, Period};
use rebill::pipeline::invoice_actions::void;
use rebill::pipeline::reconcile;
use rebill::sandbox::Fault;
use rebill::store::Actor;
use rust_decimal::Decimal;

use crate::common::TestApp;
use crate::common::world::{World, build, nov};

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

async fn number_of(app: &TestApp, c: &Customer) -> String {
    app.store
        .invoices(Some(nov()), Some(c.id))
        .await
        .unwrap()
        .remove(0)
        .number
}

fn contact(c: &Customer) -> String {
    c.target.xero_contact().unwrap().to_string()
}

fn xero_status(w: &World, number: &str) -> String {
    w.sandboxes
        .xero
        .invoices()
        .iter()
        .find(|i| i["Reference"] == number)
        .map(|i| i["Status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn anna() -> Actor {
    Actor::new("ops-anna")
}

async fn assert_reconcile_clean(w: &World) {
    let r = reconcile(&w.pipeline, nov()).await.unwrap();
    assert!(r.is_clean(), "{r:#?}");
}

async fn an_unpaid_xero_invoice_is_voided_in_xero_audited_and_reconcile_stays_clean(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    assert_eq!(xero_status(&w, &number), "AUTHORISED");

    let dry = void(&w.pipeline, &number, "billed in error", &anna(), true)
        .await
        .unwrap();
    assert!(
        dry.plan.iter().any(|l| l.contains("set to VOIDED")),
        "{dry:#?}"
    );
    let inv = app.store.invoice_by_number(&number).await.unwrap();
    assert!(inv.voided.is_none(), "a dry run changes nothing");
    assert_eq!(xero_status(&w, &number), "AUTHORISED");

    let r = void(&w.pipeline, &number, "billed in error", &anna(), false)
        .await
        .unwrap();
    assert!(r.pushed.as_ref().unwrap().failed.is_empty(), "{r:#?}");
    assert_eq!(xero_status(&w, &number), "VOIDED");
    assert_eq!(
        w.sandboxes.xero.net_of_contact(&contact(&w.enabled)),
        d("0")
    );
    assert!(w.sandboxes.xero.credit_notes().is_empty());

    let inv = app.store.invoice_by_number(&number).await.unwrap();
    let v = inv.voided.clone().expect("recorded as voided");
    assert_eq!(
        (v.by.as_str(), v.reason.as_str()),
        ("ops-anna", "billed in error")
    );
    assert!(inv.total().is_zero());
    assert_eq!(inv.xero_status.as_deref(), Some("VOIDED"));
    let ledger = app.store.ledger(Some(inv.id)).await.unwrap();
    assert!(
        ledger.iter().any(|l| l.action == OutboxAction::XeroUpdate
            && l.remote_status.as_deref().unwrap_or("").contains("VOIDED")),
        "{ledger:#?}"
    );
    let audit = app
        .store
        .audit_log(Some("invoice"), Some(&inv.id.to_string()), 10)
        .await
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.action == "void" && a.actor == "ops-anna"),
        "{audit:?}"
    );
    assert_reconcile_clean(&w).await;
}

async fn a_paid_xero_invoice_is_credited_in_full_and_reconcile_stays_clean(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    let who = contact(&w.enabled);
    let billed = w.sandboxes.xero.net_of_contact(&who);
    assert!(billed > d("0"));
    w.sandboxes.xero.pay(&number);

    let dry = void(&w.pipeline, &number, "goodwill", &anna(), true)
        .await
        .unwrap();
    assert!(
        dry.plan.iter().any(|l| l.contains("credit note")),
        "{dry:#?}"
    );
    void(&w.pipeline, &number, "goodwill", &anna(), false)
        .await
        .unwrap();
    assert_eq!(
        xero_status(&w, &number),
        "PAID",
        "a paid invoice cannot be voided"
    );
    let notes = w.sandboxes.xero.credit_notes();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert_eq!(
        notes[0]["SubTotal"]
            .to_string()
            .trim_matches('"')
            .parse::<Decimal>()
            .unwrap(),
        billed
    );
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("0"));
    assert_reconcile_clean(&w).await;
}

async fn a_part_paid_xero_invoice_is_credited_in_full_and_the_credit_settles_what_is_due(
    app: TestApp,
) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    let who = contact(&w.enabled);
    w.sandboxes.xero.pay_part(&number, d("50"));
    let invoice = |w: &World| {
        w.sandboxes
            .xero
            .invoices()
            .into_iter()
            .find(|i| i["Reference"] == number.as_str())
            .unwrap()
    };
    let num = |v: &serde_json::Value| v.to_string().trim_matches('"').parse::<Decimal>().unwrap();
    let total = num(&invoice(&w)["Total"]);
    let r = void(&w.pipeline, &number, "disputed", &anna(), false)
        .await
        .unwrap();
    assert!(r.pushed.as_ref().unwrap().failed.is_empty(), "{r:#?}");
    let notes = w.sandboxes.xero.credit_notes();
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert_eq!(num(&notes[0]["Total"]), total, "credited in full");
    assert_eq!(
        num(&notes[0]["RemainingCredit"]),
        d("50"),
        "what was paid is left as credit, to refund"
    );
    let inv = invoice(&w);
    assert_eq!(
        num(&inv["AmountDue"]),
        d("0"),
        "nothing left to chase: {inv:#}"
    );
    assert_eq!(inv["Status"], "PAID");
    assert_eq!(w.sandboxes.xero.net_of_contact(&who), d("0"));
    assert_reconcile_clean(&w).await;
}

async fn unbilled_autotask_charges_are_deleted_and_reconcile_stays_clean(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.autotask).await;
    let prefix = format!("rb {} c{} ", nov(), w.autotask.id);
    let mine = |w: &World| {
        w.sandboxes
            .autotask
            .charges()
            .into_iter()
            .filter(|c| {
                c["purchaseOrderNumber"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&prefix))
            })
            .count()
    };
    assert!(mine(&w) > 0);
    let dry = void(&w.pipeline, &number, "wrong contract", &anna(), true)
        .await
        .unwrap();
    assert!(dry.plan.iter().any(|l| l.contains("deleted")), "{dry:#?}");
    let r = void(&w.pipeline, &number, "wrong contract", &anna(), false)
        .await
        .unwrap();
    assert!(r.pushed.as_ref().unwrap().failed.is_empty(), "{r:#?}");
    assert_eq!(mine(&w), 0, "every unbilled charge deleted");
    assert_reconcile_clean(&w).await;
}

async fn billed_autotask_charges_are_corrected_to_nothing_and_reconcile_stays_clean(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.autotask).await;
    let prefix = format!("rb {} c{} ", nov(), w.autotask.id);
    w.sandboxes.autotask.bill_all_charges();
    let before = w.sandboxes.autotask.charges().len();
    assert!(w.sandboxes.autotask.billed_with_marker(&prefix) > d("0"));
    let dry = void(&w.pipeline, &number, "wrong contract", &anna(), true)
        .await
        .unwrap();
    assert!(
        dry.plan.iter().any(|l| l.contains("correcting charge")),
        "{dry:#?}"
    );
    let r = void(&w.pipeline, &number, "wrong contract", &anna(), false)
        .await
        .unwrap();
    assert!(r.pushed.as_ref().unwrap().failed.is_empty(), "{r:#?}");
    assert!(
        w.sandboxes.autotask.charges().len() > before,
        "correcting charges added"
    );
    assert_eq!(w.sandboxes.autotask.billed_with_marker(&prefix), d("0"));
    assert_reconcile_clean(&w).await;
}

async fn a_second_void_is_refused_naming_the_invoice_and_changes_nothing(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    void(&w.pipeline, &number, "billed in error", &anna(), false)
        .await
        .unwrap();
    let outbox = app.store.outbox(None).await.unwrap().len();
    let requests = w.sandboxes.xero.requests();
    let e = void(&w.pipeline, &number, "again", &Actor::new("ops-bob"), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&number) && e.contains("already voided") && e.contains("ops-anna"),
        "{e}"
    );
    assert_eq!(app.store.outbox(None).await.unwrap().len(), outbox);
    let e = rebill::pipeline::invoice_actions::email_again(&w.pipeline, &number, &anna())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("voided"),
        "a voided invoice is not emailed again: {e}"
    );
    assert_eq!(w.sandboxes.xero.requests(), requests, "nothing sent");
    let e = void(&w.pipeline, &number, "  ", &anna(), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("reason"), "{e}");
}

async fn a_lost_answer_mid_void_neither_voids_nor_credits_twice(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    // The enabled customer's invoice is paid (a credit note), the disabled one's is not (VOIDED).
    let paid = number_of(&app, &w.enabled).await;
    let unpaid = number_of(&app, &w.disabled).await;
    w.sandboxes.xero.pay(&paid);
    let xero = &w.sandboxes.xero;
    // Each request's answer is lost after Xero did the work, and its retry is held off for an
    // hour (parked); by then Xero has forgotten the Idempotency-Key.
    let later = || Fault::Status {
        status: 429,
        body: serde_json::json!({"Title": "Too Many Requests"}),
        retry_after: Some(3600),
    };
    xero.faults
        .push("PUT", "/CreditNotes", Fault::DropAfterWork);
    xero.faults.push("PUT", "/CreditNotes", later());
    xero.faults.push("POST", "/Invoices/", Fault::DropAfterWork);
    xero.faults.push("POST", "/Invoices/", later());

    for number in [&paid, &unpaid] {
        let r = void(&w.pipeline, number, "billed in error", &anna(), false)
            .await
            .unwrap();
        let pushed = r.pushed.unwrap();
        assert!(
            pushed.failed.is_empty(),
            "a lost answer is retried, not a failure: {pushed:?}"
        );
    }
    assert_eq!(
        xero.credit_notes().len(),
        1,
        "the lost credit note did reach Xero"
    );
    assert_eq!(xero_status(&w, &unpaid), "VOIDED");
    let open: Vec<_> = app
        .store
        .outbox(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.status == OutboxStatus::Pending)
        .collect();
    assert_eq!(
        open.len(),
        2,
        "both take-backs parked for a retry: {open:#?}"
    );

    xero.expire_idempotency_keys();
    w.clock.advance(Duration::hours(2));
    let report = w.pipeline.drain(w.clock.now()).await.unwrap();
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(xero.credit_notes().len(), 1, "credited once");
    assert_eq!(xero_status(&w, &unpaid), "VOIDED");
    assert_eq!(xero.net_of_contact(&contact(&w.enabled)), d("0"));
    assert!(
        app.store
            .outbox(None)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.status.is_open()),
        "every take-back done"
    );
    assert_reconcile_clean(&w).await;
}

async fn a_voided_invoice_stays_voided_on_resync_and_the_next_run_does_not_bill_it_again(
    app: TestApp,
) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    let number = number_of(&app, &w.enabled).await;
    let voided = app.store.invoice_by_number(&number).await.unwrap();
    // The keys November's charges would carry on a later invoice (calls keep theirs).
    let late_keys: Vec<String> = app
        .store
        .invoice_lines(voided.id)
        .await
        .unwrap()
        .iter()
        .map(|l| match l.charge_key.as_str() {
            k if k.contains("-calls-") => k.to_string(),
            k => format!("{k}-{}", nov()),
        })
        .collect();
    void(&w.pipeline, &number, "billed in error", &anna(), false)
        .await
        .unwrap();
    let invoices = w.sandboxes.xero.invoices().len();

    let r = w.resync(nov()).await;
    let mine: Vec<_> = r
        .plan
        .actions
        .iter()
        .filter(|a| a.invoice.as_deref() == Some(number.as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert!(mine[0].description.contains("left voided"), "{mine:#?}");
    assert_eq!(xero_status(&w, &number), "VOIDED");
    assert_eq!(w.sandboxes.xero.invoices().len(), invoices);

    let dec = Period::parse("2026-12").unwrap();
    w.pipeline.run_period(dec).await.unwrap();
    let lines = app
        .store
        .invoice_lines(
            app.store
                .invoices(Some(dec), Some(w.enabled.id))
                .await
                .unwrap()[0]
                .id,
        )
        .await
        .unwrap();
    assert!(!late_keys.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| !late_keys.iter().any(|k| k == l.charge_key.as_str())),
        "November's charges are settled by the void, not billed late in December: {lines:#?}"
    );
    assert_reconcile_clean(&w).await;
}

backend_tests!(
    an_unpaid_xero_invoice_is_voided_in_xero_audited_and_reconcile_stays_clean,
    a_paid_xero_invoice_is_credited_in_full_and_reconcile_stays_clean,
    a_part_paid_xero_invoice_is_credited_in_full_and_the_credit_settles_what_is_due,
    unbilled_autotask_charges_are_deleted_and_reconcile_stays_clean,
    billed_autotask_charges_are_corrected_to_nothing_and_reconcile_stays_clean,
    a_second_void_is_refused_naming_the_invoice_and_changes_nothing,
    a_lost_answer_mid_void_neither_voids_nor_credits_twice,
    a_voided_invoice_stays_voided_on_resync_and_the_next_run_does_not_bill_it_again,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_void_on_the_command_line_dry_runs_then_voids_shows_it_and_refuses_a_second() {
    use rebill::domain::{BillingTarget, NewCustomer, NonEmpty};
    let app = TestApp::sqlite().await;
    let c = app
        .store
        .add_customer(
            &app.actor(),
            &NewCustomer {
                external_ref: None,
                name: NonEmpty::parse("name", "Acme").unwrap(),
                enabled: true,
                target: BillingTarget::Xero { contact_id: None },
                email: None,
                details: Default::default(),
                payment_terms_days: None,
            },
        )
        .await
        .unwrap();
    let rebill::store::Db::Sqlite(pool) = app.store.db() else {
        unreachable!()
    };
    // An invoice whose create has not been sent yet (Xero is not configured here).
    let at = chrono::Utc::now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO invoices (customer_id, period, number, destination, issue_date, due_date, \
         currency, total_micros, email_decision, created_at, updated_at) \
         VALUES ($1, '2026-11', 'RB-7', 'xero', '2026-11-01', '2026-11-15', 'AUD', 49950000, 'send', $2, $2) \
         RETURNING id",
    )
    .bind(c.id.get())
    .bind(at)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outbox (idempotency_key, action, invoice_id, status, not_before, next_attempt_at, \
         created_at, updated_at) VALUES ('xero:RB-7', 'xero_invoice', $1, 'pending', $2, $2, $2, $2)",
    )
    .bind(id)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
    let dir = app.dir.path().to_path_buf();
    let url = app.database_url.clone();
    let run = move |args: &[&str]| {
        assert_cmd::Command::cargo_bin("rebilld")
            .unwrap()
            .current_dir(&dir)
            .env_remove("RUST_LOG")
            .env("REBILL_DATABASE__URL", &url)
            .args(["--actor", "ops-anna"])
            .args(args)
            .output()
            .unwrap()
    };
    let (dry, real, show, again) = tokio::task::spawn_blocking(move || {
        let void = ["invoice", "void", "RB-7", "--reason", "billed in error"];
        let dry = run(&[&void[..], &["--dry-run"]].concat());
        let real = run(&void);
        let show = run(&["invoice", "show", "RB-7"]);
        let again = run(&void);
        (dry, real, show, again)
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
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(text(&dry).contains("would be voided"), "{}", text(&dry));
    assert!(
        text(&dry).contains("cancelled: never sent"),
        "{}",
        text(&dry)
    );
    assert!(real.status.success(), "{}", text(&real));
    assert!(text(&real).contains("RB-7: voided"), "{}", text(&real));
    assert!(
        text(&real).contains("voided locally only"),
        "{}",
        text(&real)
    );
    let shown = text(&show);
    assert!(
        shown.contains("voided") && shown.contains("ops-anna") && shown.contains("billed in error"),
        "{shown}"
    );
    assert!(!again.status.success(), "{}", text(&again));
    assert!(text(&again).contains("already voided"), "{}", text(&again));
    let inv = app.store.invoice_by_number("RB-7").await.unwrap();
    assert!(inv.voided.is_some() && inv.total().is_zero());
    let outbox = app.store.outbox(Some(inv.id)).await.unwrap();
    assert_eq!(outbox[0].status, OutboxStatus::Cancelled, "{outbox:?}");
}
