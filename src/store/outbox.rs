//! The outbox of remote actions and the ledger of their outcomes. Every remote action is an outbox
//! entry written with its invoice; a worker claims it (counting the attempt) before the call and
//! finishes it with its ledger row in one transaction. Claims are owned: a claim is renewed while
//! its work is in flight, and every write that finishes, fails or parks an entry is made only
//! while the writer still holds the claim (`WHERE claimed_by = owner AND status = 'in_flight'`):
//! a worker whose claim was taken over learns it (`false`) and stops that entry. Rows are parsed
//! into the domain's `OutboxEntry` and `LedgerRow` here.

use crate::store::BeginWrite;
use chrono::{DateTime, Utc};

use super::{Store, StoreError, on_db, parse_rows};
pub use crate::domain::invoice::{LedgerRow, OutboxEntry};
use crate::domain::{
    InvoiceId, LedgerOutcome, LineId, Money, OutboxAction, OutboxId, OutboxStatus, RemoteSystem,
};

/// One remote action to queue with an invoice. `line` indexes the invoice's lines (per-line
/// actions); `after` indexes an earlier action of the same invoice that must be done first (the
/// email waits for the create).
#[derive(Debug, Clone)]
pub struct NewAction {
    pub action: OutboxAction,
    pub key: String,
    pub line: Option<usize>,
    pub after: Option<usize>,
}

/// One outcome to write in the ledger.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub system: RemoteSystem,
    pub remote_id: Option<String>,
    pub remote_status: Option<String>,
    pub amount: Option<Money>,
    pub requested_at: DateTime<Utc>,
    pub outcome: LedgerOutcome,
    pub error: Option<String>,
}

impl LedgerEntry {
    /// An outcome with nothing from the remote yet (the caller fills in what it learnt).
    pub fn new(system: RemoteSystem, outcome: LedgerOutcome, requested_at: DateTime<Utc>) -> Self {
        LedgerEntry {
            system,
            remote_id: None,
            remote_status: None,
            amount: None,
            requested_at,
            outcome,
            error: None,
        }
    }
}

/// What a successful remote action changed locally besides the outbox and ledger.
#[derive(Debug, Clone)]
pub enum RemoteEffect {
    None,
    XeroInvoice {
        invoice_id: String,
        status: String,
    },
    Emailed,
    AutotaskCharge {
        charge_id: i64,
    },
    /// A duplicate document removed (voided, deleted, or found gone): audited with what was done.
    DuplicateRemoved {
        what: String,
    },
}

#[derive(sqlx::FromRow)]
pub(super) struct OutboxRow {
    id: i64,
    idempotency_key: String,
    action: String,
    invoice_id: i64,
    line_id: Option<i64>,
    depends_on: Option<i64>,
    status: String,
    attempts: i32,
    not_before: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    remote_id: Option<String>,
    uncertain_since: Option<DateTime<Utc>>,
}

impl TryFrom<OutboxRow> for OutboxEntry {
    type Error = StoreError;
    fn try_from(r: OutboxRow) -> Result<Self, StoreError> {
        let bad = |e: crate::domain::DomainError| {
            StoreError::Corrupt(format!("outbox row {}: {e}", r.id))
        };
        Ok(OutboxEntry {
            id: OutboxId::new(r.id).map_err(bad)?,
            action: r.action.parse().map_err(bad)?,
            invoice_id: InvoiceId::new(r.invoice_id).map_err(bad)?,
            line_id: r.line_id.map(LineId::new).transpose().map_err(bad)?,
            depends_on: r.depends_on.map(OutboxId::new).transpose().map_err(bad)?,
            status: r.status.parse().map_err(bad)?,
            idempotency_key: r.idempotency_key,
            attempts: r.attempts,
            not_before: r.not_before,
            next_attempt_at: r.next_attempt_at,
            last_error: r.last_error,
            remote_id: r.remote_id,
            uncertain_since: r.uncertain_since,
        })
    }
}

#[derive(sqlx::FromRow)]
struct LedgerRowRaw {
    id: i64,
    outbox_id: i64,
    invoice_id: i64,
    line_id: Option<i64>,
    system: String,
    action: String,
    remote_id: Option<String>,
    remote_status: Option<String>,
    amount_micros: Option<i64>,
    requested_at: DateTime<Utc>,
    completed_at: DateTime<Utc>,
    outcome: String,
    error: Option<String>,
}

