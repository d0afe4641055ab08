//! Tables of the billing run: invoices and their lines, and the customers skipped. Recording a run is
//! one transaction per invoice: invoice, lines, outbox entries and the once-off items it bills, or
//! none of them. Rows are parsed into the domain's records here, at the boundary (`TryFrom<Row>`):
//! an unknown status or a non-positive id is a `StoreError::Corrupt` naming the row, never a string
//! that travels on. The outbox and the ledger are in `outbox.rs`.

use crate::store::BeginWrite;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::outbox::NewAction;
use super::{Store, StoreError, is_unique_violation, micros, money, on_db, parse_rows};
use crate::domain::billing::{ChargeKey, Line};
use crate::domain::invoice::LineChanges;
use crate::domain::{
    AutotaskCoding, CustomerId, InvoiceId, ItemId, LineId, Money, OutboxId, Period, RemoteSystem,
    TaxRates,
};

pub use crate::domain::invoice::{LedgerRow, OutboxEntry, StoredInvoice, StoredLine};

/// A local invoice to record (numbers are given by the store).
#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub customer_id: CustomerId,
    pub period: Period,
    pub destination: RemoteSystem,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    pub email_decision: String,
    pub xero_contact_id: Option<String>,
    pub lines: Vec<Line>,
    /// Once-off items this invoice bills: they become "invoiced" in the same transaction.
    pub bills_items: Vec<ItemId>,
    /// What to do remotely, in order.
    pub actions: Vec<NewAction>,
}

#[derive(sqlx::FromRow)]
struct InvoiceRow {
    id: i64,
    customer_id: i64,
    customer_name: String,
    period: String,
    number: String,
    destination: String,
    issue_date: NaiveDate,
    due_date: NaiveDate,
    currency: String,
    total_micros: i64,
    email_decision: String,
    xero_contact_id: Option<String>,
    xero_invoice_id: Option<String>,
    xero_status: Option<String>,
    emailed_at: Option<DateTime<Utc>>,
    revision: i32,
    voided_at: Option<DateTime<Utc>>,
    voided_by: Option<String>,
    void_reason: Option<String>,
}

/// Names the row in a parse error, so a corrupt row can be found.
fn corrupt(table: &str, id: i64, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{table} row {id}: {e}"))
}

impl TryFrom<InvoiceRow> for StoredInvoice {
    type Error = StoreError;
    fn try_from(r: InvoiceRow) -> Result<Self, StoreError> {
        let bad = |e: crate::domain::DomainError| corrupt("invoices", r.id, e);
        Ok(StoredInvoice {
            id: InvoiceId::new(r.id).map_err(bad)?,
            customer_id: CustomerId::new(r.customer_id).map_err(bad)?,
            customer_name: r.customer_name,
            period: Period::parse(&r.period).map_err(bad)?,
            destination: r.destination.parse().map_err(bad)?,
            number: r.number,
            issue_date: r.issue_date,
            due_date: r.due_date,
            currency: r.currency,
            total: money(r.total_micros),
            email_decision: r.email_decision,
            xero_contact_id: r.xero_contact_id,
            xero_invoice_id: r.xero_invoice_id,
            xero_status: r.xero_status,
            emailed_at: r.emailed_at,
            revision: r.revision,
            voided: r.voided_at.map(|at| crate::domain::invoice::Voided {
                at,
                by: r.voided_by.unwrap_or_default(),
                reason: r.void_reason.unwrap_or_default(),
            }),
        })
    }
}

#[derive(sqlx::FromRow)]
struct LineRow {
    id: i64,
    invoice_id: i64,
    charge_key: String,
    position: i32,
    kind: String,
    description: String,
    quantity: String,
    unit_price_micros: i64,
    amount_micros: i64,
    unit_cost_micros: i64,
    autotask_contract_id: Option<i64>,
    autotask_product_id: Option<i64>,
    autotask_material_code_id: Option<i64>,
    account_code: Option<String>,
    tax_type: Option<String>,
    item_code: Option<String>,
    source_item_id: Option<i64>,
    autotask_charge_id: Option<i64>,
    removed: bool,
}

