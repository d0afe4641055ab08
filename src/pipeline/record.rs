//! Step 3: record computed invoices with their outbox entries.

use chrono::Duration;
use sha2::{Digest, Sha256};

use super::PipelineError;
use crate::config::Config;
use crate::domain::billing::{
    BillingSettings, ChargeKey, Computed, ComputedInvoice, Destination, EmailDecision,
};
use crate::domain::{CustomerId, OutboxAction, Period, RemoteSystem};
use crate::store::Store;
use crate::store::billing::{NewInvoice, RecordOutcome};
use crate::store::outbox::NewAction;

pub fn settings(config: &Config) -> BillingSettings {
    BillingSettings {
        payment_terms_days: config.invoices.payment_terms_days,
        auto_send: config.invoices.auto_send,
        currency: config.business.currency.clone(),
        number_prefix: config.invoices.number_prefix.clone(),
        default_account_code: Some(config.xero.account_code.clone()),
        default_tax_type: Some(config.xero.tax_type.clone()),
        catch_up_months: config.invoices.catch_up_months,
    }
}

/// Records the run's invoices (each with its outbox entries) and the customers it skipped.
pub async fn record(
    store: &Store,
    config: &Config,
    period: Period,
    computed: &Computed,
) -> Result<RecordOutcome, PipelineError> {
    let invoices: Vec<NewInvoice> = computed.invoices.iter().map(new_invoice).collect();
    let (start, _) = period.bounds(config.business.tz());
    // Grace: invoices stay local drafts until late CDRs had their chance.
    let not_before = start + Duration::days(i64::from(config.invoices.grace_days));
    let outcome = store
        .record_invoices(
            &invoices,
            &config.invoices.number_prefix,
            config.invoices.start_number,
            not_before,
        )
        .await?;
    for s in &computed.skipped {
        store
            .record_skip(period, s.customer_id, &s.reason.to_string())
            .await?;
    }
    Ok(outcome)
}

/// How the email decision is stored: `send`, or the reason it is not sent.
pub fn email_decision(d: &EmailDecision) -> String {
    match d {
        EmailDecision::Send => "send".into(),
        EmailDecision::DoNotSend(reason) => format!("not emailed: {reason}"),
    }
}

fn new_invoice(d: &ComputedInvoice) -> NewInvoice {
    let mut actions = Vec::new();
    let (destination, xero_contact_id) = match &d.destination {
        Destination::Autotask { .. } => {
            for (i, l) in d.lines.iter().enumerate() {
                actions.push(NewAction {
                    action: OutboxAction::AutotaskCharge,
                    key: format!("at-charge:{}:{}:{}", d.period, d.customer_id, l.charge_key),
                    line: Some(i),
                    after: None,
                });
            }
            (RemoteSystem::Autotask, None)
        }
        Destination::Xero { contact_id } => {
            actions.push(NewAction {
                action: OutboxAction::XeroInvoice,
                key: format!("xero-invoice:{}:{}", d.period, d.customer_id),
                line: None,
                after: None,
            });
            if matches!(d.email, EmailDecision::Send) {
                actions.push(NewAction {
                    action: OutboxAction::XeroEmail,
                    key: format!("xero-email:{}:{}", d.period, d.customer_id),
                    line: None,
                    after: Some(0),
                });
            }
            (
                RemoteSystem::Xero,
                contact_id.as_ref().map(|c| c.to_string()),
            )
        }
    };
    NewInvoice {
        customer_id: d.customer_id,
        period: d.period,
        destination,
        issue_date: d.issue_date,
        due_date: d.due_date,
        currency: d.currency.clone(),
        email_decision: email_decision(&d.email),
        xero_contact_id,
        lines: d.lines.clone(),
        bills_items: d
            .lines
            .iter()
            .filter(|l| l.kind.is_once_off())
            .filter_map(|l| l.source_item)
            .collect(),
        actions,
    }
}

const MARKER_MAX: usize = 38;

/// The stable marker an Autotask charge carries (in `purchaseOrderNumber`, at most 50 characters),
/// so that a lost response is found again by querying before any create.
pub fn autotask_marker(
    period: Period,
    customer: CustomerId,
    charge_key: &ChargeKey,
    revision: u32,
) -> String {
    let readable = if revision <= 1 {
        format!("rb {period} c{customer} {charge_key}")
    } else {
        format!("rb {period} c{customer} {charge_key} r{revision}")
    };
    // Room is left for a correcting charge's " adj…" suffix within Autotask's 50 characters.
    if readable.len() <= MARKER_MAX {
        return readable;
    }
    let digest = Sha256::digest(readable.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("rb {period} c{customer} {hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_fit_autotask_and_stay_stable() {
        let c = CustomerId::new(12).unwrap();
        let nov = Period::parse("2026-11").unwrap();
        let key = |k: &str| ChargeKey::parse(k).unwrap();
        assert_eq!(
            autotask_marker(nov, c, &key("svc-3-fee"), 1),
            "rb 2026-11 c12 svc-3-fee"
        );
        assert_eq!(
            autotask_marker(nov, c, &key("svc-12-calls-2026-10"), 1),
            "rb 2026-11 c12 svc-12-calls-2026-10"
        );
        let long = autotask_marker(nov, c, &key(&"x".repeat(40)), 1);
        assert!(long.len() <= MARKER_MAX, "{long}");
        assert_eq!(long, autotask_marker(nov, c, &key(&"x".repeat(40)), 1));
        assert_ne!(
            autotask_marker(nov, c, &key("svc-3-fee"), 2),
            autotask_marker(nov, c, &key("svc-3-fee"), 1)
        );
    }
}
