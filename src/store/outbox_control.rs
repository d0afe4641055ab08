//! Ops' control of single outbox entries (`rebilld outbox list | retry | skip`): see the open or
//! failed entries, put one back in the queue now, or skip one for good with a reason. Each change
//! writes an audit record in the same transaction. The claim, finish and park writes of the push
//! stay in `outbox.rs`; these never touch an entry while it is in flight.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::audit::write_audit;
use super::outbox::{OutboxEntry, OutboxRow, select_outbox};
use super::{Actor, Store, StoreError, on_db, parse_rows};
use crate::domain::{InvoiceId, LineId, OutboxAction, OutboxId, OutboxStatus};

/// An open outbox entry with the number of its invoice, as `outbox list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ListedEntry {
    #[serde(flatten)]
    pub entry: OutboxEntry,
    pub invoice: String,
}

/// An action ops skipped: what, on which invoice (and line), when, by whom and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkippedAction {
    pub outbox_id: OutboxId,
    pub invoice_id: InvoiceId,
    pub line_id: Option<LineId>,
    pub action: OutboxAction,
    pub skipped_at: DateTime<Utc>,
    pub skipped_by: String,
    pub reason: String,
}

#[derive(sqlx::FromRow)]
struct SkippedRow {
    id: i64,
    invoice_id: i64,
    line_id: Option<i64>,
    action: String,
    skipped_at: DateTime<Utc>,
    skipped_by: Option<String>,
    skipped_reason: Option<String>,
}

impl TryFrom<SkippedRow> for SkippedAction {
    type Error = StoreError;
    fn try_from(r: SkippedRow) -> Result<Self, StoreError> {
        let bad = |e: crate::domain::DomainError| {
            StoreError::Corrupt(format!("outbox row {}: {e}", r.id))
        };
        Ok(SkippedAction {
            outbox_id: OutboxId::new(r.id).map_err(bad)?,
            invoice_id: InvoiceId::new(r.invoice_id).map_err(bad)?,
            line_id: r.line_id.map(LineId::new).transpose().map_err(bad)?,
            action: r.action.parse().map_err(bad)?,
            skipped_at: r.skipped_at,
            skipped_by: r.skipped_by.unwrap_or_default(),
            reason: r.skipped_reason.unwrap_or_default(),
        })
    }
}

/// What an entry looked like, for the audit record.
fn audit_view(e: &OutboxEntry) -> serde_json::Value {
    json!({"status": e.status, "action": e.action, "invoice_id": e.invoice_id,
           "attempts": e.attempts, "next_attempt_at": e.next_attempt_at, "last_error": e.last_error})
}

/// Why an entry in this state cannot be retried or skipped, if it cannot.
fn refusal(e: &OutboxEntry, verb: &str) -> Option<StoreError> {
    let why = match e.status {
        OutboxStatus::Pending | OutboxStatus::Failed => return None,
        OutboxStatus::InFlight => "is being sent now; wait for its outcome (`rebilld status`)",
        OutboxStatus::Done => "is done",
        OutboxStatus::Cancelled => "was cancelled by a later change",
        OutboxStatus::Skipped => "was skipped already",
    };
    Some(StoreError::Refused(format!(
        "outbox entry {} ({}) {why}: only a failed or waiting entry can be {verb}",
        e.id, e.action
    )))
}