impl TryFrom<LineRow> for StoredLine {
    type Error = StoreError;
    fn try_from(r: LineRow) -> Result<Self, StoreError> {
        let bad = |e: crate::domain::DomainError| corrupt("invoice_lines", r.id, e);
        let autotask = match (
            r.autotask_contract_id,
            r.autotask_product_id,
            r.autotask_material_code_id,
        ) {
            (Some(c), Some(p), Some(m)) => Some(AutotaskCoding {
                contract_id: c.try_into().map_err(bad)?,
                product_id: p.try_into().map_err(bad)?,
                material_code_id: m.try_into().map_err(bad)?,
            }),
            (None, None, None) => None,
            _ => {
                return Err(corrupt(
                    "invoice_lines",
                    r.id,
                    "contract, product and material code must be all set or all empty",
                ));
            }
        };
        let quantity: Decimal = r
            .quantity
            .parse()
            .map_err(|_| corrupt("invoice_lines", r.id, format!("quantity {:?}", r.quantity)))?;
        Ok(StoredLine {
            id: LineId::new(r.id).map_err(bad)?,
            invoice_id: InvoiceId::new(r.invoice_id).map_err(bad)?,
            charge_key: ChargeKey::parse(&r.charge_key).map_err(bad)?,
            position: r.position,
            kind: r.kind.parse().map_err(bad)?,
            description: r.description,
            quantity,
            unit_price: money(r.unit_price_micros),
            amount: money(r.amount_micros),
            unit_cost: money(r.unit_cost_micros),
            autotask,
            account_code: r.account_code,
            tax_type: r.tax_type,
            item_code: r.item_code,
            source_item: r.source_item_id.map(ItemId::new).transpose().map_err(bad)?,
            autotask_charge_id: r.autotask_charge_id,
            removed: r.removed,
        })
    }
}

/// The tax Xero adds to an invoice's lines (removed lines left out) at `rates`; `None` when a
/// line's tax type has no configured rate.
pub fn xero_tax(lines: &[StoredLine], rates: &TaxRates) -> Option<Money> {
    rates.invoice_tax(
        lines
            .iter()
            .filter(|l| !l.removed)
            .map(|l| (l.tax_type.as_deref(), l.amount)),
    )
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
             i.xero_status, i.emailed_at, i.revision, i.voided_at, i.voided_by, i.void_reason FROM invoices i JOIN customers c ON c.id = i.customer_id ",
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
            let mut tx = p.begin_write().await?;
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
            .bind(inv.destination.as_str())
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
                .bind(a.action.as_str())
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

    /// The customers a period's run skipped, with the reason.
    pub async fn skips(&self, period: Period) -> Result<Vec<(CustomerId, String)>, StoreError> {
        let rows: Vec<(i64, String)> = on_db!(self, p => sqlx::query_as("SELECT customer_id, reason FROM billing_skips WHERE period = $1 ORDER BY customer_id")
            .bind(period.to_string())
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(|(c, why)| {
                Ok((
                    CustomerId::new(c).map_err(|e| corrupt("billing_skips", c, e))?,
                    why,
                ))
            })
            .collect()
    }

    pub async fn invoices(
        &self,
        period: Option<Period>,
        customer: Option<CustomerId>,
    ) -> Result<Vec<StoredInvoice>, StoreError> {
        let rows: Vec<InvoiceRow> = on_db!(self, p => sqlx::query_as(select_invoices!(
            "WHERE (CAST($1 AS TEXT) IS NULL OR i.period = $1) AND (CAST($2 AS BIGINT) IS NULL OR i.customer_id = $2) \
             ORDER BY i.period, i.number"))
            .bind(period.map(|p| p.to_string()))
            .bind(customer.map(|c| c.get()))
            .fetch_all(p)
            .await?);
        parse_rows(rows)
    }

    pub async fn invoice_by_id(&self, id: InvoiceId) -> Result<StoredInvoice, StoreError> {
        let row: Option<InvoiceRow> = on_db!(self, p => sqlx::query_as(select_invoices!("WHERE i.id = $1"))
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("invoice {id}")))?
            .try_into()
    }

    pub async fn invoice_by_number(&self, number: &str) -> Result<StoredInvoice, StoreError> {
        let row: Option<InvoiceRow> = on_db!(self, p => sqlx::query_as(select_invoices!("WHERE i.number = $1"))
            .bind(number)
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("invoice {number}")))?
            .try_into()
    }

    /// The invoice's current lines (removed ones included, flagged), in order.
    pub async fn invoice_lines(
        &self,
        invoice_id: InvoiceId,
    ) -> Result<Vec<StoredLine>, StoreError> {
        let rows: Vec<LineRow> = on_db!(self, p => sqlx::query_as(select_lines!("WHERE invoice_id = $1 ORDER BY position, id"))
            .bind(invoice_id.get())
            .fetch_all(p)
            .await?);
        parse_rows(rows)
    }

    pub async fn line(&self, id: LineId) -> Result<StoredLine, StoreError> {
        let row: Option<LineRow> = on_db!(self, p => sqlx::query_as(select_lines!("WHERE id = $1"))
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("invoice line {id}")))?
            .try_into()
    }
}

