use super::*;
use crate::domain::customer::BusinessDetails;
use crate::domain::owed::Charge;
use crate::domain::{AssignmentState, ContractId, Email, MaterialCodeId, NonEmpty, ProductId};

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

fn customer(id: i64, enabled: bool, target: BillingTarget) -> Customer {
    Customer {
        id: CustomerId::new(id).unwrap(),
        external_ref: None,
        name: NonEmpty::parse("n", &format!("Customer {id}")).unwrap(),
        enabled,
        target,
        email: Some(Email::parse("ops@example.com").unwrap()),
        details: BusinessDetails::default(),
        payment_terms_days: None,
    }
}

fn xero() -> BillingTarget {
    BillingTarget::Xero { contact_id: None }
}

fn service(id: i64, price: &str) -> Service {
    Service {
        id: ServiceId::new(id).unwrap(),
        external_ref: format!("s{id}"),
        parent_id: None,
        name: NonEmpty::parse("n", &format!("SIP {id}")).unwrap(),
        kind: "voip".into(),
        rebill_enabled: true,
        is_parent: false,
        monthly_price: m(price),
        monthly_cost: m("10"),
        xero_account_code: None,
        xero_tax_type: None,
        xero_item_code: None,
        users: vec![],
    }
}

fn assigned(service: i64, customer: i64, starts: &str) -> Holding {
    Holding {
        service_id: ServiceId::new(service).unwrap(),
        customer_id: CustomerId::new(customer).unwrap(),
        state: AssignmentState::Assigned,
        starts_on: d(starts),
        ends_on: None,
        restored_on: None,
        autotask: None,
    }
}

fn coding() -> AutotaskCoding {
    AutotaskCoding {
        contract_id: ContractId::new(9).unwrap(),
        product_id: ProductId::new(8).unwrap(),
        material_code_id: MaterialCodeId::new(7).unwrap(),
    }
}

fn item(
    id: i64,
    customer: i64,
    kind: ItemKind,
    status: ItemStatus,
    amount: &str,
    starts: Option<&str>,
) -> Item {
    Item {
        id: ItemId::new(id).unwrap(),
        customer_id: CustomerId::new(customer).unwrap(),
        kind,
        description: NonEmpty::parse("d", "Support").unwrap(),
        amount: m(amount),
        starts_on: starts.map(d),
        autotask: None,
        status,
        invoiced_period: None,
    }
}

fn one(snapshot: &Snapshot, period: &str) -> ComputedInvoice {
    let c = compute_invoices(snapshot, p(period), &settings());
    assert_eq!(c.invoices.len(), 1, "{c:?}");
    c.invoices[0].clone()
}

#[test]
fn assigned_service_is_billed_in_advance_for_the_whole_month() {
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "49.95")],
        assignments: vec![assigned(1, 1, "2026-01-01")],
        ..Default::default()
    };
    let inv = one(&s, "2026-11");
    assert_eq!(inv.total, m("49.95"));
    assert_eq!(inv.lines[0].kind, LineKind::ServiceFee);
    assert_eq!(inv.issue_date, d("2026-11-01"));
    assert_eq!(inv.due_date, d("2026-11-15"));
    assert_eq!(inv.email, EmailDecision::Send);
}

#[test]
fn a_part_month_is_prorated_by_days_and_rounded_once() {
    // 30-day month, from the 16th: 15 of 30 days.
    let cases = [
        ("2026-11-16", "2026-11", "49.95", "24.98"), // 24.975 → half away from zero
        ("2026-11-01", "2026-11", "49.95", "49.95"),
        ("2026-11-30", "2026-11", "30.00", "1.00"),
        ("2028-02-15", "2028-02", "29.00", "15.00"), // leap February: 15 of 29 days
        ("2026-02-15", "2026-02", "28.00", "14.00"), // 14 of 28 days
        // 10 of 31 days of 100: 32.258… → 32.26; a rounded day rate (3.23 × 10) would say 32.30.
        ("2026-10-22", "2026-10", "100.00", "32.26"),
    ];
    for (starts, period, price, expected) in cases {
        let s = Snapshot {
            customers: vec![customer(1, true, xero())],
            services: vec![service(1, price)],
            assignments: vec![assigned(1, 1, starts)],
            ..Default::default()
        };
        assert_eq!(one(&s, period).total, m(expected), "{starts} {price}");
    }
}