impl Store {
    /// The entries not yet done (pending, in flight, failed), or only the failed ones, oldest
    /// first, each with its invoice's number.
    pub async fn outbox_open(&self, failed_only: bool) -> Result<Vec<ListedEntry>, StoreError> {
        let rows: Vec<OutboxRow> = on_db!(self, p => sqlx::query_as(select_outbox!(
            "WHERE skipped_at IS NULL AND status IN ('pending', 'in_flight', 'failed') \
             AND (NOT $1 OR status = 'failed') ORDER BY id"))
            .bind(failed_only)
            .fetch_all(p)
            .await?);
        let entries: Vec<OutboxEntry> = parse_rows(rows)?;
        let mut numbers = std::collections::BTreeMap::new();
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let invoice = match numbers.get(&entry.invoice_id) {
                Some(n) => n,
                None => {
                    let n = self.invoice_by_id(entry.invoice_id).await?.number;
                    numbers.entry(entry.invoice_id).or_insert(n)
                }
            }
            .clone();
            out.push(ListedEntry { entry, invoice });
        }
        Ok(out)
    }

    /// Puts a failed entry, or one waiting for a later time (parked, or backing off), back in
    /// the queue due at `now`. Refused for an entry in flight, done, cancelled or skipped.
    pub async fn retry_outbox_entry(
        &self,
        id: OutboxId,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<OutboxEntry, StoreError> {
        let before = self.outbox_entry(id).await?;
        if let Some(e) = refusal(&before, "retried") {
            return Err(e);
        }
        let changed = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query(
                "UPDATE outbox SET status = 'pending', next_attempt_at = $2, updated_at = $2 \
                 WHERE id = $1 AND skipped_at IS NULL AND status IN ('pending', 'failed')",
            )
            .bind(id.get())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                let after = json!({"status": OutboxStatus::Pending, "next_attempt_at": now});
                write_audit!(&mut *tx, actor, "outbox", id, "retry", Some(audit_view(&before)), Some(after))?;
                tx.commit().await?;
            }
            n == 1
        });
        let after = self.outbox_entry(id).await?;
        if !changed {
            // Claimed or finished between the read and the write.
            return Err(refusal(&after, "retried").unwrap_or_else(|| {
                StoreError::Refused(format!("outbox entry {id} changed meanwhile; try again"))
            }));
        }
        Ok(after)
    }

    /// Skips a failed or waiting entry for good: it is never sent, ends as skipped with who and
    /// why (audited), and so do the entries waiting for it (an email waits for its invoice's
    /// create). Returns every entry skipped, `id` first.
    pub async fn skip_outbox_entry(
        &self,
        id: OutboxId,
        actor: &Actor,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxId>, StoreError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(StoreError::Refused(
                "a skip needs a reason (--reason TEXT), for the audit log".into(),
            ));
        }
        let first = self.outbox_entry(id).await?;
        if let Some(e) = refusal(&first, "skipped") {
            return Err(e);
        }
        let note = format!("skipped by {}: {reason}", actor.as_str());
        let mut skipped = Vec::new();
        let mut queue = vec![first];
        while let Some(entry) = queue.pop() {
            let done = on_db!(self, p => {
                let mut tx = p.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE outbox SET status = 'cancelled', skipped_at = $2, skipped_by = $3, skipped_reason = $4, \
                     last_error = $5, claimed_by = NULL, updated_at = $2 \
                     WHERE id = $1 AND skipped_at IS NULL AND status IN ('pending', 'failed')",
                )
                .bind(entry.id.get())
                .bind(now)
                .bind(actor.as_str())
                .bind(reason)
                .bind(&note)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n == 1 {
                    let after = json!({"status": OutboxStatus::Skipped, "reason": reason});
                    write_audit!(&mut *tx, actor, "outbox", entry.id, "skip", Some(audit_view(&entry)), Some(after))?;
                    tx.commit().await?;
                }
                n == 1
            });
            if !done {
                if entry.id == id {
                    let now_is = self.outbox_entry(id).await?;
                    return Err(refusal(&now_is, "skipped").unwrap_or_else(|| {
                        StoreError::Refused(format!(
                            "outbox entry {id} changed meanwhile; try again"
                        ))
                    }));
                }
                continue;
            }
            skipped.push(entry.id);
            let waiting: Vec<OutboxRow> = on_db!(self, p => sqlx::query_as(select_outbox!(
                "WHERE depends_on = $1 AND skipped_at IS NULL AND status IN ('pending', 'failed') ORDER BY id"))
                .bind(entry.id.get())
                .fetch_all(p)
                .await?);
            queue.extend(parse_rows::<_, OutboxEntry>(waiting)?);
        }
        Ok(skipped)
    }

    /// The skipped actions of an invoice, oldest first.
    pub async fn skipped_actions(
        &self,
        invoice: InvoiceId,
    ) -> Result<Vec<SkippedAction>, StoreError> {
        let rows: Vec<SkippedRow> = on_db!(self, p => sqlx::query_as(
            "SELECT id, invoice_id, line_id, action, skipped_at, skipped_by, skipped_reason FROM outbox \
             WHERE invoice_id = $1 AND skipped_at IS NOT NULL ORDER BY id")
            .bind(invoice.get())
            .fetch_all(p)
            .await?);
        parse_rows(rows)
    }
}

