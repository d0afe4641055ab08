//! Tables of the billing run: invoices and their lines, skips, the outbox of remote actions and
//! the ledger of their outcomes. Recording a run is one transaction: invoice, lines, outbox entries
//! and the once-off items it bills, or none of them.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{Store, StoreError, is_unique_violation, micros, money, on_db};
use crate::domain::{CustomerId, ItemId, Money, Period, TaxRates};

/// A local invoice to record (numbers are given by the store).
#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub customer_id: CustomerId,
    pub period: Period,
    pub destination: &'static str,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    pub email_decision: String,
    pub xero_contact_id: Option<String>,
    pub lines: Vec<NewLine>,
    /// Once-off items this invoice bills: they become "invoiced" in the same transaction.
    pub bills_items: Vec<ItemId>,
    /// What to do remotely, in order.
    pub actions: Vec<NewAction>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewLine {
    pub charge_key: String,
    pub kind: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Money,
    pub amount: Money,
    pub unit_cost: Money,
    pub autotask: Option<(i64, i64, i64)>,
    pub account_code: Option<String>,
    pub tax_type: Option<String>,
    pub item_code: Option<String>,
    pub source_item: Option<i64>,
}

/// One remote action. `line` indexes `NewInvoice::lines` (per-line actions); `after` indexes an
/// earlier action of the same invoice that must be done first (the email waits for the create).
#[derive(Debug, Clone)]
pub struct NewAction {
    pub action: &'static str,
    pub key: String,
    pub line: Option<usize>,
    pub after: Option<usize>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoredInvoice {
    pub id: i64,
    pub customer_id: i64,
    pub customer_name: String,
    pub period: String,
    pub number: String,
    pub destination: String,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    pub total_micros: i64,
    pub email_decision: String,
    pub xero_contact_id: Option<String>,
    pub xero_invoice_id: Option<String>,
    pub xero_status: Option<String>,
    pub emailed_at: Option<DateTime<Utc>>,
    pub revision: i32,
}

impl StoredInvoice {
    pub fn total(&self) -> Money {
        money(self.total_micros)
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct StoredLine {
    pub id: i64,
    pub invoice_id: i64,
    pub charge_key: String,
    pub position: i32,
    pub kind: String,
    pub description: String,
    pub quantity: String,
    pub unit_price_micros: i64,
    pub amount_micros: i64,
    pub unit_cost_micros: i64,
    pub autotask_contract_id: Option<i64>,
    pub autotask_product_id: Option<i64>,
    pub autotask_material_code_id: Option<i64>,
    pub account_code: Option<String>,
    pub tax_type: Option<String>,
    pub item_code: Option<String>,
    pub source_item_id: Option<i64>,
    pub autotask_charge_id: Option<i64>,
    pub removed: bool,
}

/// The tax Xero adds to an invoice's lines (removed lines left out) at `rates`; `None` when a
/// line's tax type has no configured rate.
pub fn xero_tax(lines: &[StoredLine], rates: &TaxRates) -> Option<Money> {
    rates.invoice_tax(
        lines
            .iter()
            .filter(|l| !l.removed)
            .map(|l| (l.tax_type.as_deref(), l.amount())),
    )
}

impl StoredLine {
    pub fn amount(&self) -> Money {
        money(self.amount_micros)
    }
    pub fn unit_price(&self) -> Money {
        money(self.unit_price_micros)
    }
    pub fn unit_cost(&self) -> Money {
        money(self.unit_cost_micros)
    }
    pub fn quantity(&self) -> Result<Decimal, StoreError> {
        self.quantity.parse().map_err(|_| {
            StoreError::Corrupt(format!("line {} quantity {:?}", self.id, self.quantity))
        })
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OutboxEntry {
    pub id: i64,
    pub idempotency_key: String,
    pub action: String,
    pub invoice_id: i64,
    pub line_id: Option<i64>,
    pub depends_on: Option<i64>,
    pub status: String,
    pub attempts: i32,
    pub not_before: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub remote_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct LedgerRow {
    pub id: i64,
    pub outbox_id: i64,
    pub invoice_id: i64,
    pub line_id: Option<i64>,
    pub system: String,
    pub action: String,
    pub remote_id: Option<String>,
    pub remote_status: Option<String>,
    pub amount_micros: Option<i64>,
    pub requested_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub outcome: String,
    pub error: Option<String>,
}

/// One outcome to write in the ledger.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    pub system: &'static str,
    pub remote_id: Option<String>,
    pub remote_status: Option<String>,
    pub amount: Option<Money>,
    pub requested_at: DateTime<Utc>,
    pub outcome: &'static str,
    pub error: Option<String>,
}

/// What a successful remote action changed locally besides the outbox and ledger.
#[derive(Debug, Clone)]
pub enum RemoteEffect {
    None,
    XeroInvoice { invoice_id: String, status: String },
    Emailed,
    AutotaskCharge { charge_id: i64 },
}

/// What recording did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecordOutcome {
    pub created: Vec<String>,
    pub already_recorded: usize,
}

macro_rules! select_invoices {
    ($tail:literal) => {
        concat!(
            "SELECT i.id, i.customer_id, c.name AS customer_name, i.period, i.number, i.destination, i.issue_date, \
             i.due_date, i.currency, i.total_micros, i.email_decision, i.xero_contact_id, i.xero_invoice_id, \
             i.xero_status, i.emailed_at, i.revision FROM invoices i JOIN customers c ON c.id = i.customer_id ",
            $tail
        )
    };
}

macro_rules! select_lines {
    ($tail:literal) => {
        concat!(
            "SELECT id, invoice_id, charge_key, position, kind, description, quantity, unit_price_micros, amount_micros, \
             unit_cost_micros, autotask_contract_id, autotask_product_id, autotask_material_code_id, account_code, \
             tax_type, item_code, source_item_id, autotask_charge_id, removed FROM invoice_lines ",
            $tail
        )
    };
}

macro_rules! select_outbox {
    ($tail:literal) => {
        concat!(
            "SELECT id, idempotency_key, action, invoice_id, line_id, depends_on, status, attempts, not_before, \
             next_attempt_at, last_error, remote_id FROM outbox ",
            $tail
        )
    };
}

impl Store {
    /// Records each invoice with its lines, its outbox entries and the once-off items it bills, one
    /// transaction per invoice. An invoice already recorded for the customer and period is left as
    /// it is (a re-enqueued run never makes a second one).
    pub async fn record_invoices(
        &self,
        invoices: &[NewInvoice],
        number_prefix: &str,
        start_number: u64,
        not_before: DateTime<Utc>,
    ) -> Result<RecordOutcome, StoreError> {
        let mut outcome = RecordOutcome::default();
        for inv in invoices {
            match self
                .record_one(inv, number_prefix, start_number, not_before)
                .await?
            {
                Some(number) => outcome.created.push(number),
                None => outcome.already_recorded += 1,
            }
        }
        Ok(outcome)
    }

    async fn record_one(
        &self,
        inv: &NewInvoice,
        prefix: &str,
        start: u64,
        not_before: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let total: Money = inv.lines.iter().map(|l| l.amount).sum();
        let total = micros(total)?;
        let now = Utc::now();
        let period = inv.period.to_string();
        let start = i64::try_from(start)
            .map_err(|_| StoreError::Refused("invoices.start_number is too large".into()))?;
        on_db!(self, p => {
            let mut tx = p.begin().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM invoices WHERE customer_id = $1 AND period = $2")
                .bind(inv.customer_id.get())
                .bind(&period)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                return Ok(None);
            }
            // The counter row is the lock that serialises numbering; numbers never repeat or skip.
            sqlx::query("INSERT INTO invoice_counter (id, next) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                .bind(start)
                .execute(&mut *tx)
                .await?;
            let n: i64 = sqlx::query_scalar("UPDATE invoice_counter SET next = next + 1 WHERE id = 1 RETURNING next - 1")
                .fetch_one(&mut *tx)
                .await?;
            let number = format!("{prefix}{n}");
            let inserted = sqlx::query_scalar(
                "INSERT INTO invoices (customer_id, period, number, destination, issue_date, due_date, currency, \
                 total_micros, email_decision, xero_contact_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
            )
            .bind(inv.customer_id.get())
            .bind(&period)
            .bind(&number)
            .bind(inv.destination)
            .bind(inv.issue_date)
            .bind(inv.due_date)
            .bind(&inv.currency)
            .bind(total)
            .bind(&inv.email_decision)
            .bind(inv.xero_contact_id.as_deref())
            .bind(now)
            .fetch_one(&mut *tx)
            .await;
            let invoice_id: i64 = match inserted {
                Ok(id) => id,
                Err(e) if is_unique_violation(&e) => return Ok(None), // a concurrent run recorded it
                Err(e) => return Err(e.into()),
            };
            let mut line_ids = Vec::with_capacity(inv.lines.len());
            for (pos, l) in inv.lines.iter().enumerate() {
                let id: i64 = insert_line!(&mut *tx, invoice_id, inv.customer_id.get(), &period, pos as i32, l)?;
                line_ids.push(id);
            }
            let mut action_ids: Vec<i64> = Vec::with_capacity(inv.actions.len());
            for a in &inv.actions {
                let line_id = a.line.and_then(|i| line_ids.get(i).copied());
                let depends_on = a.after.and_then(|i| action_ids.get(i).copied());
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO outbox (idempotency_key, action, invoice_id, line_id, depends_on, status, not_before, \
                     next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $7, $7) RETURNING id",
                )
                .bind(&a.key)
                .bind(a.action)
                .bind(invoice_id)
                .bind(line_id)
                .bind(depends_on)
                .bind(not_before)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                action_ids.push(id);
            }
            for item in &inv.bills_items {
                let n = sqlx::query(
                    "UPDATE items SET status = 'invoiced', invoiced_period = $2, updated_at = $3 WHERE id = $1 AND status = 'pending'",
                )
                .bind(item.get())
                .bind(&period)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    return Err(StoreError::Refused(format!(
                        "once-off item {item} is no longer pending (edited or billed meanwhile); run again"
                    )));
                }
            }
            tx.commit().await?;
            Ok(Some(number))
        })
    }

    /// Records why a customer got no invoice for a period (replacing an earlier reason).
    pub async fn record_skip(
        &self,
        period: Period,
        customer: CustomerId,
        reason: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "INSERT INTO billing_skips (period, customer_id, reason, recorded_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (period, customer_id) DO UPDATE SET reason = excluded.reason, recorded_at = excluded.recorded_at",
        )
        .bind(period.to_string())
        .bind(customer.get())
        .bind(reason)
        .bind(Utc::now())
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn skips(&self, period: Period) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(
            on_db!(self, p => sqlx::query_as("SELECT customer_id, reason FROM billing_skips WHERE period = $1 ORDER BY customer_id")
            .bind(period.to_string())
            .fetch_all(p)
            .await?),
        )
    }

