//! Re-rating a month in one transaction: the month's unmatched calls matched to users added since
//! (in E.164 form on both sides, as the import matches),
//! every matched call re-priced, the changed prices written and the month's rollups rebuilt. A
//! crash or an error leaves the month as it was, never half re-priced; pricing itself is the
//! caller's (pure) function.

use crate::store::BeginWrite;
use chrono_tz::Tz;

use super::calls::{
    RatedCallRow, Rollups, SQLITE_ROWS_PER_STATEMENT, key_after, key_floor, sqlite_values,
};
use super::{Db, Store, StoreError};
use crate::domain::Period;
use crate::domain::text::{Country, e164};

/// What a month's re-rate changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repriced {
    /// Unmatched calls given the service their user now belongs to.
    pub matched: u64,
    /// Calls whose price or plan version changed.
    pub changed: u64,
}

const UNMATCHED: &str = "SELECT DISTINCT user_ref FROM calls WHERE service_id IS NULL AND call_key >= $1 AND call_key < $2";

/// Gives a number's unmatched calls their service, under the catalogue's own reference.
const MATCH: &str = "UPDATE calls SET service_id = $1, user_ref = $2 \
     WHERE service_id IS NULL AND user_ref = $3 AND call_key >= $4 AND call_key < $5";

const PAGE: &str = "SELECT call_key, id, service_id, plan_version, user_ref, started_at, duration_secs, destination, \
     call_type, inbound, cost_micros, price_micros FROM calls \
     WHERE call_key >= $1 AND call_key < $2 AND service_id IS NOT NULL ORDER BY call_key LIMIT 10000";

/// The month's work on one backend's transaction; `$update` writes a page's changed prices.
macro_rules! rerate_in {
    ($tx:ident, $update:ident, $write:ident, $period:expr, $tz:expr, $users:expr, $country:expr, $price_of:expr) => {{
        let (start, end) = $period.bounds($tz);
        let (mut from, to) = (key_floor(start.timestamp()), key_floor(end.timestamp()));
        // Matched in E.164 form on both sides, as the import matches.
        let numbers: Vec<String> = sqlx::query_scalar(UNMATCHED)
            .bind(&from)
            .bind(&to)
            .fetch_all(&mut *$tx)
            .await?;
        let mut matched = 0u64;
        for number in numbers {
            let Some((user_ref, service)) = $users.get(&e164(&number, $country)) else {
                continue;
            };
            matched += sqlx::query(MATCH)
                .bind(*service)
                .bind(user_ref)
                .bind(&number)
                .bind(&from)
                .bind(&to)
                .execute(&mut *$tx)
                .await?
                .rows_affected();
        }
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
                )?;
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
        country: Country,
        mut price_of: F,
    ) -> Result<Repriced, StoreError>
    where
        F: FnMut(&RatedCallRow) -> (Option<i64>, Option<i32>) + Send,
    {
        let users = self.user_numbers(country).await?;
        Ok(match self.db() {
            Db::Sqlite(p) => {
                let mut tx = p.begin_with("BEGIN IMMEDIATE").await?;
                rerate_in!(
                    tx,
                    update_sqlite,
                    write_sqlite,
                    period,
                    tz,
                    users,
                    country,
                    price_of
                )
            }
            Db::Postgres(p) => {
                let mut tx = p.begin_write().await?;
                rerate_in!(
                    tx,
                    update_postgres,
                    write_postgres,
                    period,
                    tz,
                    users,
                    country,
                    price_of
                )
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