impl TryFrom<LedgerRowRaw> for LedgerRow {
    type Error = StoreError;
    fn try_from(r: LedgerRowRaw) -> Result<Self, StoreError> {
        let bad = |e: crate::domain::DomainError| {
            StoreError::Corrupt(format!("ledger row {}: {e}", r.id))
        };
        Ok(LedgerRow {
            id: r.id,
            outbox_id: OutboxId::new(r.outbox_id).map_err(bad)?,
            invoice_id: InvoiceId::new(r.invoice_id).map_err(bad)?,
            line_id: r.line_id.map(LineId::new).transpose().map_err(bad)?,
            system: r.system.parse().map_err(bad)?,
            action: r.action.parse().map_err(bad)?,
            remote_id: r.remote_id,
            remote_status: r.remote_status,
            amount: r.amount_micros.map(Money::from_micros),
            requested_at: r.requested_at,
            completed_at: r.completed_at,
            outcome: r.outcome.parse().map_err(bad)?,
            error: r.error,
        })
    }
}

macro_rules! select_outbox {
    ($tail:literal) => {
        concat!(
            "SELECT id, idempotency_key, action, invoice_id, line_id, depends_on, \
             CASE WHEN skipped_at IS NULL THEN status ELSE 'skipped' END AS status, attempts, not_before, \
             next_attempt_at, last_error, remote_id, uncertain_since FROM outbox ",
            $tail
        )
    };
}

pub(super) use select_outbox;

