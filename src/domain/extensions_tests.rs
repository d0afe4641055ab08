use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;
use crate::domain::billing::{BilledCharge, BillingSettings, Holding, Snapshot, compute_invoices};
use crate::domain::customer::BusinessDetails;
use crate::domain::owed::Charge;
use crate::domain::{
    AssignmentState, BillingTarget, Customer, CustomerId, Email, NonEmpty, Period, Service,
    ServiceId,
};

fn m(s: &str) -> Money {
    Money::parse(s).unwrap()
}

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn settings() -> BillingSettings {
    BillingSettings {
        payment_terms_days: 14,
        auto_send: true,
        currency: "AUD".into(),
        number_prefix: "RB-".into(),
        default_account_code: Some("200".into()),
        default_tax_type: Some("OUTPUT".into()),
        catch_up_months: 3,
    }
}

fn world(starts: &str, months: &[(&str, u32, &str)]) -> Snapshot {
    let sid = ServiceId::new(1).unwrap();
    let mut extensions = BTreeMap::new();
    for (month, advanced, plan) in months {
        extensions.insert(
            (sid, p(month)),
            ExtensionMonth {
                counts: BTreeMap::from([
                    (ExtensionKind::Standard, 2),
                    (ExtensionKind::Advanced, *advanced),
                ]),
                prices: plan_prices(plan),
            },
        );
    }
    Snapshot {
        customers: vec![Customer {
            id: CustomerId::new(1).unwrap(),
            external_ref: None,
            name: NonEmpty::parse("n", "Acme").unwrap(),
            enabled: true,
            target: BillingTarget::Xero { contact_id: None },
            email: Some(Email::parse("ops@example.com").unwrap()),
            details: BusinessDetails::default(),
            payment_terms_days: None,
        }],
        services: vec![Service {
            id: sid,
            external_ref: "s1".into(),
            parent_id: None,
            name: NonEmpty::parse("n", "SIP trunk").unwrap(),
            kind: "voip".into(),
            rebill_enabled: true,
            is_parent: false,
            monthly_price: m("49.95"),
            monthly_cost: m("10"),
            xero_account_code: None,
            xero_tax_type: None,
            xero_item_code: None,
            users: vec![],
        }],
        assignments: vec![Holding {
            service_id: sid,
            customer_id: CustomerId::new(1).unwrap(),
            state: AssignmentState::Assigned,
            starts_on: d(starts),
            ends_on: None,
            restored_on: None,
            autotask: None,
        }],
        extensions,
        ..Default::default()
    }
}

/// A plan file's `[extensions]` table, as TOML.
fn plan_prices(toml_text: &str) -> ExtensionPrices {
    toml::from_str(toml_text).unwrap()
}

const PLAN: &str = "standard = \"5.00\"\nadvanced = \"8.00\"\n";

fn extension_lines(s: &Snapshot, period: &str) -> Vec<crate::domain::billing::Line> {
    let c = compute_invoices(s, p(period), &settings());
    c.invoices[0]
        .lines
        .iter()
        .filter(|l| l.charge_key.as_str().contains("-ext-"))
        .cloned()
        .collect()
}

#[test]
fn a_plan_prices_each_kind_with_a_plain_price_or_dated_prices() {
    let e = plan_prices(
        "standard = \"5.00\"\n[[advanced]]\nprice = \"8.00\"\n[[advanced]]\nfrom = \"2027-01-01\"\nprice = \"9.00\"\n",
    );
    let adv = e.of(ExtensionKind::Advanced).unwrap();
    assert_eq!(adv.on(d("2026-12-31")), m("8.00"));
    assert_eq!(adv.on(d("2027-01-01")), m("9.00"));
    assert_eq!(
        e.of(ExtensionKind::Standard).unwrap().on(d("2020-01-01")),
        m("5.00")
    );
    // Stored as JSON and read back the same.
    let json = serde_json::to_string(&e).unwrap();
    assert_eq!(serde_json::from_str::<ExtensionPrices>(&json).unwrap(), e);
}

