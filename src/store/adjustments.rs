//! The adjustment documents made for invoices already billed remotely (Xero credit notes and extra
//! invoices, Autotask correcting charges), each with its per-line signed amounts. What a line has
//! billed is its original amount plus every adjustment of it, so the next adjustment is measured
//! against that, never against the original alone.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError, micros, money, on_db};
use crate::domain::invoice::InvoiceState;
use crate::domain::{InvoiceId, LineId, Money, OutboxAction};

/// What kind of document an adjustment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentKind {
    CreditNote,
    ExtraInvoice,
    CorrectingCharge,
}

impl AdjustmentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentKind::CreditNote => "credit_note",
            AdjustmentKind::ExtraInvoice => "extra_invoice",
            AdjustmentKind::CorrectingCharge => "correcting_charge",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "credit_note" => Ok(AdjustmentKind::CreditNote),
            "extra_invoice" => Ok(AdjustmentKind::ExtraInvoice),
            "correcting_charge" => Ok(AdjustmentKind::CorrectingCharge),
            other => Err(StoreError::Corrupt(format!(
                "adjustments: unknown kind {other:?}"
            ))),
        }
    }
}

/// One line of an adjustment: the signed amount it adds to what the line (by charge key) billed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdjustmentLine {
    pub charge_key: String,
    pub description: String,
    pub amount: Money,
    pub tax_type: Option<String>,
    pub account_code: Option<String>,
}

/// An adjustment document to record (or, for an updated extra invoice, to record again).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewAdjustment {
    pub invoice_id: InvoiceId,
    pub kind: AdjustmentKind,
    pub remote_id: String,
    pub reference: String,
    pub status: String,
    pub lines: Vec<AdjustmentLine>,
}

/// A recorded adjustment document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adjustment {
    pub id: i64,
    pub invoice_id: InvoiceId,
    pub kind: AdjustmentKind,
    pub remote_id: String,
    pub reference: String,
    pub status: String,
    pub emailed_at: Option<DateTime<Utc>>,
    pub lines: Vec<AdjustmentLine>,
}

impl Adjustment {
    /// The signed sum of its lines.
    pub fn total(&self) -> Money {
        self.lines.iter().map(|l| l.amount).sum()
    }

    /// Voided or deleted remotely: it no longer adds anything.
    pub fn is_cancelled(&self) -> bool {
        InvoiceState::parse(&self.status).is_cancelled()
    }
}

#[derive(sqlx::FromRow)]
struct AdjustmentRow {
    id: i64,
    invoice_id: i64,
    kind: String,
    remote_id: String,
    reference: String,
    status: String,
    emailed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct LineRow {
    adjustment_id: i64,
    charge_key: String,
    description: String,
    amount_micros: i64,
    tax_type: Option<String>,
    account_code: Option<String>,
}

impl Store {
    /// Records an adjustment document with its lines, in one transaction. The same document
    /// recorded again (an unpaid extra invoice updated in place) replaces its lines and status.
    pub async fn record_adjustment(
        &self,
        a: &NewAdjustment,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let amounts: Vec<i64> = a
            .lines
            .iter()
            .map(|l| micros(l.amount))
            .collect::<Result<_, _>>()?;
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO adjustments (invoice_id, kind, remote_id, reference, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (kind, remote_id) DO UPDATE SET \
                 status = excluded.status, reference = excluded.reference, updated_at = excluded.updated_at RETURNING id",
            )
            .bind(a.invoice_id.get())
            .bind(a.kind.as_str())
            .bind(&a.remote_id)
            .bind(&a.reference)
            .bind(&a.status)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM adjustment_lines WHERE adjustment_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for (l, amount) in a.lines.iter().zip(&amounts) {
                sqlx::query(
                    "INSERT INTO adjustment_lines (adjustment_id, charge_key, description, amount_micros, tax_type, account_code) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(&l.charge_key)
                .bind(&l.description)
                .bind(*amount)
                .bind(l.tax_type.as_deref())
                .bind(l.account_code.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(id)
        })
    }

    /// An invoice's adjustment documents with their lines, oldest first.
    pub async fn adjustments(&self, invoice: InvoiceId) -> Result<Vec<Adjustment>, StoreError> {
        let rows: Vec<AdjustmentRow> = on_db!(self, p => sqlx::query_as(
            "SELECT id, invoice_id, kind, remote_id, reference, status, emailed_at FROM adjustments \
             WHERE invoice_id = $1 ORDER BY id")
            .bind(invoice.get())
            .fetch_all(p)
            .await?);
        let lines: Vec<LineRow> = on_db!(self, p => sqlx::query_as(
            "SELECT l.adjustment_id, l.charge_key, l.description, l.amount_micros, l.tax_type, l.account_code \
             FROM adjustment_lines l JOIN adjustments a ON a.id = l.adjustment_id WHERE a.invoice_id = $1 ORDER BY l.id")
            .bind(invoice.get())
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(|r| {
                Ok(Adjustment {
                    id: r.id,
                    invoice_id: InvoiceId::new(r.invoice_id).map_err(|e| {
                        StoreError::Corrupt(format!("adjustments row {}: {e}", r.id))
                    })?,
                    kind: AdjustmentKind::parse(&r.kind)?,
                    lines: lines
                        .iter()
                        .filter(|l| l.adjustment_id == r.id)
                        .map(|l| AdjustmentLine {
                            charge_key: l.charge_key.clone(),
                            description: l.description.clone(),
                            amount: money(l.amount_micros),
                            tax_type: l.tax_type.clone(),
                            account_code: l.account_code.clone(),
                        })
                        .collect(),
                    remote_id: r.remote_id,
                    reference: r.reference,
                    status: r.status,
                    emailed_at: r.emailed_at,
                })
            })
            .collect()
    }

    /// Records the remote status of an adjustment document (voided, paid …).
    pub async fn set_adjustment_status(
        &self,
        id: i64,
        status: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE adjustments SET status = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records that an extra invoice was emailed (or decided not to be: `now` all the same).
    pub async fn mark_adjustment_emailed(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE adjustments SET emailed_at = $2, updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Records the status Xero reports for an invoice (reconcile refreshes it when it reads it).
    pub async fn set_invoice_xero_status(
        &self,
        invoice: InvoiceId,
        status: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE invoices SET xero_status = $2 WHERE id = $1 AND (xero_status IS NULL OR xero_status <> $2)")
            .bind(invoice.get())
            .bind(status)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Queues the remote actions that repair drift reconcile found on an invoice whose lines did not
    /// change (an amount edited in Xero, a charge deleted in Autotask), in one transaction. Keys
    /// are numbered after the invoice's outbox entries, so a later repair never reuses one.
    pub async fn queue_repairs(
        &self,
        invoice: InvoiceId,
        repairs: &[(OutboxAction, Option<LineId>)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE invoice_id = $1")
                .bind(invoice.get())
                .fetch_one(&mut *tx)
                .await?;
            for (i, (action, line)) in repairs.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO outbox (idempotency_key, action, invoice_id, line_id, status, not_before, next_attempt_at, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5, $5)",
                )
                .bind(format!("repair:{}:{}:{i}", invoice, n))
                .bind(action.as_str())
                .bind(invoice.get())
                .bind(line.map(|l| l.get()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