#[test]
fn a_service_starting_after_the_period_is_not_billed_and_the_customer_is_skipped() {
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "10")],
        assignments: vec![assigned(1, 1, "2026-12-01")],
        ..Default::default()
    };
    let c = compute_invoices(&s, p("2026-11"), &settings());
    assert!(c.invoices.is_empty());
    assert_eq!(c.skipped[0].reason, SkipReason::NoBillableServices);
}

#[test]
fn excluded_service_is_left_off_with_its_calls() {
    let mut excluded = assigned(2, 1, "2026-01-01");
    excluded.state = AssignmentState::Excluded;
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "10"), service(2, "20")],
        assignments: vec![assigned(1, 1, "2026-01-01"), excluded],
        usage: vec![UsageTotal {
            service_id: ServiceId::new(2).unwrap(),
            customer_id: CustomerId::new(1).unwrap(),
            period: p("2026-10"),
            calls: 3,
            seconds: 300,
            cost: m("1"),
            price: m("2"),
        }],
        ..Default::default()
    };
    let inv = one(&s, "2026-11");
    assert_eq!(inv.lines.len(), 1);
    assert_eq!(inv.total, m("10"));
}

#[test]
fn calls_of_the_previous_month_are_billed_in_arrears_rounded_once_per_line() {
    let usage = |period: &str, price: &str| UsageTotal {
        service_id: ServiceId::new(1).unwrap(),
        customer_id: CustomerId::new(1).unwrap(),
        period: p(period),
        calls: 7,
        seconds: 421,
        cost: m("0.5"),
        price: m(price),
    };
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "10")],
        assignments: vec![assigned(1, 1, "2026-01-01")],
        usage: vec![usage("2026-10", "3.456789"), usage("2026-11", "99")],
        ..Default::default()
    };
    let inv = one(&s, "2026-11");
    let calls: Vec<&Line> = inv
        .lines
        .iter()
        .filter(|l| l.kind == LineKind::Usage)
        .collect();
    assert_eq!(
        calls.len(),
        1,
        "only October's calls are on November's invoice"
    );
    assert_eq!(calls[0].amount, m("3.46"));
    assert_eq!(calls[0].charge_key.as_str(), "svc-1-calls-2026-10");
    assert!(calls[0].description.contains("7 calls"));
    assert_eq!(inv.total, m("13.46"));
}

#[test]
fn once_off_items_not_yet_invoiced_are_billed_and_invoiced_ones_are_not() {
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        items: vec![
            item(1, 1, ItemKind::Once, ItemStatus::Pending, "150", None),
            item(2, 1, ItemKind::Once, ItemStatus::Invoiced, "999", None),
            item(3, 1, ItemKind::Once, ItemStatus::Removed, "888", None),
        ],
        ..Default::default()
    };
    let inv = one(&s, "2026-11");
    assert_eq!(inv.total, m("150"));
    assert_eq!(inv.lines[0].source_item, Some(ItemId::new(1).unwrap()));
    assert!(inv.lines[0].kind.is_once_off());
}

#[test]
fn fees_and_recurring_items_are_owed_at_the_price_in_force_on_each_day() {
    use crate::domain::owed::{PriceChange, PriceHistory};
    let change = |from: Option<&str>, amount: &str| PriceChange {
        from: from.map(d),
        amount: m(amount),
    };
    let mut prices = Prices::default();
    // The service: 30.00, then 60.00 from 21 November (20 + 10 days of 30).
    prices.services.insert(
        ServiceId::new(1).unwrap(),
        PriceHistory::new([change(None, "30.00"), change(Some("2026-11-21"), "60.00")]),
    );
    // The item, from the 16th: 30 until 26 November, then 90 (11 + 5 days of 30).
    prices.items.insert(
        ItemId::new(1).unwrap(),
        PriceHistory::new([change(None, "30"), change(Some("2026-11-26"), "90")]),
    );
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "60.00")],
        assignments: vec![assigned(1, 1, "2026-01-01")],
        items: vec![item(
            1,
            1,
            ItemKind::Recurring,
            ItemStatus::Active,
            "90",
            Some("2026-11-16"),
        )],
        prices,
        ..Default::default()
    };
    let nov = one(&s, "2026-11");
    // (20 × 30 + 10 × 60) ÷ 30 = 40.00; (10 × 30 + 5 × 90) ÷ 30 = 25.00.
    let amounts: Vec<Money> = nov.lines.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, vec![m("40.00"), m("25.00")]);
    // October stays at October's price, whatever the catalogue says now.
    assert_eq!(one(&s, "2026-10").lines[0].amount, m("30.00"));
    assert_eq!(one(&s, "2026-12").total, m("150.00"));
}