/// The open outbox as on-call watches it: counts by system and state, and since when the oldest
/// failed action has stood failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutboxHealth {
    /// (system, state, count): state is "pending" (due now), "parked" (waiting for a later time:
    /// a rate limit, a budget, a back-off), "in_flight" or "failed".
    pub counts: Vec<(crate::domain::RemoteSystem, &'static str, i64)>,
    pub oldest_failed: Option<DateTime<Utc>>,
}

/// The states `OutboxHealth` counts, in order.
pub const OUTBOX_STATES: [&str; 4] = ["pending", "parked", "in_flight", "failed"];

impl Store {
    /// The open outbox by system and state at `now`, and the oldest failure. Also the health
    /// check's database probe: an error means the database did not answer.
    pub async fn outbox_health(&self, now: DateTime<Utc>) -> Result<OutboxHealth, StoreError> {
        let rows: Vec<(String, String, i64, i64)> = on_db!(self, p => sqlx::query_as(
            "SELECT action, status, \
             CAST(CASE WHEN status = 'pending' AND next_attempt_at > $1 THEN 1 ELSE 0 END AS BIGINT) AS later, \
             COUNT(*) FROM outbox WHERE skipped_at IS NULL AND status IN ('pending', 'in_flight', 'failed') \
             GROUP BY action, status, later")
            .bind(now)
            .fetch_all(p)
            .await?);
        let mut counts: std::collections::BTreeMap<
            (crate::domain::RemoteSystem, &'static str),
            i64,
        > = std::collections::BTreeMap::new();
        for (action, status, later, n) in rows {
            let action: OutboxAction = action
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("outbox: {e}")))?;
            let state = match (status.as_str(), later) {
                ("pending", 1) => "parked",
                ("pending", _) => "pending",
                ("in_flight", _) => "in_flight",
                _ => "failed",
            };
            *counts.entry((action.system(), state)).or_default() += n;
        }
        let oldest_failed: Option<DateTime<Utc>> = on_db!(self, p => sqlx::query_scalar(
            "SELECT updated_at FROM outbox WHERE skipped_at IS NULL AND status = 'failed' ORDER BY updated_at LIMIT 1")
            .fetch_optional(p)
            .await?);
        Ok(OutboxHealth {
            counts: counts.into_iter().map(|((s, st), n)| (s, st, n)).collect(),
            oldest_failed,
        })
    }
}

impl Store {
    /// Queues one more email of a Xero invoice (`invoice email NUMBER`), due at `now`, audited as
    /// `actor`'s. Its key is new (the n-th email of the invoice), so Xero does not answer it as a
    /// replay of the first. Refused while an email of the invoice is still waiting or failed.
    pub async fn queue_email_again(
        &self,
        invoice: InvoiceId,
        key_base: &str,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<OutboxEntry, StoreError> {
        let id: i64 = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let emails: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, CASE WHEN skipped_at IS NULL THEN status ELSE 'skipped' END FROM outbox \
                 WHERE invoice_id = $1 AND action = $2 ORDER BY id",
            )
            .bind(invoice.get())
            .bind(OutboxAction::XeroEmail.as_str())
            .fetch_all(&mut *tx)
            .await?;
            if let Some((open, status)) = emails
                .iter()
                .find(|(_, s)| matches!(s.as_str(), "pending" | "in_flight" | "failed"))
            {
                return Err(StoreError::Refused(format!(
                    "an email of this invoice is already {}: outbox entry {open} (`rebilld outbox list`)",
                    status.replace('_', " ")
                )));
            }
            let key = format!("{key_base}:again-{}", emails.len() + 1);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO outbox (idempotency_key, action, invoice_id, status, not_before, next_attempt_at, \
                 created_at, updated_at) VALUES ($1, $2, $3, 'pending', $4, $4, $4, $4) RETURNING id",
            )
            .bind(&key)
            .bind(OutboxAction::XeroEmail.as_str())
            .bind(invoice.get())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let after = json!({"outbox_id": id, "key": key});
            write_audit!(&mut *tx, actor, "invoice", invoice, "email_again", None::<serde_json::Value>, Some(after))?;
            tx.commit().await?;
            id
        });
        self.outbox_entry(OutboxId::new(id)?).await
    }
}
