//! The client's writes of documents: invoices created in batches, updated, given a status and
//! emailed; credit notes created, found by Reference and allocated. Every write carries an
//! `Idempotency-Key` (scoped to the installation) so that the retry loop may repeat it.

use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::Value;

use super::client::Spend;
use super::wire;
use super::{
    CreditNoteDraft, EmailOutcome, InvoiceDraft, InvoiceOutcome, RemoteCreditNote, RemoteInvoice,
    XeroClient, XeroError,
};
use crate::domain::Money;

impl XeroClient {
    fn invoice_body(&self, d: &InvoiceDraft, with_id: Option<&str>) -> wire::Invoice {
        wire::Invoice {
            invoice_id: with_id.map(str::to_string),
            kind: Some("ACCREC".into()),
            contact: Some(wire::ContactRef {
                contact_id: Some(d.contact_id.to_string()),
                name: None,
            }),
            date: Some(d.date.to_string()),
            due_date: Some(d.due_date.to_string()),
            line_amount_types: Some("Exclusive".into()),
            invoice_number: d.invoice_number.clone(),
            reference: Some(d.reference.clone()),
            currency_code: Some(d.currency.clone()),
            status: Some(self.config().invoice_status.to_string()),
            line_items: line_items(&d.lines),
            ..Default::default()
        }
    }

    /// Creates invoices in one request (`summarizeErrors=false`): one outcome per draft, in order.
    pub async fn create_invoices(
        &self,
        batch: &[InvoiceDraft],
        idempotency_key: &str,
    ) -> Result<Vec<InvoiceOutcome>, XeroError> {
        let body = serde_json::to_value(wire::Invoices {
            invoices: batch.iter().map(|d| self.invoice_body(d, None)).collect(),
            ..Default::default()
        })
        .map_err(|e| XeroError::Decode(e.to_string()))?;
        let r = self
            .send_spending(
                Spend::Creates,
                Method::PUT,
                "Invoices",
                &[("summarizeErrors", "false".into()), ("unitdp", "4".into())],
                Some(&body),
                Some(idempotency_key),
            )
            .await?;
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let got: wire::Invoices = Self::decode(&r.body)?;
        if got.invoices.len() != batch.len() {
            return Err(XeroError::Decode(format!(
                "sent {} invoices, Xero answered {}",
                batch.len(),
                got.invoices.len()
            )));
        }
        Ok(batch
            .iter()
            .zip(got.invoices)
            .map(|(d, inv)| {
                if inv.has_validation_errors.unwrap_or(false) || !inv.validation_errors.is_empty() {
                    InvoiceOutcome::Invalid {
                        reference: d.reference.clone(),
                        messages: inv
                            .validation_errors
                            .iter()
                            .map(|v| v.message.clone())
                            .collect(),
                    }
                } else {
                    InvoiceOutcome::Created(remote(inv))
                }
            })
            .collect())
    }

    /// Replaces an editable invoice's lines (draft, or authorised and unpaid).
    pub async fn update_invoice(
        &self,
        invoice_id: &str,
        draft: &InvoiceDraft,
        key: &str,
    ) -> Result<RemoteInvoice, XeroError> {
        let body = serde_json::to_value(wire::Invoices {
            invoices: vec![self.invoice_body(draft, Some(invoice_id))],
            ..Default::default()
        })
        .map_err(|e| XeroError::Decode(e.to_string()))?;
        self.post_invoice(invoice_id, &[("unitdp", "4".into())], &body, key)
            .await
    }

    pub async fn create_credit_note(
        &self,
        d: &CreditNoteDraft,
        key: &str,
    ) -> Result<RemoteCreditNote, XeroError> {
        let note = wire::CreditNote {
            credit_note_id: None,
            kind: "ACCRECCREDIT".into(),
            contact: wire::ContactRef {
                contact_id: Some(d.contact_id.to_string()),
                name: None,
            },
            date: d.date.to_string(),
            line_amount_types: "Exclusive".into(),
            reference: Some(d.reference.clone()),
            currency_code: d.currency.clone(),
            status: "AUTHORISED".into(),
            line_items: line_items(&d.lines),
            total: None,
            sub_total: None,
            remaining_credit: None,
            validation_errors: vec![],
        };
        let body = serde_json::to_value(wire::CreditNotes {
            credit_notes: vec![note],
            ..Default::default()
        })
        .map_err(|e| XeroError::Decode(e.to_string()))?;
        let r = self
            .send(
                Method::PUT,
                "CreditNotes",
                &[("summarizeErrors", "false".into())],
                Some(&body),
                Some(key),
            )
            .await?;
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let got: wire::CreditNotes = Self::decode(&r.body)?;
        let n = got
            .credit_notes
            .into_iter()
            .next()
            .ok_or(XeroError::Decode("no credit note in the answer".into()))?;
        if !n.validation_errors.is_empty() {
            return Err(XeroError::Validation(
                n.validation_errors.into_iter().map(|v| v.message).collect(),
            ));
        }
        Ok(credit_note(n))
    }

    /// The live (not voided or deleted) credit note whose Reference is `reference`: a credit note
    /// whose answer was lost is found again by it before another is raised (the Idempotency-Key
    /// is the second line, and it expires).
    pub async fn find_credit_note_by_reference(
        &self,
        reference: &str,
    ) -> Result<Option<RemoteCreditNote>, XeroError> {
        let filter = format!("Reference==\"{}\"", reference.replace('"', ""));
        let r = self
            .send(Method::GET, "CreditNotes", &[("where", filter)], None, None)
            .await?;
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let got: wire::CreditNotes = Self::decode(&r.body)?;
        Ok(got
            .credit_notes
            .into_iter()
            .filter(|n| !super::InvoiceState::parse(&n.status).is_cancelled())
            .filter(|n| n.reference.as_deref() == Some(reference))
            .map(credit_note)
            .next())
    }

