//! Voiding a recorded invoice, in one transaction: the void decided again from the outbox as it
//! stands inside the transaction (`domain::void::void_work`), the open actions cancelled (each a
//! compare-and-set: one a worker claimed meanwhile refuses the void), every live line flagged
//! removed (and `voided`: its charge is settled, see `owed.rs`), the total zero, when/who/why kept
//! on the invoice, the take-back actions queued, and the audit record written.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::audit::write_audit;
use super::outbox::{OutboxEntry, OutboxRow, select_outbox};
use super::{Actor, Store, StoreError, on_db, parse_rows};
use crate::domain::void::{VoidRefused, VoidWork, void_work};
use crate::domain::{InvoiceId, OutboxId};

/// What a void recorded: the actions cancelled and the take-back actions queued.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VoidRecorded {
    pub cancelled: Vec<OutboxId>,
    pub queued: Vec<OutboxId>,
}

impl Store {
    /// Voids the invoice `invoice` (see the module). Refused, with nothing changed, when it is
    /// voided already or an action of it is unsettled.
    pub async fn void_invoice(
        &self,
        invoice: InvoiceId,
        actor: &Actor,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<VoidRecorded, StoreError> {
        let inv = self.invoice_by_id(invoice).await?;
        let refused = |r: VoidRefused| StoreError::Refused(r.to_string());
        let (cancelled, queued) = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let rows: Vec<OutboxRow> = sqlx::query_as(select_outbox!("WHERE invoice_id = $1 ORDER BY id"))
                .bind(invoice.get())
                .fetch_all(&mut *tx)
                .await?;
            let outbox: Vec<OutboxEntry> = parse_rows(rows)?;
            let VoidWork { cancel, take_back } = void_work(&inv, &outbox).map_err(refused)?;
            let marked = sqlx::query(
                "UPDATE invoices SET voided_at = $2, voided_by = $3, void_reason = $4, total_micros = 0, \
                 revision = revision + 1, updated_at = $2 WHERE id = $1 AND voided_at IS NULL",
            )
            .bind(invoice.get())
            .bind(now)
            .bind(actor.as_str())
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            if marked.rows_affected() != 1 {
                return Err(StoreError::Refused(format!(
                    "invoice {} was voided by another process just now; nothing was changed",
                    inv.number
                )));
            }
            for id in &cancel {
                let done = sqlx::query(
                    "UPDATE outbox SET status = 'cancelled', updated_at = $2 WHERE id = $1 \
                     AND status IN ('pending', 'failed') AND uncertain_since IS NULL AND skipped_at IS NULL",
                )
                .bind(id.get())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Refused(format!(
                        "invoice {}: outbox entry {id} was taken by a worker just now; nothing was \
                         changed (try again once `rebilld push` settled it)",
                        inv.number
                    )));
                }
            }
            sqlx::query("UPDATE invoice_lines SET removed = TRUE, voided = TRUE WHERE invoice_id = $1 AND removed = FALSE")
                .bind(invoice.get())
                .execute(&mut *tx)
                .await?;
            let mut queued = Vec::new();
            for b in &take_back {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO outbox (idempotency_key, action, invoice_id, line_id, status, not_before, \
                     next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5, $5) \
                     RETURNING id",
                )
                .bind(b.key(invoice))
                .bind(b.action().as_str())
                .bind(invoice.get())
                .bind(b.line().map(|l| l.get()))
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                queued.push(OutboxId::new(id)?);
            }
            let before = json!({"total": inv.total.to_string(), "revision": inv.revision});
            let after = json!({
                "voided": true,
                "reason": reason,
                "cancelled": cancel.iter().map(|c| c.get()).collect::<Vec<_>>(),
                "queued": queued.iter().map(|c| c.get()).collect::<Vec<_>>(),
            });
            write_audit!(&mut *tx, actor, "invoice", invoice, "void", Some(before), Some(after))?;
            tx.commit().await?;
            (cancel, queued)
        });
        Ok(VoidRecorded { cancelled, queued })
    }
}
