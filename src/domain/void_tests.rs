use chrono::{NaiveDate, TimeZone, Utc};

use super::*;
use crate::domain::{CustomerId, InvoiceId, Money, Period};

fn invoice(destination: RemoteSystem, xero_id: Option<&str>) -> StoredInvoice {
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    StoredInvoice {
        id: InvoiceId::new(7).unwrap(),
        customer_id: CustomerId::new(3).unwrap(),
        customer_name: "Acme".into(),
        period: Period::parse("2026-11").unwrap(),
        number: "RB-7".into(),
        destination,
        issue_date: day,
        due_date: day,
        currency: "AUD".into(),
        total: Money::parse("49.95").unwrap(),
        email_decision: "send".into(),
        xero_contact_id: None,
        xero_invoice_id: xero_id.map(str::to_string),
        xero_status: None,
        emailed_at: None,
        revision: 1,
        voided: None,
    }
}

fn entry(
    id: i64,
    action: OutboxAction,
    line: Option<i64>,
    status: OutboxStatus,
    uncertain: bool,
) -> OutboxEntry {
    let t = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    OutboxEntry {
        id: OutboxId::new(id).unwrap(),
        idempotency_key: format!("k{id}"),
        action,
        invoice_id: InvoiceId::new(7).unwrap(),
        line_id: line.map(|l| LineId::new(l).unwrap()),
        depends_on: None,
        status,
        attempts: 1,
        not_before: t,
        next_attempt_at: t,
        last_error: None,
        remote_id: None,
        uncertain_since: uncertain.then_some(t),
    }
}

fn oid(n: i64) -> OutboxId {
    OutboxId::new(n).unwrap()
}

fn line(n: i64) -> LineId {
    LineId::new(n).unwrap()
}

use OutboxAction::*;
use OutboxStatus::*;

#[test]
fn a_xero_invoice_created_is_taken_back_and_its_pending_email_cancelled() {
    let inv = invoice(RemoteSystem::Xero, Some("x-1"));
    let outbox = [
        entry(1, XeroInvoice, None, Done, false),
        entry(2, XeroEmail, None, Pending, false),
    ];
    let w = void_work(&inv, &outbox).unwrap();
    assert_eq!(w.cancel, vec![oid(2)]);
    assert_eq!(w.take_back, vec![TakeBack::XeroInvoice]);
    assert_eq!(w.take_back[0].action(), XeroUpdate);
    assert_eq!(w.take_back[0].key(inv.id), "xero-void:7");
}

#[test]
fn an_invoice_never_sent_is_voided_locally_with_its_actions_cancelled() {
    let inv = invoice(RemoteSystem::Xero, None);
    let outbox = [
        entry(1, XeroInvoice, None, Failed, false),
        entry(2, XeroEmail, None, Pending, false),
    ];
    let w = void_work(&inv, &outbox).unwrap();
    assert_eq!(w.cancel, vec![oid(1), oid(2)]);
    assert!(w.take_back.is_empty());
}

#[test]
fn only_the_autotask_lines_that_reached_autotask_are_taken_back() {
    let inv = invoice(RemoteSystem::Autotask, None);
    let outbox = [
        entry(1, AutotaskCharge, Some(10), Done, false),
        entry(2, AutotaskCharge, Some(11), Pending, false),
        entry(3, AutotaskUpdate, Some(10), Done, false),
        entry(4, AutotaskCharge, Some(12), Done, false),
    ];
    let w = void_work(&inv, &outbox).unwrap();
    assert_eq!(w.cancel, vec![oid(2)]);
    assert_eq!(
        w.take_back,
        vec![
            TakeBack::AutotaskLine(line(10)),
            TakeBack::AutotaskLine(line(12))
        ]
    );
    assert_eq!(w.take_back[1].key(inv.id), "at-void:7:12");
}

#[test]
fn an_action_in_flight_or_sent_without_an_answer_refuses_the_void() {
    let inv = invoice(RemoteSystem::Xero, None);
    for (e, why) in [
        (entry(5, XeroInvoice, None, InFlight, false), "in flight"),
        (entry(5, XeroInvoice, None, Pending, true), "pending"),
    ] {
        let r = void_work(&inv, &[e]).unwrap_err();
        let text = r.to_string();
        assert!(
            text.contains("outbox entry 5") && text.contains(why),
            "{text}"
        );
        assert!(text.contains("rebilld push"), "{text}");
    }
}

#[test]
fn a_voided_invoice_is_not_voided_again() {
    let mut inv = invoice(RemoteSystem::Xero, Some("x-1"));
    inv.voided = Some(Voided {
        at: Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap(),
        by: "ops-anna".into(),
        reason: "billed in error".into(),
    });
    let text = void_work(&inv, &[]).unwrap_err().to_string();
    assert_eq!(
        text,
        "invoice RB-7 is already voided (on 2026-12-01 02:00 UTC by ops-anna: billed in error); \
         nothing was changed"
    );
}

#[test]
fn a_pending_duplicate_removal_still_goes_the_second_document_bills_too() {
    let inv = invoice(RemoteSystem::Xero, Some("x-1"));
    let outbox = [
        entry(1, XeroInvoice, None, Done, false),
        entry(2, XeroRemoveDuplicate, None, Pending, false),
        entry(3, XeroEmail, None, Failed, false),
    ];
    let w = void_work(&inv, &outbox).unwrap();
    assert_eq!(w.cancel, vec![oid(3)]);
    assert_eq!(w.take_back, vec![TakeBack::XeroInvoice]);
}
