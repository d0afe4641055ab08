//! Step 3: record computed invoices with their outbox entries.

use chrono::Duration;
use sha2::{Digest, Sha256};

use super::PipelineError;
use crate::config::Config;
use crate::domain::billing::{
    BillingSettings, Computed, Destination, EmailDecision, InvoiceDraft, Line,
};
use crate::domain::{CustomerId, Period};
use crate::store::Store;
use crate::store::billing::{NewAction, NewInvoice, NewLine, RecordOutcome};

pub const XERO_INVOICE: &str = "xero_invoice";
pub const XERO_EMAIL: &str = "xero_email";
pub const XERO_UPDATE: &str = "xero_update";
pub const AUTOTASK_CHARGE: &str = "autotask_charge";
pub const AUTOTASK_UPDATE: &str = "autotask_update";

pub fn settings(config: &Config) -> BillingSettings {
    BillingSettings {
        payment_terms_days: config.invoices.payment_terms_days,
        auto_send: config.invoices.auto_send,
        currency: config.business.currency.clone(),
        number_prefix: config.invoices.number_prefix.clone(),
        default_account_code: Some(config.xero.account_code.clone()),
        default_tax_type: Some(config.xero.tax_type.clone()),
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

pub fn new_line(l: &Line) -> NewLine {
    NewLine {
        charge_key: l.charge_key.to_string(),
        kind: l.kind.as_str().to_string(),
        description: l.description.clone(),
        quantity: l.quantity,
        unit_price: l.unit_price,
        amount: l.amount,
        unit_cost: l.unit_cost,
        autotask: l.autotask.map(|c| {
            (
                c.contract_id.get(),
                c.product_id.get(),
                c.material_code_id.get(),
            )
        }),
        account_code: l.account_code.clone(),
        tax_type: l.tax_type.clone(),
        item_code: l.item_code.clone(),
        source_item: l.source_item.map(|i| i.get()),
    }
}

/// How the email decision is stored: `send`, or the reason it is not sent.
pub fn email_decision(d: &EmailDecision) -> String {
    match d {
        EmailDecision::Send => "send".into(),
        EmailDecision::DoNotSend(reason) => format!("not emailed: {reason}"),
    }
}

fn new_invoice(d: &InvoiceDraft) -> NewInvoice {
    let lines: Vec<NewLine> = d.lines.iter().map(new_line).collect();
    let mut actions = Vec::new();
    let (destination, xero_contact_id) = match &d.destination {
        Destination::Autotask { .. } => {
            for (i, l) in d.lines.iter().enumerate() {
                actions.push(NewAction {
                    action: AUTOTASK_CHARGE,
                    key: format!("at-charge:{}:{}:{}", d.period, d.customer_id, l.charge_key),
                    line: Some(i),
                    after: None,
                });
            }
            ("autotask", None)
        }
        Destination::Xero { contact_id } => {
            actions.push(NewAction {
                action: XERO_INVOICE,
                key: format!("xero-invoice:{}:{}", d.period, d.customer_id),
                line: None,
                after: None,
            });
            if matches!(d.email, EmailDecision::Send) {
                actions.push(NewAction {
                    action: XERO_EMAIL,
                    key: format!("xero-email:{}:{}", d.period, d.customer_id),
                    line: None,
                    after: Some(0),
                });
            }
            ("xero", contact_id.as_ref().map(|c| c.to_string()))
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
        lines,
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
    period: &str,
    customer: CustomerId,
    charge_key: &str,
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
        assert_eq!(
            autotask_marker("2026-11", c, "svc-3-fee", 1),
            "rb 2026-11 c12 svc-3-fee"
        );
        assert_eq!(
            autotask_marker("2026-11", c, "svc-12-calls-2026-10", 1),
            "rb 2026-11 c12 svc-12-calls-2026-10"
        );
        let long = autotask_marker("2026-11", c, &"x".repeat(60), 1);
        assert!(long.len() <= MARKER_MAX, "{long}");
        assert_eq!(long, autotask_marker("2026-11", c, &"x".repeat(60), 1));
        assert_ne!(
            autotask_marker("2026-11", c, "svc-3-fee", 2),
            autotask_marker("2026-11", c, "svc-3-fee", 1)
        );
    }
}
