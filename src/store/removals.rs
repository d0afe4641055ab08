//! Queueing the removal of duplicate remote documents (what a resync plans from reconcile's
//! duplicates): one outbox entry per duplicate, carrying the duplicate's id as its `remote_id`,
//! keyed by that id so that a duplicate planned twice (two resyncs before the push) is queued
//! once, and audited in the same transaction. The push carries each out and writes its ledger row.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};
use serde_json::json;

use super::audit::write_audit;
use super::{Actor, Store, StoreError, on_db};
use crate::domain::{InvoiceId, LineId, OutboxAction};

/// One duplicate to remove: the action that removes it, the line whose marker it carries
/// (Autotask), its id in the remote system, and what it is (for the audit record).
#[derive(Debug, Clone)]
pub struct Removal {
    pub action: OutboxAction,
    pub line: Option<LineId>,
    pub remote_id: String,
    pub what: String,
}

impl Store {
    /// Queues `removals` for `invoice` in one transaction, each audited. Returns how many were
    /// queued now (a removal already queued is left as it is).
    pub async fn queue_duplicate_removals(
        &self,
        actor: &Actor,
        invoice: InvoiceId,
        removals: &[Removal],
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let mut queued = 0;
            for r in removals {
                let n = sqlx::query(
                    "INSERT INTO outbox (idempotency_key, action, invoice_id, line_id, status, not_before, next_attempt_at, \
                     remote_id, created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5, $6, $5, $5) \
                     ON CONFLICT (idempotency_key) DO NOTHING",
                )
                .bind(format!("remove-duplicate:{}:{}", r.action, r.remote_id))
                .bind(r.action.as_str())
                .bind(invoice.get())
                .bind(r.line.map(|l| l.get()))
                .bind(now)
                .bind(&r.remote_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 1 {
                    queued += 1;
                    write_audit!(
                        &mut *tx,
                        actor,
                        "invoice",
                        invoice,
                        "duplicate removal queued",
                        None,
                        Some(json!({"action": r.action.as_str(), "remote_id": r.remote_id, "duplicate": r.what}))
                    )?;
                }
            }
            tx.commit().await?;
            Ok(queued)
        })
    }
}
