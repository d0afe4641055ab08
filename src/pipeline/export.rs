//! `rebilld invoice export --format xero-csv`: a period's invoices in Xero's invoice import CSV
//! layout, for a manual upload when the API cannot be used.

use chrono::NaiveDate;

use super::PipelineError;
use crate::cdr::csv_out::CsvOut;
use crate::domain::{Period, RemoteSystem};
use crate::store::Store;

/// Xero's import columns, in order (`*` marks the ones Xero requires).
pub const COLUMNS: [&str; 24] = [
    "*ContactName",
    "EmailAddress",
    "POAddressLine1",
    "POAddressLine2",
    "POAddressLine3",
    "POAddressLine4",
    "POCity",
    "PORegion",
    "POPostalCode",
    "POCountry",
    "*InvoiceNumber",
    "Reference",
    "*InvoiceDate",
    "*DueDate",
    "InventoryItemCode",
    "*Description",
    "*Quantity",
    "*UnitAmount",
    "Discount",
    "*AccountCode",
    "*TaxType",
    "TrackingName1",
    "TrackingOption1",
    "Currency",
];

pub struct ExportLine {
    pub item_code: Option<String>,
    pub description: String,
    pub quantity: String,
    pub unit_amount: String,
    pub account_code: String,
    pub tax_type: String,
}

pub struct ExportInvoice {
    pub contact_name: String,
    pub email: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postcode: Option<String>,
    pub country: Option<String>,
    pub number: String,
    pub reference: String,
    pub date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    pub lines: Vec<ExportLine>,
}

fn dmy(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// The CSV text: a header row, then one row per line (Xero groups rows by invoice number). Written
/// by the product's one CSV writer: quoted as needed, and a cell a spreadsheet would run as a
/// formula (a customer named `=HYPERLINK(…)`) is shown as text; negative amounts stay numbers.
pub fn xero_csv(invoices: &[ExportInvoice]) -> Result<String, csv::Error> {
    let mut w = CsvOut::new(Vec::new());
    w.row(COLUMNS)?;
    for inv in invoices {
        for l in &inv.lines {
            let o = |s: &Option<String>| s.clone().unwrap_or_default();
            w.row([
                inv.contact_name.clone(),
                o(&inv.email),
                o(&inv.address),
                String::new(),
                String::new(),
                String::new(),
                o(&inv.city),
                o(&inv.region),
                o(&inv.postcode),
                o(&inv.country),
                inv.number.clone(),
                inv.reference.clone(),
                dmy(inv.date),
                dmy(inv.due_date),
                o(&l.item_code),
                l.description.clone(),
                l.quantity.clone(),
                l.unit_amount.clone(),
                String::new(),
                l.account_code.clone(),
                l.tax_type.clone(),
                String::new(),
                String::new(),
                inv.currency.clone(),
            ])?;
        }
    }
    let bytes = w.into_inner()?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The Xero-bound invoices of a period (Autotask charges never go to Xero).
pub async fn export_period(store: &Store, period: Period) -> Result<String, PipelineError> {
    let mut out = Vec::new();
    for inv in store
        .invoices(Some(period), None)
        .await?
        .into_iter()
        .filter(|i| i.destination == RemoteSystem::Xero)
    {
        let c = store.customer(inv.customer_id).await?;
        let lines = store
            .invoice_lines(inv.id)
            .await?
            .into_iter()
            .filter(|l| !l.removed)
            .map(|l| ExportLine {
                item_code: l.item_code.clone(),
                description: l.description.clone(),
                quantity: l.quantity.to_string(),
                unit_amount: l.unit_price.amount().to_string(),
                account_code: l.account_code.clone().unwrap_or_default(),
                tax_type: l.tax_type.clone().unwrap_or_default(),
            })
            .collect();
        out.push(ExportInvoice {
            contact_name: c.name.to_string(),
            email: c.email.as_ref().map(|e| e.to_string()),
            address: c.details.address.clone(),
            city: c.details.city.clone(),
            region: c.details.state.clone(),
            postcode: c.details.postcode.clone(),
            country: c.details.country.clone(),
            number: inv.number.clone(),
            reference: inv.number.clone(),
            date: inv.issue_date,
            due_date: inv.due_date,
            currency: inv.currency.clone(),
            lines,
        });
    }
    xero_csv(&out).map_err(|e| PipelineError::Refused(format!("cannot write the CSV: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_xero_columns_and_quote_commas() {
        let inv = ExportInvoice {
            contact_name: "Acme, \"The\" Co".into(),
            email: Some("a@acme.example".into()),
            address: None,
            city: None,
            region: None,
            postcode: None,
            country: None,
            number: "RB-1000".into(),
            reference: "RB-1000".into(),
            date: "2026-11-01".parse().unwrap(),
            due_date: "2026-11-15".parse().unwrap(),
            currency: "AUD".into(),
            lines: vec![ExportLine {
                item_code: None,
                description: "SIP 1 — November 2026".into(),
                quantity: "1".into(),
                unit_amount: "49.95".into(),
                account_code: "200".into(),
                tax_type: "OUTPUT".into(),
            }],
        };
        let csv = xero_csv(&[inv]).unwrap();
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("*ContactName,EmailAddress")
        );
        let row = lines.next().unwrap();
        assert!(
            row.starts_with("\"Acme, \"\"The\"\" Co\",a@acme.example"),
            "{row}"
        );
        assert!(
            row.contains("RB-1000,RB-1000,01/11/2026,15/11/2026"),
            "{row}"
        );
        assert!(row.ends_with(",49.95,,200,OUTPUT,,,AUD"), "{row}");
    }

    #[test]
    fn formula_cells_are_neutralised_and_credit_amounts_stay_numbers() {
        let inv = ExportInvoice {
            contact_name: "=HYPERLINK(\"http://evil.example\",\"pay here\")".into(),
            email: Some("@a@acme.example".into()),
            address: Some("+61 2 9000 1000".into()),
            city: Some("\tSydney".into()),
            region: None,
            postcode: None,
            country: None,
            number: "RB-1001".into(),
            reference: "-RB-1001".into(),
            date: "2026-11-01".parse().unwrap(),
            due_date: "2026-11-15".parse().unwrap(),
            currency: "AUD".into(),
            lines: vec![ExportLine {
                item_code: None,
                description: "Credit, November".into(),
                quantity: "1".into(),
                unit_amount: "-12.50".into(),
                account_code: "200".into(),
                tax_type: "OUTPUT".into(),
            }],
        };
        let csv = xero_csv(&[inv]).unwrap();
        let row: Vec<String> = csv::Reader::from_reader(csv.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(String::from)
            .collect();
        assert_eq!(row[0], "'=HYPERLINK(\"http://evil.example\",\"pay here\")");
        assert_eq!(row[1], "'@a@acme.example");
        assert_eq!(row[2], "'+61 2 9000 1000");
        assert_eq!(row[6], "'\tSydney");
        assert_eq!(row[11], "'-RB-1001");
        assert_eq!(row[15], "Credit, November");
        assert_eq!(row[17], "-12.50", "a credit's amount stays a number");
    }
}
