//! Xero's JSON shapes (PascalCase, per the official OpenAPI document), tolerant on the way in:
//! unknown fields are ignored and everything we do not need is optional.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Decimals travel as exact JSON numbers (`crate::http::json`), never through `f64`.
use crate::http::json::exact as number;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContactRef {
    #[serde(rename = "ContactID", skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LineItem {
    pub description: String,
    #[serde(with = "number")]
    pub quantity: Decimal,
    #[serde(with = "number")]
    pub unit_amount: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_code: Option<String>,
    #[serde(
        skip_serializing,
        default,
        deserialize_with = "number::option::deserialize"
    )]
    pub line_amount: Option<Decimal>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ValidationError {
    #[serde(default)]
    pub message: String,
}

/// An invoice as sent (create, update) and as received.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Invoice {
    #[serde(rename = "InvoiceID", skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<String>,
    #[serde(rename = "Type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<ContactRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line_amount_types: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoice_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub line_items: Vec<LineItem>,
    #[serde(
        skip_serializing,
        default,
        deserialize_with = "number::option::deserialize"
    )]
    pub sub_total: Option<Decimal>,
    #[serde(
        skip_serializing,
        default,
        deserialize_with = "number::option::deserialize"
    )]
    pub total: Option<Decimal>,
    #[serde(
        skip_serializing,
        default,
        deserialize_with = "number::option::deserialize"
    )]
    pub amount_due: Option<Decimal>,
    #[serde(
        skip_serializing,
        default,
        deserialize_with = "number::option::deserialize"
    )]
    pub amount_paid: Option<Decimal>,
    #[serde(skip_serializing, default)]
    pub sent_to_contact: Option<bool>,
    #[serde(skip_serializing, default)]
    pub has_validation_errors: Option<bool>,
    #[serde(skip_serializing, default)]
    pub validation_errors: Vec<ValidationError>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Invoices {
    #[serde(default)]
    pub invoices: Vec<Invoice>,
    /// Present on a paged read (`page=N`).
    #[serde(default, skip_serializing, rename = "pagination")]
    pub pagination: Option<Pagination>,
}

/// Where a paged read stands: Xero answers `page=N` with up to `pageSize` (100) documents.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    #[serde(default)]
    pub page: u32,
    #[serde(default)]
    pub page_size: u32,
    #[serde(default)]
    pub page_count: u32,
    #[serde(default)]
    pub item_count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CreditNote {
    #[serde(rename = "CreditNoteID", skip_serializing_if = "Option::is_none")]
    pub credit_note_id: Option<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    pub contact: ContactRef,
    pub date: String,
    pub line_amount_types: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub currency_code: String,
    pub status: String,
    pub line_items: Vec<LineItem>,
    #[serde(
        skip_serializing,
        default,
        deserialize_with = "number::option::deserialize"
    )]
    pub total: Option<Decimal>,
    #[serde(
        skip_serializing,
        default,
        deserialize_with = "number::option::deserialize"
    )]
    pub sub_total: Option<Decimal>,
    #[serde(skip_serializing, default)]
    pub validation_errors: Vec<ValidationError>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CreditNotes {
    #[serde(default)]
    pub credit_notes: Vec<CreditNote>,
    #[serde(default, skip_serializing, rename = "pagination")]
    pub pagination: Option<Pagination>,
}

/// One entry of a document's History and Notes (`GET /Invoices/{id}/History`): `Changes` names
/// what happened ("Created", "Emailed", "Voided", a "Note"…), `Details` says it in words.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryRecord {
    #[serde(default)]
    pub changes: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default, rename = "DateUTC")]
    pub date_utc: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HistoryRecords {
    #[serde(default)]
    pub history_records: Vec<HistoryRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Contact {
    #[serde(rename = "ContactID", skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_number: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_status: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Contacts {
    #[serde(default)]
    pub contacts: Vec<Contact>,
}

/// Xero's error body (`400`): a message and, per element, its validation errors.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ApiError {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub elements: Vec<ErrorElement>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorElement {
    #[serde(default)]
    pub validation_errors: Vec<ValidationError>,
}

impl ApiError {
    pub fn messages(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .elements
            .iter()
            .flat_map(|e| e.validation_errors.iter().map(|v| v.message.clone()))
            .collect();
        if m.is_empty() {
            m.extend(
                self.message
                    .clone()
                    .or_else(|| self.detail.clone())
                    .or_else(|| self.title.clone()),
            );
        }
        m
    }
}

/// An entry of the identity API's `/connections`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub tenant_id: String,
    #[serde(default)]
    pub tenant_type: Option<String>,
    #[serde(default)]
    pub tenant_name: Option<String>,
}

/// The token endpoint's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_keep_their_decimal_digits() {
        let inv: Invoice =
            serde_json::from_str(r#"{"Total": 49.95, "AmountPaid": 0, "Unknown": {"x": 1}}"#)
                .unwrap();
        assert_eq!(inv.total.unwrap().to_string(), "49.95");
        let line = LineItem {
            description: "x".into(),
            quantity: Decimal::ONE,
            unit_amount: "24.98".parse().unwrap(),
            account_code: None,
            tax_type: None,
            item_code: None,
            line_amount: None,
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"Description":"x","Quantity":1,"UnitAmount":24.98}"#
        );
    }

    #[test]
    fn amounts_an_f64_cannot_hold_go_out_and_come_back_exactly() {
        let line = LineItem {
            description: "x".into(),
            quantity: "0.3333333333333333333333333333".parse().unwrap(),
            unit_amount: "12345678901234567.89".parse().unwrap(),
            account_code: None,
            tax_type: None,
            item_code: None,
            line_amount: None,
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(
            text.contains(r#""UnitAmount":12345678901234567.89"#),
            "{text}"
        );
        assert!(
            text.contains(r#""Quantity":0.3333333333333333333333333333"#),
            "{text}"
        );
        let inv: Invoice =
            serde_json::from_str(r#"{"Total": 1234567890123456.78, "SubTotal": 0.30}"#).unwrap();
        assert_eq!(inv.total.unwrap().to_string(), "1234567890123456.78");
        assert_eq!(inv.sub_total.unwrap().to_string(), "0.30");
    }
}