    pub async fn invoices(
        &self,
        period: Option<Period>,
        customer: Option<CustomerId>,
    ) -> Result<Vec<StoredInvoice>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(select_invoices!(
            "WHERE (CAST($1 AS TEXT) IS NULL OR i.period = $1) AND (CAST($2 AS BIGINT) IS NULL OR i.customer_id = $2) \
             ORDER BY i.period, i.number"))
            .bind(period.map(|p| p.to_string()))
            .bind(customer.map(|c| c.get()))
            .fetch_all(p)
            .await?))
    }

    pub async fn invoice_by_id(&self, id: i64) -> Result<StoredInvoice, StoreError> {
        let row: Option<StoredInvoice> = on_db!(self, p => sqlx::query_as(select_invoices!("WHERE i.id = $1"))
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("invoice {id}")))
    }

    pub async fn invoice_by_number(&self, number: &str) -> Result<StoredInvoice, StoreError> {
        let row: Option<StoredInvoice> = on_db!(self, p => sqlx::query_as(select_invoices!("WHERE i.number = $1"))
            .bind(number)
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("invoice {number}")))
    }

    /// The invoice's current lines (removed ones included, flagged), in order.
    pub async fn invoice_lines(&self, invoice_id: i64) -> Result<Vec<StoredLine>, StoreError> {
        Ok(
            on_db!(self, p => sqlx::query_as(select_lines!("WHERE invoice_id = $1 ORDER BY position, id"))
            .bind(invoice_id)
            .fetch_all(p)
            .await?),
        )
    }

    pub async fn line(&self, id: i64) -> Result<StoredLine, StoreError> {
        let row: Option<StoredLine> = on_db!(self, p => sqlx::query_as(select_lines!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("invoice line {id}")))
    }

    /// Claims up to `limit` due entries of `action` for `owner` until `until`. An entry is due when it
    /// is pending (or in flight with an expired claim: its worker died), its time has come and the
    /// entry it depends on is done. Claiming counts an attempt before any remote call is made.
    pub async fn claim_outbox(
        &self,
        action: &str,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let ids: Vec<i64> = on_db!(self, p => {
            let mut tx = p.begin().await?;
            // SKIP LOCKED lets several daemons on PostgreSQL claim disjoint entries; SQLite has one writer.
            let sql = if self.is_postgres() {
                "SELECT o.id FROM outbox o WHERE o.action = $1 AND o.not_before <= $2 AND o.next_attempt_at <= $2 \
                 AND (o.status = 'pending' OR (o.status = 'in_flight' AND o.claimed_until < $2)) \
                 AND (o.depends_on IS NULL OR EXISTS (SELECT 1 FROM outbox d WHERE d.id = o.depends_on AND d.status = 'done')) \
                 ORDER BY o.id LIMIT $3 FOR UPDATE SKIP LOCKED"
            } else {
                "SELECT o.id FROM outbox o WHERE o.action = $1 AND o.not_before <= $2 AND o.next_attempt_at <= $2 \
                 AND (o.status = 'pending' OR (o.status = 'in_flight' AND o.claimed_until < $2)) \
                 AND (o.depends_on IS NULL OR EXISTS (SELECT 1 FROM outbox d WHERE d.id = o.depends_on AND d.status = 'done')) \
                 ORDER BY o.id LIMIT $3"
            };
            let ids: Vec<i64> = sqlx::query_scalar(sql).bind(action).bind(now).bind(limit).fetch_all(&mut *tx).await?;
            for id in &ids {
                sqlx::query(
                    "UPDATE outbox SET status = 'in_flight', claimed_by = $2, claimed_until = $3, attempts = attempts + 1, \
                     updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(owner)
                .bind(until)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            ids
        });
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.outbox_entry(id).await?);
        }
        Ok(out)
    }

    pub async fn outbox_entry(&self, id: i64) -> Result<OutboxEntry, StoreError> {
        let row: Option<OutboxEntry> = on_db!(self, p => sqlx::query_as(select_outbox!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("outbox entry {id}")))
    }

    /// Outbox entries of an invoice, or all not yet done (`invoice` None), oldest first.
    pub async fn outbox(&self, invoice: Option<i64>) -> Result<Vec<OutboxEntry>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(select_outbox!(
            "WHERE (CAST($1 AS BIGINT) IS NULL AND status NOT IN ('done', 'cancelled')) OR invoice_id = $1 ORDER BY id"))
            .bind(invoice)
            .fetch_all(p)
            .await?))
    }

    /// Counts of outbox entries by status.
    pub async fn outbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            on_db!(self, p => sqlx::query_as("SELECT status, COUNT(*) FROM outbox GROUP BY status ORDER BY status")
            .fetch_all(p)
            .await?),
        )
    }

    /// Writes a finished action: the ledger row, the outbox entry done, and its local effect, at once.
    pub async fn complete_outbox(
        &self,
        entry: &OutboxEntry,
        ledger: &LedgerEntry,
        effect: &RemoteEffect,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        on_db!(self, p => {
            let mut tx = p.begin().await?;
            insert_ledger!(&mut *tx, entry, ledger, now)?;
            sqlx::query("UPDATE outbox SET status = 'done', remote_id = $2, last_error = NULL, claimed_by = NULL, updated_at = $3 WHERE id = $1")
                .bind(entry.id)
                .bind(ledger.remote_id.as_deref())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            match effect {
                RemoteEffect::None => {}
                RemoteEffect::XeroInvoice { invoice_id, status } => {
                    sqlx::query("UPDATE invoices SET xero_invoice_id = $2, xero_status = $3, updated_at = $4 WHERE id = $1")
                        .bind(entry.invoice_id)
                        .bind(invoice_id)
                        .bind(status)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                RemoteEffect::Emailed => {
                    sqlx::query("UPDATE invoices SET emailed_at = $2, updated_at = $2 WHERE id = $1")
                        .bind(entry.invoice_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                RemoteEffect::AutotaskCharge { charge_id } => {
                    sqlx::query("UPDATE invoice_lines SET autotask_charge_id = $2 WHERE id = $1")
                        .bind(entry.line_id)
                        .bind(charge_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records a failed attempt. A permanent failure (validation) waits for a fix and a resync;
    /// others are retried at `retry_at`.
    pub async fn fail_outbox(
        &self,
        entry: &OutboxEntry,
        ledger: &LedgerEntry,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let error = ledger.error.clone().unwrap_or_default();
        on_db!(self, p => {
            let mut tx = p.begin().await?;
            insert_ledger!(&mut *tx, entry, ledger, now)?;
            let (status, next) = match retry_at {
                Some(t) => ("pending", t),
                None => ("failed", now),
            };
            sqlx::query(
                "UPDATE outbox SET status = $2, next_attempt_at = $3, last_error = $4, claimed_by = NULL, updated_at = $5 WHERE id = $1",
            )
            .bind(entry.id)
            .bind(status)
            .bind(next)
            .bind(&error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Puts an entry back for later without counting a failure (parked: day budget, email cap).
    pub async fn park_outbox(
        &self,
        entry: &OutboxEntry,
        until: DateTime<Utc>,
        why: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $2, last_error = $3, attempts = attempts - 1, \
             claimed_by = NULL, updated_at = $4 WHERE id = $1",
        )
        .bind(entry.id)
        .bind(until)
        .bind(why)
        .bind(Utc::now())
        .execute(p)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn ledger(&self, invoice_id: Option<i64>) -> Result<Vec<LedgerRow>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(
            "SELECT id, outbox_id, invoice_id, line_id, system, action, remote_id, remote_status, amount_micros, \
             requested_at, completed_at, outcome, error FROM ledger WHERE CAST($1 AS BIGINT) IS NULL OR invoice_id = $1 ORDER BY id")
            .bind(invoice_id)
            .fetch_all(p)
            .await?))
    }
}

/// Inserts one invoice line with the executor `$ex`; evaluates to the new line's id.
macro_rules! insert_line {
    ($ex:expr, $invoice:expr, $customer:expr, $period:expr, $position:expr, $l:expr) => {{
        let l: &NewLine = $l;
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO invoice_lines (invoice_id, customer_id, period, charge_key, position, kind, description, \
             quantity, unit_price_micros, amount_micros, unit_cost_micros, autotask_contract_id, \
             autotask_product_id, autotask_material_code_id, account_code, tax_type, item_code, source_item_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id",
        )
        .bind($invoice)
        .bind($customer)
        .bind($period)
        .bind(&l.charge_key)
        .bind($position)
        .bind(&l.kind)
        .bind(&l.description)
        .bind(l.quantity.to_string())
        .bind(micros(l.unit_price)?)
        .bind(micros(l.amount)?)
        .bind(micros(l.unit_cost)?)
        .bind(l.autotask.map(|a| a.0))
        .bind(l.autotask.map(|a| a.1))
        .bind(l.autotask.map(|a| a.2))
        .bind(l.account_code.as_deref())
        .bind(l.tax_type.as_deref())
        .bind(l.item_code.as_deref())
        .bind(l.source_item)
        .fetch_one($ex)
        .await
    }};
}
use insert_line;

macro_rules! insert_ledger {
    ($ex:expr, $entry:expr, $l:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO ledger (outbox_id, invoice_id, line_id, system, action, remote_id, remote_status, amount_micros, \
             requested_at, completed_at, outcome, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind($entry.id)
        .bind($entry.invoice_id)
        .bind($entry.line_id)
        .bind($l.system)
        .bind(&$entry.action)
        .bind($l.remote_id.as_deref())
        .bind($l.remote_status.as_deref())
        .bind($l.amount.map(|m: Money| m.to_micros()).transpose()?)
        .bind($l.requested_at)
        .bind($now)
        .bind($l.outcome)
        .bind($l.error.as_deref())
        .execute($ex)
        .await
    };
}
use insert_ledger;

/// What a resync changes on one recorded invoice, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct InvoiceChanges {
    pub changed: Vec<(i64, NewLine)>,
    pub added: Vec<NewLine>,
    pub removed: Vec<i64>,
    /// Remote actions: per-line actions index `changed` then `added` then `removed`, in that order.
    pub actions: Vec<NewAction>,
    /// Outbox entries made pointless by the change (e.g. a pending email of a now-empty invoice).
    pub cancel: Vec<i64>,
}

impl Store {
    /// Applies a resync's changes to a recorded invoice: lines updated, added or flagged removed, the
    /// total and revision bumped, and the remote actions queued, at once.
    pub async fn apply_invoice_changes(
        &self,
        invoice_id: i64,
        c: &InvoiceChanges,
        now: DateTime<Utc>,
    ) -> Result<i32, StoreError> {
        on_db!(self, p => {
            let mut tx = p.begin().await?;
            let (customer_id, period, revision): (i64, String, i32) =
                sqlx::query_as("SELECT customer_id, period, revision FROM invoices WHERE id = $1")
                    .bind(invoice_id)
                    .fetch_one(&mut *tx)
                    .await?;
            let mut line_ids: Vec<i64> = Vec::new();
            for (id, l) in &c.changed {
                sqlx::query(
                    "UPDATE invoice_lines SET description = $2, quantity = $3, unit_price_micros = $4, amount_micros = $5, \
                     unit_cost_micros = $6, removed = FALSE WHERE id = $1",
                )
                .bind(id)
                .bind(&l.description)
                .bind(l.quantity.to_string())
                .bind(micros(l.unit_price)?)
                .bind(micros(l.amount)?)
                .bind(micros(l.unit_cost)?)
                .execute(&mut *tx)
                .await?;
                line_ids.push(*id);
            }
            let next_pos: i32 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) + 1 FROM invoice_lines WHERE invoice_id = $1")
                .bind(invoice_id)
                .fetch_one(&mut *tx)
                .await?;
            for (i, l) in c.added.iter().enumerate() {
                let id: i64 = insert_line!(&mut *tx, invoice_id, customer_id, &period, next_pos + i as i32, l)?;
                line_ids.push(id);
            }
            for id in &c.removed {
                sqlx::query("UPDATE invoice_lines SET removed = TRUE WHERE id = $1").bind(id).execute(&mut *tx).await?;
                line_ids.push(*id);
            }
            let total: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM invoice_lines WHERE invoice_id = $1 AND removed = FALSE",
            )
            .bind(invoice_id)
            .fetch_one(&mut *tx)
            .await?;
            let revision = revision + 1;
            sqlx::query("UPDATE invoices SET total_micros = $2, revision = $3, updated_at = $4 WHERE id = $1")
                .bind(invoice_id)
                .bind(total)
                .bind(revision)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            for a in &c.actions {
                sqlx::query(
                    "INSERT INTO outbox (idempotency_key, action, invoice_id, line_id, status, not_before, next_attempt_at, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5, $5)",
                )
                .bind(&a.key)
                .bind(a.action)
                .bind(invoice_id)
                .bind(a.line.and_then(|i| line_ids.get(i).copied()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for id in &c.cancel {
                sqlx::query("UPDATE outbox SET status = 'cancelled', updated_at = $2 WHERE id = $1 AND status = 'pending'")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(revision)
        })
    }

    /// Puts permanently failed entries of an invoice back in the queue, due at `now` (after a fix,
    /// on resync).
    pub async fn retry_failed_outbox(
        &self,
        invoice_id: i64,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        Ok(on_db!(self, p => sqlx::query(
            "UPDATE outbox SET status = 'pending', next_attempt_at = $2, updated_at = $2 WHERE invoice_id = $1 AND status = 'failed'",
        )
        .bind(invoice_id)
        .bind(now)
        .execute(p)
        .await?
        .rows_affected()))
    }
}
