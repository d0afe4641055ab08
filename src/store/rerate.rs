//! Re-rating a month in one transaction: the month's unmatched calls matched to users added since,
//! every matched call re-priced, the changed prices written and the month's rollups rebuilt. A
//! crash or an error leaves the month as it was, never half re-priced; pricing itself is the
//! caller's (pure) function.

use chrono_tz::Tz;

use super::calls::{
    RatedCallRow, Rollups, SQLITE_ROWS_PER_STATEMENT, key_after, key_floor, sqlite_values,
};
use super::{Db, Store, StoreError};
use crate::domain::Period;

/// What a month's re-rate changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repriced {
    /// Unmatched calls given the service their user now belongs to.
    pub matched: u64,
    /// Calls whose price or plan version changed.
    pub changed: u64,
}

const MATCH: &str = "UPDATE calls SET service_id = (SELECT su.service_id FROM service_users su WHERE su.user_ref = calls.user_ref) \
     WHERE service_id IS NULL AND call_key >= $1 AND call_key < $2 AND user_ref IN (SELECT user_ref FROM service_users)";

const PAGE: &str = "SELECT call_key, id, service_id, plan_version, user_ref, started_at, duration_secs, destination, \
     call_type, inbound, cost_micros, price_micros FROM calls \
     WHERE call_key >= $1 AND call_key < $2 AND service_id IS NOT NULL ORDER BY call_key LIMIT 10000";

/// The month's work on one backend's transaction; `$update` writes a page's changed prices.
macro_rules! rerate_in {
    ($tx:ident, $update:ident, $write:ident, $period:expr, $tz:expr, $price_of:expr) => {{
        let (start, end) = $period.bounds($tz);
        let (mut from, to) = (key_floor(start.timestamp()), key_floor(end.timestamp()));
        let matched = sqlx::query(MATCH)
            .bind(&from)
            .bind(&to)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
        let mut rollups = Rollups::new($tz);
        let mut changed = 0u64;
        loop {
            let page: Vec<RatedCallRow> = sqlx::query_as(PAGE)
                .bind(&from)
                .bind(&to)
                .fetch_all(&mut *$tx)
                .await?;
            let Some(last) = page.last() else { break };
            from = key_after(&last.call_key);
            let mut updates = Vec::new();
            for row in &page {
                let (price, version) = $price_of(row);
                // Only what changed is written: a plan change on one service rewrites its calls.
                if (price, version) != (row.call.price_micros, row.plan_version) {
                    updates.push((row.call.id, price, version));
                }
                let c = &row.call;
                rollups.add(
                    Some(row.service_id),
                    c.started_at,
                    &c.user_ref,
                    &c.call_type,
                    c.duration_secs,
                    c.cost_micros,
                    price,
                );
            }
            changed += updates.len() as u64;
            $update(&mut $tx, &updates).await?;
        }
        sqlx::query("DELETE FROM call_rollups WHERE month = $1")
            .bind($period.to_string())
            .execute(&mut *$tx)
            .await?;
        rollups.$write(&mut $tx).await?;
        crate::crash::crash_point("rerate_before_commit");
        $tx.commit().await?;
        Repriced { matched, changed }
    }};
}

impl Store {
    /// Re-rates `period` (a month in `tz`) with `price_of`, which gives a matched call its
    /// (price in micro-units, plan version), or `(None, None)` when no plan or rate prices it.
    pub async fn rerate_month<F>(
        &self,
        period: Period,
        tz: Tz,
        mut price_of: F,
    ) -> Result<Repriced, StoreError>
    where
        F: FnMut(&RatedCallRow) -> (Option<i64>, Option<i32>) + Send,
    {
        Ok(match self.db() {
            Db::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                rerate_in!(tx, update_sqlite, write_sqlite, period, tz, price_of)
            }
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                rerate_in!(tx, update_postgres, write_postgres, period, tz, price_of)
            }
        })
    }
}

/// Writes (call id, price, plan version) rows, a few thousand per statement.
async fn update_sqlite(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    prices: &[(i64, Option<i64>, Option<i32>)],
) -> Result<(), StoreError> {
    for chunk in prices.chunks(SQLITE_ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE calls SET price_micros = v.column2, plan_version = v.column3 FROM (VALUES {}) AS v \
             WHERE calls.id = v.column1",
            sqlite_values(chunk.len(), 3)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, price, version) in chunk {
            q = q.bind(id).bind(price).bind(version);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

async fn update_postgres(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    prices: &[(i64, Option<i64>, Option<i32>)],
) -> Result<(), StoreError> {
    if prices.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE calls SET price_micros = v.price, plan_version = v.version \
         FROM UNNEST($1::bigint[], $2::bigint[], $3::int[]) AS v(id, price, version) WHERE calls.id = v.id",
    )
    .bind(prices.iter().map(|x| x.0).collect::<Vec<_>>())
    .bind(prices.iter().map(|x| x.1).collect::<Vec<_>>())
    .bind(prices.iter().map(|x| x.2).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
