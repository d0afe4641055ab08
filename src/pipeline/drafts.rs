//! What goes out, and how what comes back is checked: local invoices and lines as Xero invoice
//! drafts and Autotask charge drafts, and the comparison of Xero's figures with ours.

use super::record::autotask_marker;
use super::{Pipeline, PipelineError};
use crate::autotask::ChargeDraft;
use crate::domain::{Money, XeroContactId};
use crate::store::billing::{StoredInvoice, StoredLine};
use crate::xero::{InvoiceDraft, LineDraft, RemoteInvoice};

/// The configured Xero client, or why a Xero action cannot be done.
pub(super) fn xero(p: &Pipeline) -> Result<&crate::xero::XeroClient, PipelineError> {
    p.xero
        .as_ref()
        .ok_or_else(|| PipelineError::Refused("Xero is not configured".into()))
}

/// The customer's invoice date and due date for a document made now: today in the business zone,
/// due after the customer's payment terms.
pub(super) async fn dates(
    p: &Pipeline,
    inv: &StoredInvoice,
) -> Result<(chrono::NaiveDate, chrono::NaiveDate), PipelineError> {
    let today = p.now().with_timezone(&p.config.business.tz()).date_naive();
    let customer = p.store.customer(inv.customer_id).await?;
    let terms = customer
        .payment_terms_days
        .unwrap_or(p.config.invoices.payment_terms_days);
    Ok((today, today + chrono::Duration::days(i64::from(terms))))
}

/// The Xero invoice a recorded invoice becomes. `NotSendable` when it cannot be sent as it stands
/// (no Xero contact): the push records that as a permanent failure; store errors propagate.
pub(super) async fn xero_draft_for(
    p: &Pipeline,
    inv: &StoredInvoice,
) -> Result<InvoiceDraft, PipelineError> {
    let contact = match &inv.xero_contact_id {
        Some(c) => Some(c.clone()),
        None => p
            .store
            .customer(inv.customer_id)
            .await?
            .target
            .xero_contact()
            .map(|c| c.to_string()),
    };
    let contact = contact.ok_or_else(|| {
        PipelineError::NotSendable(format!(
            "customer {} ({}) is not linked to a Xero contact: run `rebilld customer link-xero {} --create` (or --contact-id), then `rebilld --resync --period {}`",
            inv.customer_id, inv.customer_name, inv.customer_id, inv.period
        ))
    })?;
    let lines = p.store.invoice_lines(inv.id).await?;
    Ok(InvoiceDraft {
        contact_id: XeroContactId::parse(&contact)
            .map_err(|e| PipelineError::NotSendable(e.to_string()))?,
        reference: inv.number.clone(),
        invoice_number: p
            .config
            .xero
            .send_invoice_number
            .then(|| inv.number.clone()),
        date: inv.issue_date,
        due_date: inv.due_date,
        currency: inv.currency.clone(),
        lines: lines
            .iter()
            .filter(|l| !l.removed)
            .map(line_draft)
            .collect(),
    })
}

fn line_draft(l: &StoredLine) -> LineDraft {
    LineDraft {
        description: l.description.clone(),
        quantity: l.quantity,
        unit_amount: l.unit_price.amount(),
        account_code: l.account_code.clone(),
        tax_type: l.tax_type.clone(),
        item_code: l.item_code.clone(),
    }
}

pub(super) fn charge_draft(
    inv: &StoredInvoice,
    line: &StoredLine,
    revision: u32,
) -> Result<ChargeDraft, String> {
    let Some(coding) = line.autotask else {
        return Err(format!(
            "line {:?} of invoice {} has no Autotask contract, product and material code",
            line.description, inv.number
        ));
    };
    Ok(ChargeDraft {
        contract_id: coding.contract_id,
        product_id: coding.product_id,
        material_code_id: coding.material_code_id,
        name: line.description.chars().take(100).collect(),
        description: format!("{} — {} {}", line.description, inv.number, inv.period),
        unit_quantity: line.quantity,
        unit_price: line.unit_price,
        unit_cost: line.unit_cost,
        date_purchased: inv.issue_date,
        marker: autotask_marker(inv.period, inv.customer_id, &line.charge_key, revision),
        billable: true,
    })
}

/// How Xero's figures differ from the local ones, if they do: the SubTotal (ex tax) always, the
/// Total (with tax) when every line's tax rate is known.
pub(super) fn total_difference(
    remote: &RemoteInvoice,
    local: Money,
    local_with_tax: Option<Money>,
) -> Option<String> {
    if remote.sub_total != local {
        return Some(format!(
            "Xero subtotal (ex tax) {} but the local total is {}",
            remote.sub_total, local
        ));
    }
    match local_with_tax {
        Some(t) if remote.total != t => Some(format!(
            "Xero total (with tax) {} but the local lines taxed at xero.tax_rates make {}",
            remote.total, t
        )),
        _ => None,
    }
}