macro_rules! insert_ledger {
    ($ex:expr, $entry:expr, $l:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO ledger (outbox_id, invoice_id, line_id, system, action, remote_id, remote_status, amount_micros, \
             requested_at, completed_at, outcome, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind($entry.id.get())
        .bind($entry.invoice_id.get())
        .bind($entry.line_id.map(|l: LineId| l.get()))
        .bind($l.system.as_str())
        .bind($entry.action.as_str())
        .bind($l.remote_id.as_deref())
        .bind($l.remote_status.as_deref())
        .bind($l.amount.map(|m: Money| m.to_micros()).transpose()?)
        .bind($l.requested_at)
        .bind($now)
        .bind($l.outcome.as_str())
        .bind($l.error.as_deref())
        .execute($ex)
        .await
    };
}

impl Store {
    /// Claims up to `limit` due entries of `action` for `owner` until `until` (the caller computes
    /// it from the time of the claim, not of the push). An entry is due when it is pending (or in
    /// flight with an expired claim: its worker died or stalled), its time has come and the entry
    /// it depends on is done. Claiming counts an attempt before any remote call is made. Taking
    /// over an expired claim keeps the entry's uncertainty as it is: a worker marks an entry
    /// uncertain (`hold_claim` with `sending_at`, committed) before it sends anything, so an entry
    /// taken over unmarked was never sent, and one marked is looked up first.
    ///
    /// One `UPDATE … WHERE id IN (SELECT …) RETURNING id` statement: on SQLite a single write
    /// (the busy timeout makes a second process wait, never fail with "database is locked"); on
    /// PostgreSQL the sub-select takes its rows `FOR UPDATE SKIP LOCKED`, so processes claim
    /// disjoint entries.
    pub async fn claim_outbox(
        &self,
        action: OutboxAction,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut ids: Vec<i64> = on_db!(self, p => {
            let sql = if self.is_postgres() {
                "UPDATE outbox SET status = 'in_flight', claimed_by = $2, claimed_until = $3, attempts = attempts + 1, \
                 updated_at = $4 WHERE id IN (SELECT o.id FROM outbox o WHERE o.action = $1 AND o.not_before <= $4 \
                 AND o.next_attempt_at <= $4 \
                 AND (o.status = 'pending' OR (o.status = 'in_flight' AND o.claimed_until < $4)) \
                 AND (o.depends_on IS NULL OR EXISTS (SELECT 1 FROM outbox d WHERE d.id = o.depends_on AND d.status = 'done')) \
                 ORDER BY o.id LIMIT $5 FOR UPDATE SKIP LOCKED) RETURNING id"
            } else {
                "UPDATE outbox SET status = 'in_flight', claimed_by = $2, claimed_until = $3, attempts = attempts + 1, \
                 updated_at = $4 WHERE id IN (SELECT o.id FROM outbox o WHERE o.action = $1 AND o.not_before <= $4 \
                 AND o.next_attempt_at <= $4 \
                 AND (o.status = 'pending' OR (o.status = 'in_flight' AND o.claimed_until < $4)) \
                 AND (o.depends_on IS NULL OR EXISTS (SELECT 1 FROM outbox d WHERE d.id = o.depends_on AND d.status = 'done')) \
                 ORDER BY o.id LIMIT $5) RETURNING id"
            };
            sqlx::query_scalar(sql)
                .bind(action.as_str())
                .bind(owner)
                .bind(until)
                .bind(now)
                .bind(limit)
                .fetch_all(p)
                .await?
        });
        ids.sort_unstable();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.outbox_entry(OutboxId::new(id)?).await?);
        }
        Ok(out)
    }

    /// Whether any entry of `actions` could be claimed at `now` (the same test as
    /// [`Store::claim_outbox`], without claiming): an idle outbox tick asks nothing of a remote.
    pub async fn outbox_has_due(
        &self,
        actions: &[OutboxAction],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        for action in actions {
            let due: Option<i64> = on_db!(self, p => sqlx::query_scalar(
                "SELECT o.id FROM outbox o WHERE o.action = $1 AND o.not_before <= $2 \
                 AND o.next_attempt_at <= $2 \
                 AND (o.status = 'pending' OR (o.status = 'in_flight' AND o.claimed_until < $2)) \
                 AND (o.depends_on IS NULL OR EXISTS (SELECT 1 FROM outbox d WHERE d.id = o.depends_on AND d.status = 'done')) \
                 LIMIT 1")
                .bind(action.as_str())
                .bind(now)
                .fetch_optional(p)
                .await?);
            if due.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Renews `owner`'s claim on an entry until `until`; with `sending_at`, also records that its
    /// request is about to be sent (the entry is uncertain from then until its outcome is written).
    /// Returns false when the claim is no longer held (taken over, or finished by another worker):
    /// the caller must not send, nor write anything for the entry.
    pub async fn hold_claim(
        &self,
        id: OutboxId,
        owner: &str,
        until: DateTime<Utc>,
        sending_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let n = on_db!(self, p => sqlx::query(
            "UPDATE outbox SET claimed_until = $3, uncertain_since = COALESCE($4, uncertain_since) \
             WHERE id = $1 AND claimed_by = $2 AND status = 'in_flight'",
        )
        .bind(id.get())
        .bind(owner)
        .bind(until)
        .bind(sending_at)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    pub async fn outbox_entry(&self, id: OutboxId) -> Result<OutboxEntry, StoreError> {
        let row: Option<OutboxRow> = on_db!(self, p => sqlx::query_as(select_outbox!("WHERE id = $1"))
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("outbox entry {id}")))?
            .try_into()
    }

    /// Who holds the claim on an entry and until when (None when it is not claimed): what `status`
    /// and the tests read to see a claim renewed.
    pub async fn outbox_claim(
        &self,
        id: OutboxId,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        let row: Option<(Option<String>, Option<DateTime<Utc>>)> = on_db!(self, p => sqlx::query_as(
            "SELECT claimed_by, claimed_until FROM outbox WHERE id = $1 AND status = 'in_flight'")
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        Ok(row.and_then(|(by, until)| by.zip(until)))
    }

    /// Outbox entries of an invoice, or all not yet done (`invoice` None), oldest first.
    pub async fn outbox(&self, invoice: Option<InvoiceId>) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows: Vec<OutboxRow> = on_db!(self, p => sqlx::query_as(select_outbox!(
            "WHERE (CAST($1 AS BIGINT) IS NULL AND status NOT IN ('done', 'cancelled')) OR invoice_id = $1 ORDER BY id"))
            .bind(invoice.map(|i| i.get()))
            .fetch_all(p)
            .await?);
        parse_rows(rows)
    }

    /// Counts of outbox entries by status.
    pub async fn outbox_counts(&self) -> Result<Vec<(OutboxStatus, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = on_db!(self, p => sqlx::query_as(
            "SELECT CASE WHEN skipped_at IS NULL THEN status ELSE 'skipped' END AS s, COUNT(*) FROM outbox GROUP BY s ORDER BY s")
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(|(s, n)| {
                let status = s
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("outbox: {e}")))?;
                Ok((status, n))
            })
            .collect()
    }

    /// Writes a finished action: the ledger row, the outbox entry done, and its local effect, at
    /// once, while `owner` holds the claim. Returns false (and writes nothing) when it does not.
    pub async fn complete_outbox(
        &self,
        entry: &OutboxEntry,
        owner: &str,
        ledger: &LedgerEntry,
        effect: &RemoteEffect,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let held = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let n = sqlx::query("UPDATE outbox SET status = 'done', remote_id = $2, last_error = NULL, claimed_by = NULL, \
                                 uncertain_since = NULL, updated_at = $3 WHERE id = $1 AND claimed_by = $4 AND status = 'in_flight'")
                .bind(entry.id.get())
                .bind(ledger.remote_id.as_deref())
                .bind(now)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            insert_ledger!(&mut *tx, entry, ledger, now)?;
            match effect {
                RemoteEffect::None => {}
                RemoteEffect::XeroInvoice { invoice_id, status } => {
                    sqlx::query("UPDATE invoices SET xero_invoice_id = $2, xero_status = $3, updated_at = $4 WHERE id = $1")
                        .bind(entry.invoice_id.get())
                        .bind(invoice_id)
                        .bind(status)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                RemoteEffect::Emailed => {
                    sqlx::query("UPDATE invoices SET emailed_at = $2, updated_at = $2 WHERE id = $1")
                        .bind(entry.invoice_id.get())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                RemoteEffect::AutotaskCharge { charge_id } => {
                    sqlx::query("UPDATE invoice_lines SET autotask_charge_id = $2 WHERE id = $1")
                        .bind(entry.line_id.map(|l| l.get()))
                        .bind(charge_id)
                        .execute(&mut *tx)
                        .await?;
                }
                RemoteEffect::DuplicateRemoved { what } => {
                    super::audit::write_audit!(
                        &mut *tx,
                        super::Actor::system(),
                        "invoice",
                        entry.invoice_id,
                        "duplicate removed",
                        None,
                        Some(serde_json::json!({"action": entry.action.as_str(), "remote_id": ledger.remote_id, "done": what}))
                    )?;
                }
            }
            tx.commit().await?;
            true
        });
        Ok(held)
    }

    /// Records a failed attempt while `owner` holds the claim (false, and nothing written, when it
    /// does not). A permanent failure (validation) waits for a fix and a resync; others are
    /// retried at `retry_at`. An uncertain entry stays uncertain: only a known outcome clears it.
    pub async fn fail_outbox(
        &self,
        entry: &OutboxEntry,
        owner: &str,
        ledger: &LedgerEntry,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let error = ledger.error.clone().unwrap_or_default();
        let held = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let (status, next) = match retry_at {
                Some(t) => (OutboxStatus::Pending, t),
                None => (OutboxStatus::Failed, now),
            };
            let n = sqlx::query(
                "UPDATE outbox SET status = $2, next_attempt_at = $3, last_error = $4, claimed_by = NULL, updated_at = $5 \
                 WHERE id = $1 AND claimed_by = $6 AND status = 'in_flight'",
            )
            .bind(entry.id.get())
            .bind(status.as_str())
            .bind(next)
            .bind(&error)
            .bind(now)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            insert_ledger!(&mut *tx, entry, ledger, now)?;
            tx.commit().await?;
            true
        });
        Ok(held)
    }

    /// Puts an entry back for later without counting a failure (parked: day budget, email cap,
    /// a settle time), while `owner` holds the claim. The attempt is given back, but an uncertain
    /// entry stays uncertain: the look-up before the next send never depends on the count.
    pub async fn park_outbox(
        &self,
        entry: &OutboxEntry,
        owner: &str,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<bool, StoreError> {
        let n = on_db!(self, p => sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $2, last_error = $3, attempts = attempts - 1, \
             claimed_by = NULL, updated_at = $4 WHERE id = $1 AND claimed_by = $5 AND status = 'in_flight'",
        )
        .bind(entry.id.get())
        .bind(until)
        .bind(why)
        .bind(Utc::now())
        .bind(owner)
        .execute(p)
        .await?
        .rows_affected());
        Ok(n == 1)
    }

    pub async fn ledger(
        &self,
        invoice_id: Option<InvoiceId>,
    ) -> Result<Vec<LedgerRow>, StoreError> {
        let rows: Vec<LedgerRowRaw> = on_db!(self, p => sqlx::query_as(
            "SELECT id, outbox_id, invoice_id, line_id, system, action, remote_id, remote_status, amount_micros, \
             requested_at, completed_at, outcome, error FROM ledger WHERE CAST($1 AS BIGINT) IS NULL OR invoice_id = $1 ORDER BY id")
            .bind(invoice_id.map(|i| i.get()))
            .fetch_all(p)
            .await?);
        parse_rows(rows)
    }

    /// Puts permanently failed entries of an invoice back in the queue, due at `now` (after a fix,
    /// on resync).
    pub async fn retry_failed_outbox(
        &self,
        invoice_id: InvoiceId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            // An action for a line that is no longer billed is superseded, never replayed.
            sqlx::query(
                "UPDATE outbox SET status = 'cancelled', updated_at = $2 WHERE invoice_id = $1 AND status = 'failed' \
                 AND line_id IN (SELECT id FROM invoice_lines WHERE removed = TRUE)",
            )
            .bind(invoice_id.get())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let n = sqlx::query(
                "UPDATE outbox SET status = 'pending', next_attempt_at = $2, updated_at = $2 WHERE invoice_id = $1 AND status = 'failed'",
            )
            .bind(invoice_id.get())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            n
        }))
    }
}
