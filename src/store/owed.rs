//! What a billing run reads to decide who owes what: the rated calls of one service over part of a
//! month (to split a month between the customers who held it), the charges recorded invoices
//! already bill, and the first period this installation billed.

use chrono::{DateTime, Utc};

use super::calls::key_floor;
use super::{Store, StoreError, money, on_db, parse_rows};
use crate::domain::billing::{BilledCharge, ChargeKey};
use crate::domain::owed::Charge;
use crate::domain::{CustomerId, Money, Period, RunStatus, ServiceId};

/// The rated calls of a service in a time range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RatedSum {
    pub calls: i64,
    pub seconds: i64,
    pub cost: Money,
    pub price: Money,
}

#[derive(sqlx::FromRow)]
struct BilledRow {
    customer_id: i64,
    period: String,
    charge_key: String,
    amount_micros: i64,
    removed: bool,
}

impl TryFrom<BilledRow> for Option<BilledCharge> {
    type Error = StoreError;
    fn try_from(r: BilledRow) -> Result<Self, StoreError> {
        let bad = |e: crate::domain::DomainError| {
            StoreError::Corrupt(format!(
                "invoice line {} of {}: {e}",
                r.charge_key, r.period
            ))
        };
        let on_invoice = Period::parse(&r.period).map_err(bad)?;
        let key = ChargeKey::parse(&r.charge_key).map_err(bad)?;
        let customer_id = CustomerId::new(r.customer_id).map_err(bad)?;
        // A key this version does not know bills nothing it could compute again.
        Ok(
            Charge::from_key(&key, on_invoice).map(|charge| BilledCharge {
                customer_id,
                on_invoice,
                charge,
                amount: money(r.amount_micros),
                removed: r.removed,
            }),
        )
    }
}

impl Store {
    /// Sums of the matched, rated calls of `service` that started in `[start, end)`.
    pub async fn rated_calls_of_service(
        &self,
        service: ServiceId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<RatedSum, StoreError> {
        let (calls, seconds, cost, price): (i64, i64, i64, i64) = on_db!(self, p => sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(duration_secs), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT), CAST(COALESCE(SUM(price_micros), 0) AS BIGINT) \
             FROM calls WHERE service_id = $1 AND price_micros IS NOT NULL AND call_key >= $2 AND call_key < $3")
            .bind(service.get())
            .bind(key_floor(start.timestamp()))
            .bind(key_floor(end.timestamp()))
            .fetch_one(p)
            .await?);
        Ok(RatedSum {
            calls,
            seconds,
            cost: money(cost),
            price: money(price),
        })
    }

    /// The charges that the lines of invoices of periods `from..=to` bill (removed lines included,
    /// flagged). The lines a void took off count as billed, not removed: voiding settles its
    /// charges (waived), so no later invoice bills them again as a shortfall.
    pub async fn billed_charges(
        &self,
        from: Period,
        to: Period,
    ) -> Result<Vec<BilledCharge>, StoreError> {
        let rows: Vec<BilledRow> = on_db!(self, p => sqlx::query_as(
            "SELECT l.customer_id, l.period, l.charge_key, l.amount_micros, \
             CASE WHEN l.voided THEN FALSE ELSE l.removed END AS removed FROM invoice_lines l \
             WHERE l.period >= $1 AND l.period <= $2 ORDER BY l.id")
            .bind(from.to_string())
            .bind(to.to_string())
            .fetch_all(p)
            .await?);
        let parsed: Vec<Option<BilledCharge>> = parse_rows(rows)?;
        Ok(parsed.into_iter().flatten().collect())
    }

    /// The first period whose billing run is done: the start of this installation's billing.
    pub async fn billing_start(&self) -> Result<Option<Period>, StoreError> {
        let first: Option<String> = on_db!(self, p => sqlx::query_scalar(
            "SELECT MIN(period) FROM billing_runs WHERE status = $1")
            .bind(RunStatus::Done.as_str())
            .fetch_one(p)
            .await?);
        first
            .map(|p| Period::parse(&p).map_err(StoreError::from))
            .transpose()
    }
}