#[test]
fn recurring_items_are_billed_every_run_prorated_in_their_first_month_until_removed() {
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        items: vec![
            item(
                1,
                1,
                ItemKind::Recurring,
                ItemStatus::Active,
                "30",
                Some("2026-11-16"),
            ),
            item(2, 1, ItemKind::Recurring, ItemStatus::Removed, "500", None),
        ],
        ..Default::default()
    };
    assert_eq!(one(&s, "2026-11").total, m("15"));
    assert_eq!(one(&s, "2026-12").total, m("30"));
}

#[test]
fn disabled_customer_is_invoiced_but_not_emailed() {
    let s = Snapshot {
        customers: vec![customer(1, false, xero())],
        services: vec![service(1, "10")],
        assignments: vec![assigned(1, 1, "2026-01-01")],
        ..Default::default()
    };
    assert_eq!(
        one(&s, "2026-11").email,
        EmailDecision::DoNotSend(NoEmailReason::CustomerDisabled)
    );
}

#[test]
fn auto_send_off_and_missing_email_are_not_emailed() {
    let mut c = customer(1, true, xero());
    c.email = None;
    let s = Snapshot {
        customers: vec![c],
        services: vec![service(1, "10")],
        assignments: vec![assigned(1, 1, "2026-01-01")],
        ..Default::default()
    };
    assert_eq!(
        one(&s, "2026-11").email,
        EmailDecision::DoNotSend(NoEmailReason::NoEmailAddress)
    );
    let mut quiet = settings();
    quiet.auto_send = false;
    let c = compute_invoices(&s, p("2026-11"), &quiet);
    assert_eq!(
        c.invoices[0].email,
        EmailDecision::DoNotSend(NoEmailReason::AutoSendOff)
    );
}

#[test]
fn active_customer_without_services_gets_no_invoice_and_a_recorded_reason() {
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        ..Default::default()
    };
    let c = compute_invoices(&s, p("2026-11"), &settings());
    assert!(c.invoices.is_empty());
    assert_eq!(
        c.skipped,
        vec![Skipped {
            customer_id: CustomerId::new(1).unwrap(),
            reason: SkipReason::NoBillableServices
        }]
    );
}

#[test]
fn autotask_lines_carry_contract_product_and_material_code() {
    let company = AutotaskCompanyId::new(174).unwrap();
    let mut a = assigned(1, 1, "2026-01-01");
    a.autotask = Some(coding());
    let s = Snapshot {
        customers: vec![customer(
            1,
            true,
            BillingTarget::Autotask {
                company_id: company,
            },
        )],
        services: vec![service(1, "10")],
        assignments: vec![a],
        ..Default::default()
    };
    let inv = one(&s, "2026-11");
    assert_eq!(
        inv.destination,
        Destination::Autotask {
            company_id: company
        }
    );
    assert_eq!(inv.lines[0].autotask, Some(coding()));
    assert_eq!(
        inv.email,
        EmailDecision::DoNotSend(NoEmailReason::AutotaskCustomer)
    );
}

#[test]
fn autotask_customer_with_an_uncoded_item_is_skipped_with_the_reason() {
    let company = AutotaskCompanyId::new(174).unwrap();
    let s = Snapshot {
        customers: vec![customer(
            1,
            true,
            BillingTarget::Autotask {
                company_id: company,
            },
        )],
        items: vec![item(4, 1, ItemKind::Once, ItemStatus::Pending, "5", None)],
        ..Default::default()
    };
    let c = compute_invoices(&s, p("2026-11"), &settings());
    assert!(c.invoices.is_empty());
    assert!(c.skipped[0].reason.to_string().contains("item 4"));
}

#[test]
fn customer_payment_terms_override_the_default() {
    let mut c = customer(1, true, xero());
    c.payment_terms_days = Some(30);
    let s = Snapshot {
        customers: vec![c],
        services: vec![service(1, "10")],
        assignments: vec![assigned(1, 1, "2026-01-01")],
        ..Default::default()
    };
    assert_eq!(one(&s, "2026-11").due_date, d("2026-12-01"));
}