#[test]
fn an_unknown_kind_a_negative_price_or_an_unknown_key_is_refused() {
    for (text, why) in [
        ("premium = \"5.00\"\n", "premium"),
        ("advanced = \"-1.00\"\n", "negative"),
        (
            "[[advanced]]\nprice = \"8.00\"\nsince = \"2027-01-01\"\n",
            "advanced",
        ),
    ] {
        let e = toml::from_str::<ExtensionPrices>(text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{text}: {e}");
    }
    assert_eq!(
        "Advanced".parse::<ExtensionKind>().unwrap(),
        ExtensionKind::Advanced
    );
}

#[test]
fn each_kind_is_its_own_line_count_times_the_monthly_price() {
    let s = world("2026-01-01", &[("2026-11", 3, PLAN)]);
    let lines = extension_lines(&s, "2026-11");
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let adv = lines
        .iter()
        .find(|l| l.charge_key.as_str() == "svc-1-ext-advanced")
        .unwrap();
    assert_eq!(adv.quantity, Decimal::from(3));
    assert_eq!(adv.unit_price, m("8.00"));
    assert_eq!(adv.amount, m("24.00"));
    assert_eq!(
        adv.description,
        "SIP trunk — Advanced extensions × 3 @ 8.00 — November 2026"
    );
    let std = lines
        .iter()
        .find(|l| l.charge_key.as_str() == "svc-1-ext-standard")
        .unwrap();
    assert_eq!(std.amount, m("10.00"));
}

#[test]
fn a_part_month_is_prorated_per_extension_like_the_fee() {
    // Held 16–30 November: 15 of 30 days; 8.00 × 15 ÷ 30 = 4.00 an extension.
    let s = world("2026-11-16", &[("2026-11", 3, PLAN)]);
    let lines = extension_lines(&s, "2026-11");
    let adv = lines
        .iter()
        .find(|l| l.charge_key.as_str() == "svc-1-ext-advanced")
        .unwrap();
    assert_eq!(
        (adv.quantity, adv.unit_price, adv.amount),
        (Decimal::from(3), m("4.00"), m("12.00"))
    );
    assert!(
        adv.description.contains("15 of 30 days"),
        "{}",
        adv.description
    );
}

#[test]
fn a_price_change_mid_month_prices_each_day_at_its_own_price() {
    let plan =
        "[[advanced]]\nprice = \"8.00\"\n[[advanced]]\nfrom = \"2026-11-16\"\nprice = \"11.00\"\n";
    let s = world("2026-01-01", &[("2026-11", 1, plan)]);
    let lines = extension_lines(&s, "2026-11");
    // (15 × 8 + 15 × 11) ÷ 30 = 9.50.
    assert_eq!(
        lines.len(),
        1,
        "standard has no price in this plan: {lines:#?}"
    );
    assert_eq!(lines[0].amount, m("9.50"));
}

#[test]
fn each_month_bills_its_own_count_and_prices_so_a_billed_month_keeps_them() {
    // November was billed with 3 at 8.00; December has 5 at 9.00 (users added, a new plan).
    let s = world(
        "2026-01-01",
        &[
            ("2026-11", 3, PLAN),
            ("2026-12", 5, "advanced = \"9.00\"\n"),
        ],
    );
    let nov = extension_lines(&s, "2026-11");
    let adv = nov
        .iter()
        .find(|l| l.charge_key.as_str() == "svc-1-ext-advanced")
        .unwrap();
    assert_eq!(adv.amount, m("24.00"));
    let dec = extension_lines(&s, "2026-12");
    assert_eq!(dec.len(), 1, "{dec:#?}");
    assert_eq!(dec[0].amount, m("45.00"));
}

#[test]
fn extensions_billed_on_their_home_invoice_are_not_billed_again_later() {
    let mut s = world("2026-01-01", &[("2026-11", 3, PLAN), ("2026-12", 3, PLAN)]);
    s.billing_start = Some(p("2026-11"));
    for kind in ExtensionKind::ALL {
        let amount = if kind == ExtensionKind::Advanced {
            "24.00"
        } else {
            "10.00"
        };
        s.billed.push(BilledCharge {
            customer_id: CustomerId::new(1).unwrap(),
            on_invoice: p("2026-11"),
            charge: Charge::Extensions {
                service: ServiceId::new(1).unwrap(),
                kind,
                period: p("2026-11"),
            },
            amount: m(amount),
            removed: false,
        });
    }
    let keys: Vec<String> = extension_lines(&s, "2026-12")
        .iter()
        .map(|l| l.charge_key.as_str().to_string())
        .collect();
    assert_eq!(keys, vec!["svc-1-ext-standard", "svc-1-ext-advanced"]);
}

#[test]
fn an_extension_charge_key_reads_back_as_its_charge() {
    let c = Charge::Extensions {
        service: ServiceId::new(7).unwrap(),
        kind: ExtensionKind::Advanced,
        period: p("2026-11"),
    };
    for invoice in [p("2026-11"), p("2026-12")] {
        let key = c.key_on(invoice);
        assert_eq!(Charge::from_key(&key, invoice), Some(c), "{key}");
    }
    assert_eq!(
        c.key_on(p("2026-12")).as_str(),
        "svc-7-ext-advanced-2026-11"
    );
}