    /// Allocates `amount` (with tax) of a credit note to an invoice of the same contact: the
    /// invoice's amount due goes down by it, and so does the note's remaining credit.
    pub async fn allocate_credit_note(
        &self,
        credit_note_id: &str,
        invoice_id: &str,
        amount: Money,
        date: chrono::NaiveDate,
        key: &str,
    ) -> Result<(), XeroError> {
        let body = serde_json::json!({"Allocations": [{
            "Amount": crate::http::json::number(amount.amount()),
            "Date": date.to_string(),
            "Invoice": {"InvoiceID": invoice_id},
        }]});
        let r = self
            .send(
                Method::PUT,
                &format!("CreditNotes/{credit_note_id}/Allocations"),
                &[],
                Some(&body),
                Some(key),
            )
            .await?;
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        Ok(())
    }

    /// Sets an invoice's status only: `VOIDED` (authorised, nothing paid) or `DELETED` (draft or
    /// submitted). Used for an invoice whose every line was taken away, and for an unpaid extra
    /// invoice that is no longer owed: never an update without lines.
    pub async fn set_invoice_status(
        &self,
        invoice_id: &str,
        status: &str,
        key: &str,
    ) -> Result<RemoteInvoice, XeroError> {
        let body = serde_json::to_value(wire::Invoices {
            invoices: vec![wire::Invoice {
                invoice_id: Some(invoice_id.to_string()),
                status: Some(status.to_string()),
                ..Default::default()
            }],
            ..Default::default()
        })
        .map_err(|e| XeroError::Decode(e.to_string()))?;
        self.post_invoice(invoice_id, &[], &body, key).await
    }

    /// `POST /Invoices/{id}` (an edit or a status change): Xero's answer is the invoice as it now
    /// stands, or its refusal.
    async fn post_invoice(
        &self,
        invoice_id: &str,
        query: &[(&str, String)],
        body: &Value,
        key: &str,
    ) -> Result<RemoteInvoice, XeroError> {
        let r = self
            .send(
                Method::POST,
                &format!("Invoices/{invoice_id}"),
                query,
                Some(body),
                Some(key),
            )
            .await?;
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let got: wire::Invoices = Self::decode(&r.body)?;
        got.invoices
            .into_iter()
            .next()
            .map(remote)
            .ok_or(XeroError::Decode("no invoice in the answer".into()))
    }

    /// Emails an invoice to its contact through Xero.
    pub async fn email_invoice(
        &self,
        invoice_id: &str,
        key: &str,
    ) -> Result<EmailOutcome, XeroError> {
        let body = serde_json::json!({});
        let r = self
            .send(
                Method::POST,
                &format!("Invoices/{invoice_id}/Email"),
                &[],
                Some(&body),
                Some(key),
            )
            .await?;
        if r.status.is_success() {
            return Ok(EmailOutcome::Sent);
        }
        match Self::refusal(&r) {
            XeroError::Validation(m) => {
                let text = m.join(" ").to_ascii_lowercase();
                if text.contains("email address") || text.contains("no email") {
                    Ok(EmailOutcome::NoEmailAddress)
                } else if text.contains("limit")
                    || text.contains("daily")
                    || text.contains("not allowed to send")
                {
                    Ok(EmailOutcome::DailyLimitReached)
                } else {
                    Err(XeroError::Validation(m))
                }
            }
            other => Err(other),
        }
    }
}

/// Lines as Xero's LineItems (the same for invoices and credit notes).
pub(super) fn line_items(lines: &[super::LineDraft]) -> Vec<wire::LineItem> {
    lines
        .iter()
        .map(|l| wire::LineItem {
            description: l.description.clone(),
            quantity: l.quantity,
            unit_amount: l.unit_amount,
            account_code: l.account_code.clone(),
            tax_type: l.tax_type.clone(),
            item_code: l.item_code.clone(),
            line_amount: None,
        })
        .collect()
}

pub(super) fn remote(i: wire::Invoice) -> RemoteInvoice {
    let m = |d: Option<Decimal>| Money::new(d.unwrap_or(Decimal::ZERO));
    RemoteInvoice {
        invoice_id: i.invoice_id.unwrap_or_default(),
        reference: i.reference.unwrap_or_default(),
        invoice_number: i.invoice_number,
        status: i.status.unwrap_or_default(),
        total: m(i.total),
        sub_total: m(i.sub_total),
        amount_paid: m(i.amount_paid),
        amount_due: m(i.amount_due),
        sent_to_contact: i.sent_to_contact.unwrap_or(false),
        lines: i
            .line_items
            .into_iter()
            .map(|l| super::RemoteLine {
                amount: Money::new(
                    l.line_amount
                        .unwrap_or(l.quantity * l.unit_amount)
                        .round_dp_with_strategy(
                            2,
                            rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                        ),
                ),
                description: l.description,
                tax_type: l.tax_type,
                account_code: l.account_code,
            })
            .collect(),
    }
}

pub(super) fn credit_note(n: wire::CreditNote) -> RemoteCreditNote {
    let m = |d: Option<Decimal>| Money::new(d.unwrap_or(Decimal::ZERO));
    RemoteCreditNote {
        credit_note_id: n.credit_note_id.unwrap_or_default(),
        total: m(n.total),
        sub_total: m(n.sub_total),
        remaining_credit: m(n.remaining_credit),
        status: n.status,
    }
}
