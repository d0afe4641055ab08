//! The link that opens an invoice in Xero, for `invoice show` (text and JSON).

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
