//! `rebilld invoice void` (the orchestration is `pipeline::invoice_actions::void`; this prints),
//! and the link that opens an invoice in Xero, for `invoice show` (text and JSON).

use serde_json::json;

use super::Ctx;

/// `rebilld invoice void NUMBER --reason TEXT [--dry-run]`: prints what the void does (or would
/// do), then what the push did; exits non-zero when a take-back action did not go through.
pub async fn void(ctx: &Ctx, number: &str, reason: &str, dry_run: bool) -> anyhow::Result<()> {
    let p = ctx.pipeline().await?;
    let r = crate::pipeline::invoice_actions::void(&p, number, reason, &ctx.actor, dry_run).await?;
    if ctx.json {
        println!("{}", json!(r));
    } else {
        let head = if r.dry_run {
            "would be voided (dry run: nothing changed)"
        } else {
            "voided"
        };
        println!("invoice {}: {head}", r.invoice);
        for line in &r.plan {
            println!("  {line}");
        }
        if let Some(pushed) = &r.pushed {
            super::output::print_push(pushed);
        }
    }
    match &r.pushed {
        Some(pushed) => Ok(super::exit::push_outcome(pushed)?),
        None => Ok(()),
    }
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
