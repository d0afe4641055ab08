//! What tests and the demo do to the stand-in's documents from the side, as a Xero user (or a
//! fault) would: pay, void or edit an invoice, plant a duplicate or a second email; and the nets
//! an accountant reads off them.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{XeroSandbox, dec, recompute};
use crate::http::json::number as num;

impl XeroSandbox {
    /// Marks an invoice paid (as if a payment was applied in Xero).
    pub fn pay(&self, reference: &str) {
        self.with(|s| {
            for inv in s
                .invoices
                .iter_mut()
                .filter(|i| i["Reference"] == reference)
            {
                let total = inv["Total"].clone();
                inv["AmountPaid"] = total;
                inv["AmountDue"] = json!(0);
                inv["Status"] = json!("PAID");
            }
        })
    }

    /// Plants a second invoice with the same Reference as the first one that has it (as a create
    /// applied twice would leave): a new InvoiceID and number, the same contact and lines.
    /// Returns its InvoiceID.
    pub fn plant_duplicate(&self, reference: &str) -> Option<String> {
        self.with(|s| {
            let mut copy = s
                .invoices
                .iter()
                .find(|i| i["Reference"] == reference)?
                .clone();
            let id = uuid::Uuid::new_v4().to_string();
            copy["InvoiceID"] = json!(id);
            copy["InvoiceNumber"] = json!(format!("INV-DUP-{}", s.invoices.len() + 1));
            s.invoices.push(copy);
            Some(id)
        })
    }

    /// Voids an invoice in Xero, as a user would (whatever its status).
    pub fn void(&self, reference: &str) {
        self.with(|s| {
            for inv in s
                .invoices
                .iter_mut()
                .filter(|i| i["Reference"] == reference)
            {
                inv["Status"] = json!("VOIDED");
            }
        })
    }

    /// The documents of a contact, netted as an accountant reads them: invoices and extra
    /// invoices (not voided or deleted) less credit notes (not voided), ex tax (SubTotal).
    pub fn net_of_contact(&self, contact_id: &str) -> Decimal {
        self.with(|s| {
            let live = |d: &&Value| {
                d["Contact"]["ContactID"] == contact_id
                    && !matches!(d["Status"].as_str(), Some("VOIDED" | "DELETED"))
            };
            let invoiced: Decimal = s
                .invoices
                .iter()
                .filter(live)
                .map(|i| dec(&i["SubTotal"]))
                .sum();
            let credited: Decimal = s
                .credit_notes
                .iter()
                .filter(live)
                .map(|n| dec(&n["SubTotal"]))
                .sum();
            invoiced - credited
        })
    }

    /// The same net, per (tax type, account code): what each kind of line comes to.
    pub fn net_by_coding(
        &self,
        contact_id: &str,
    ) -> std::collections::BTreeMap<(String, String), Decimal> {
        self.with(|s| {
            let mut out = std::collections::BTreeMap::new();
            let mut add = |docs: &[Value], sign: Decimal| {
                for d in docs.iter().filter(|d| {
                    d["Contact"]["ContactID"] == contact_id
                        && !matches!(d["Status"].as_str(), Some("VOIDED" | "DELETED"))
                }) {
                    for l in d["LineItems"].as_array().into_iter().flatten() {
                        let key = (
                            l["TaxType"].as_str().unwrap_or("").to_string(),
                            l["AccountCode"].as_str().unwrap_or("").to_string(),
                        );
                        *out.entry(key).or_insert(Decimal::ZERO) += sign * dec(&l["LineAmount"]);
                    }
                }
            };
            add(&s.invoices, Decimal::ONE);
            add(&s.credit_notes, -Decimal::ONE);
            out
        })
    }

    /// Edits an invoice's first line amount on the Xero side (for reconcile tests).
    pub fn tamper_amount(&self, reference: &str, unit_amount: Decimal) {
        self.with(|s| {
            for inv in s
                .invoices
                .iter_mut()
                .filter(|i| i["Reference"] == reference)
            {
                inv["LineItems"][0]["UnitAmount"] = num(unit_amount);
                recompute(inv);
            }
        })
    }
}
