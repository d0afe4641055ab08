//! Invoice actions for on-call: `invoice email NUMBER` (the orchestration is in
//! `pipeline::invoice_actions`; this parses and prints), and the link that opens an invoice in Xero.

use serde_json::json;

use super::Ctx;
use super::exit::push_outcome;

/// `rebilld invoice email NUMBER`: queue the email again and push it now.
pub async fn email(ctx: &Ctx, number: &str) -> anyhow::Result<()> {
    let p = super::billing::pipeline(ctx).await?;
    let r = crate::pipeline::invoice_actions::email_again(&p, number, &ctx.actor).await?;
    if ctx.json {
        println!("{}", json!(r));
    } else {
        println!(
            "invoice {}: email queued as outbox entry {} ({})",
            r.invoice, r.entry.id, r.entry.status
        );
        super::billing::print_push(&r.pushed);
    }
    Ok(push_outcome(&r.pushed)?)
}

/// The page of a Xero invoice in Xero's web app (it opens in the organisation the user is logged
/// in to).
pub fn xero_link(invoice_id: &str) -> String {
    format!("https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID={invoice_id}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_link_names_the_invoice_id() {
        assert_eq!(
            super::xero_link("243216c5-369e-4056-ac67-05388f86dc81"),
            "https://go.xero.com/AccountsReceivable/View.aspx?InvoiceID=243216c5-369e-4056-ac67-05388f86dc81"
        );
    }
}