/// Inserts one invoice line with the executor `$ex`; evaluates to the new line's id.
macro_rules! insert_line {
    ($ex:expr, $invoice:expr, $customer:expr, $period:expr, $position:expr, $l:expr) => {{
        let l: &Line = $l;
        sqlx::query_scalar::<_, i64>(
            "INSERT INTO invoice_lines (invoice_id, customer_id, period, charge_key, position, kind, description, \
             quantity, unit_price_micros, amount_micros, unit_cost_micros, autotask_contract_id, \
             autotask_product_id, autotask_material_code_id, account_code, tax_type, item_code, source_item_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING id",
        )
        .bind($invoice)
        .bind($customer)
        .bind($period)
        .bind(l.charge_key.as_str())
        .bind($position)
        .bind(l.kind.as_str())
        .bind(&l.description)
        .bind(l.quantity.to_string())
        .bind(micros(l.unit_price)?)
        .bind(micros(l.amount)?)
        .bind(micros(l.unit_cost)?)
        .bind(l.autotask.map(|a| a.contract_id.get()))
        .bind(l.autotask.map(|a| a.product_id.get()))
        .bind(l.autotask.map(|a| a.material_code_id.get()))
        .bind(l.account_code.as_deref())
        .bind(l.tax_type.as_deref())
        .bind(l.item_code.as_deref())
        .bind(l.source_item.map(|i| i.get()))
        .fetch_one($ex)
        .await
    }};
}
use insert_line;

/// What a resync changes on one recorded invoice, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct InvoiceChanges {
    pub lines: LineChanges,
    /// Remote actions: per-line actions index `changed` then `added` then `removed`, in that order.
    pub actions: Vec<NewAction>,
    /// Outbox entries made pointless by the change (e.g. a pending email of a now-empty invoice).
    pub cancel: Vec<OutboxId>,
}

impl Store {
    /// Applies a resync's changes to a recorded invoice: lines updated, added or flagged removed, the
    /// total and revision bumped, and the remote actions queued, at once.
    pub async fn apply_invoice_changes(
        &self,
        invoice_id: InvoiceId,
        c: &InvoiceChanges,
        now: DateTime<Utc>,
    ) -> Result<i32, StoreError> {
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let (customer_id, period, revision): (i64, String, i32) =
                sqlx::query_as("SELECT customer_id, period, revision FROM invoices WHERE id = $1")
                    .bind(invoice_id.get())
                    .fetch_one(&mut *tx)
                    .await?;
            let mut line_ids: Vec<i64> = Vec::new();
            for (id, l) in &c.lines.changed {
                sqlx::query(
                    "UPDATE invoice_lines SET description = $2, quantity = $3, unit_price_micros = $4, amount_micros = $5, \
                     unit_cost_micros = $6, removed = FALSE, autotask_contract_id = $7, autotask_product_id = $8, \
                     autotask_material_code_id = $9, account_code = $10, tax_type = $11, item_code = $12 WHERE id = $1",
                )
                .bind(id.get())
                .bind(&l.description)
                .bind(l.quantity.to_string())
                .bind(micros(l.unit_price)?)
                .bind(micros(l.amount)?)
                .bind(micros(l.unit_cost)?)
                .bind(l.autotask.map(|a| a.contract_id.get()))
                .bind(l.autotask.map(|a| a.product_id.get()))
                .bind(l.autotask.map(|a| a.material_code_id.get()))
                .bind(l.account_code.as_deref())
                .bind(l.tax_type.as_deref())
                .bind(l.item_code.as_deref())
                .execute(&mut *tx)
                .await?;
                line_ids.push(id.get());
            }
            let next_pos: i32 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) + 1 FROM invoice_lines WHERE invoice_id = $1")
                .bind(invoice_id.get())
                .fetch_one(&mut *tx)
                .await?;
            for (i, l) in c.lines.added.iter().enumerate() {
                let id: i64 = insert_line!(&mut *tx, invoice_id.get(), customer_id, &period, next_pos + i as i32, l)?;
                line_ids.push(id);
            }
            for id in &c.lines.removed {
                sqlx::query("UPDATE invoice_lines SET removed = TRUE WHERE id = $1").bind(id.get()).execute(&mut *tx).await?;
                line_ids.push(id.get());
            }
            let total: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(amount_micros), 0) AS BIGINT) FROM invoice_lines WHERE invoice_id = $1 AND removed = FALSE",
            )
            .bind(invoice_id.get())
            .fetch_one(&mut *tx)
            .await?;
            let revision = revision + 1;
            sqlx::query("UPDATE invoices SET total_micros = $2, revision = $3, updated_at = $4 WHERE id = $1")
                .bind(invoice_id.get())
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
                .bind(a.action.as_str())
                .bind(invoice_id.get())
                .bind(a.line.and_then(|i| line_ids.get(i).copied()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for id in &c.cancel {
                sqlx::query("UPDATE outbox SET status = 'cancelled', updated_at = $2 WHERE id = $1 AND status IN ('pending', 'failed')")
                    .bind(id.get())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(revision)
        })
    }
}