#[test]
fn same_input_in_any_order_gives_the_same_output() {
    let mut s = Snapshot {
        customers: vec![customer(1, true, xero()), customer(2, true, xero())],
        services: vec![
            service(1, "10.10"),
            service(2, "20.20"),
            service(3, "33.33"),
        ],
        assignments: vec![
            assigned(1, 1, "2026-01-01"),
            assigned(2, 2, "2026-11-07"),
            assigned(3, 1, "2026-11-20"),
        ],
        items: vec![item(
            1,
            2,
            ItemKind::Once,
            ItemStatus::Pending,
            "1.01",
            None,
        )],
        ..Default::default()
    };
    let first = compute_invoices(&s, p("2026-11"), &settings());
    s.customers.reverse();
    s.services.reverse();
    s.assignments.reverse();
    assert_eq!(compute_invoices(&s, p("2026-11"), &settings()), first);
    // 10.10 + 33.33 × 11/30 (12.22) for customer 1; 20.20 × 24/30 (16.16) + 1.01 for customer 2.
    assert_eq!(
        first.invoices.iter().map(|i| i.total).sum::<Money>(),
        m("10.10") + m("12.22") + m("16.16") + m("1.01")
    );
}

#[test]
fn every_line_amount_is_its_quantity_times_unit_price_in_cents() {
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "49.95")],
        assignments: vec![assigned(1, 1, "2026-11-16")],
        items: vec![item(
            1,
            1,
            ItemKind::Recurring,
            ItemStatus::Active,
            "33.33",
            Some("2026-11-03"),
        )],
        ..Default::default()
    };
    for l in one(&s, "2026-11").lines {
        assert_eq!(
            Money::new(l.unit_price.amount() * l.quantity).round_cents(),
            l.amount
        );
        assert_eq!(l.amount, l.amount.round_cents());
    }
}

#[test]
fn a_service_back_from_the_trash_can_is_not_billed_late_for_the_months_it_was_left_off() {
    // Excluded before December's run, restored on 15 January: February's invoice bills February,
    // and late only 15–31 January; never December.
    let mut back = assigned(1, 1, "2026-01-01");
    back.restored_on = Some(d("2027-01-15"));
    let s = Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "31.00")],
        assignments: vec![back],
        billed: vec![BilledCharge {
            customer_id: CustomerId::new(1).unwrap(),
            on_invoice: p("2026-11"),
            charge: Charge::Fee {
                service: ServiceId::new(1).unwrap(),
                period: p("2026-11"),
            },
            amount: m("31.00"),
            removed: false,
        }],
        billing_start: Some(p("2026-11")),
        ..Default::default()
    };
    let inv = one(&s, "2027-02");
    let lines: Vec<(&str, Money)> = inv
        .lines
        .iter()
        .map(|l| (l.description.as_str(), l.amount))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("SIP 1 — 15–31 January 2027 (17 of 31 days)", m("17.00")),
            ("SIP 1 — February 2027", m("31.00")),
        ]
    );
}

#[test]
fn a_part_month_billed_late_is_its_own_line_and_is_not_billed_twice() {
    let s = |billed: Vec<BilledCharge>| Snapshot {
        customers: vec![customer(1, true, xero())],
        services: vec![service(1, "31.00")],
        assignments: vec![assigned(1, 1, "2027-01-20")],
        billed,
        billing_start: Some(p("2026-11")),
        ..Default::default()
    };
    let feb = one(&s(vec![]), "2027-02");
    assert_eq!(feb.lines[0].charge_key.as_str(), "svc-1-fee-2027-01");
    assert_eq!(
        feb.lines[0].description,
        "SIP 1 — 20–31 January 2027 (12 of 31 days)"
    );
    assert_eq!(feb.lines[0].amount, m("12.00"));
    // Once February's invoice carries it, January's own invoice (a resync) does not.
    let on_feb = BilledCharge {
        customer_id: CustomerId::new(1).unwrap(),
        on_invoice: p("2027-02"),
        charge: Charge::Fee {
            service: ServiceId::new(1).unwrap(),
            period: p("2027-01"),
        },
        amount: m("12.00"),
        removed: false,
    };
    let jan = compute_invoices(&s(vec![on_feb.clone()]), p("2027-01"), &settings());
    assert!(jan.invoices.is_empty(), "{jan:?}");
    // And March's does not bill it again (February's own fee is on February's invoice too).
    let feb_fee = BilledCharge {
        charge: Charge::Fee {
            service: ServiceId::new(1).unwrap(),
            period: p("2027-02"),
        },
        amount: m("31.00"),
        ..on_feb.clone()
    };
    let mar = one(&s(vec![on_feb, feb_fee]), "2027-03");
    assert_eq!(mar.lines.len(), 1, "{mar:?}");
}
