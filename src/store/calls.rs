//! Calls and rate plans. Imports insert in batches (multi-row statements on SQLite, `UNNEST` arrays
//! on PostgreSQL) with `ON CONFLICT (call_key) DO NOTHING`, so a re-import or an overlapping file
//! adds no duplicate; the summary is answered by aggregates over the (service, time) index.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::audit::write_audit;
use super::{Actor, Db, Store, StoreError, money, on_db};
use crate::domain::rating::RatePlan;
use crate::domain::{Money, ServiceId};

/// One call ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCall {
    pub key: [u8; 16],
    pub service_id: Option<i64>,
    pub user_ref: String,
    pub started_at: i64,
    pub duration_secs: i32,
    pub destination: String,
    pub call_type: String,
    pub inbound: bool,
    pub cost_micros: Option<i64>,
    pub price_micros: Option<i64>,
    pub plan_version: Option<i32>,
}

/// The rated calls of one service in a range (unrounded sums).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallTotal {
    pub service_id: ServiceId,
    pub calls: i64,
    pub seconds: i64,
    pub cost: Money,
    pub price: Money,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CallGroup {
    pub key: String,
    pub calls: i64,
    pub seconds: i64,
    pub cost_micros: i64,
    pub price_micros: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct CallDetail {
    pub id: i64,
    pub user_ref: String,
    pub started_at: i64,
    pub duration_secs: i32,
    pub destination: String,
    pub call_type: String,
    pub inbound: bool,
    pub cost_micros: Option<i64>,
    pub price_micros: Option<i64>,
}

/// A matched call with its service (re-rating).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RatedCallRow {
    pub service_id: i64,
    #[sqlx(flatten)]
    pub call: CallDetail,
}

const SQLITE_ROWS_PER_STATEMENT: usize = 2_000;

const RETURNED: &str =
    "service_id, started_at, user_ref, call_type, duration_secs, cost_micros, price_micros";

/// What an insert returns of each new call: what the rollups need.
#[derive(sqlx::FromRow)]
struct Returned {
    service_id: Option<i64>,
    started_at: i64,
    user_ref: String,
    call_type: String,
    duration_secs: i32,
    cost_micros: Option<i64>,
    price_micros: Option<i64>,
}

/// A stored call as the rollup rebuild reads it.
#[derive(sqlx::FromRow)]
struct Sourced {
    id: i64,
    #[sqlx(flatten)]
    call: Returned,
}

/// Sums per (service, local day, user, call type), added to `call_rollups` in the same transaction
/// as the calls.
#[derive(Default)]
struct Rollups(HashMap<(i64, String, String, String), [i64; 4]>);

impl Rollups {
    fn add(&mut self, rows: &[Returned], tz: Tz) {
        for r in rows {
            let Some(service) = r.service_id else {
                continue;
            };
            let day = DateTime::from_timestamp(r.started_at, 0)
                .map(|t| t.with_timezone(&tz).date_naive().to_string())
                .unwrap_or_default();
            let e = self
                .0
                .entry((service, day, r.user_ref.clone(), r.call_type.clone()))
                .or_insert([0; 4]);
            e[0] += 1;
            e[1] += i64::from(r.duration_secs);
            e[2] += r.cost_micros.unwrap_or(0);
            e[3] += r.price_micros.unwrap_or(0);
        }
    }

    async fn write_sqlite(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ) -> Result<(), StoreError> {
        let rows: Vec<_> = self.0.iter().collect();
        for chunk in rows.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO call_rollups (service_id, day, user_ref, call_type, calls, seconds, cost_micros, price_micros) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str("(?,?,?,?,?,?,?,?)");
            }
            sql.push_str(
                " ON CONFLICT (service_id, day, user_ref, call_type) DO UPDATE SET calls = call_rollups.calls + excluded.calls, \
                 seconds = call_rollups.seconds + excluded.seconds, cost_micros = call_rollups.cost_micros + excluded.cost_micros, \
                 price_micros = call_rollups.price_micros + excluded.price_micros",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((s, d, u, t), v) in chunk {
                q = q
                    .bind(*s)
                    .bind(d)
                    .bind(u)
                    .bind(t)
                    .bind(v[0])
                    .bind(v[1])
                    .bind(v[2])
                    .bind(v[3]);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    async fn write_postgres(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    ) -> Result<(), StoreError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = self.0.iter().collect();
        sqlx::query(
            "INSERT INTO call_rollups (service_id, day, user_ref, call_type, calls, seconds, cost_micros, price_micros) \
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) \
             ON CONFLICT (service_id, day, user_ref, call_type) DO UPDATE SET calls = call_rollups.calls + excluded.calls, \
             seconds = call_rollups.seconds + excluded.seconds, cost_micros = call_rollups.cost_micros + excluded.cost_micros, \
             price_micros = call_rollups.price_micros + excluded.price_micros",
        )
        .bind(rows.iter().map(|((s, ..), _)| *s).collect::<Vec<_>>())
        .bind(rows.iter().map(|((_, d, ..), _)| d.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|((_, _, u, _), _)| u.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|((.., t), _)| t.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, v)| v[0]).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, v)| v[1]).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, v)| v[2]).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, v)| v[3]).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Inserts a batch in one transaction, with the summary rollups of the calls that were new;
    /// returns how many were new (the rest were duplicates). `tz` gives the rollups' local days.
    pub async fn insert_calls(&self, batch: &[NewCall], tz: Tz) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut rollups = Rollups::default();
        match self.db() {
            Db::Sqlite(p) => {
                let mut tx = p.begin().await?;
                let mut inserted = 0;
                for chunk in batch.chunks(SQLITE_ROWS_PER_STATEMENT) {
                    let mut sql = String::from(
                        "INSERT INTO calls (call_key, service_id, user_ref, started_at, duration_secs, destination, \
                         call_type, inbound, cost_micros, price_micros, plan_version) VALUES ",
                    );
                    // Positional `?` parameters: SQLite binds thousands of them far faster than
                    // thousands of named `$N` ones.
                    for i in 0..chunk.len() {
                        if i > 0 {
                            sql.push(',');
                        }
                        sql.push_str("(?,?,?,?,?,?,?,?,?,?,?)");
                    }
                    sql.push_str(" ON CONFLICT (call_key) DO NOTHING RETURNING ");
                    sql.push_str(RETURNED);
                    // Only placeholders are formatted into the statement, never data.
                    let mut q = sqlx::query_as::<_, Returned>(sqlx::AssertSqlSafe(sql));
                    for c in chunk {
                        q = q
                            .bind(&c.key[..])
                            .bind(c.service_id)
                            .bind(&c.user_ref)
                            .bind(c.started_at)
                            .bind(c.duration_secs)
                            .bind(&c.destination)
                            .bind(&c.call_type)
                            .bind(c.inbound)
                            .bind(c.cost_micros)
                            .bind(c.price_micros)
                            .bind(c.plan_version);
                    }
                    let rows = q.fetch_all(&mut *tx).await?;
                    inserted += rows.len() as u64;
                    rollups.add(&rows, tz);
                }
                rollups.write_sqlite(&mut tx).await?;
                tx.commit().await?;
                Ok(inserted)
            }
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                let keys: Vec<Vec<u8>> = batch.iter().map(|c| c.key.to_vec()).collect();
                let rows: Vec<Returned> = sqlx::query_as(
                    "INSERT INTO calls (call_key, service_id, user_ref, started_at, duration_secs, destination, call_type, \
                     inbound, cost_micros, price_micros, plan_version) \
                     SELECT * FROM UNNEST($1::bytea[], $2::bigint[], $3::text[], $4::bigint[], $5::int[], $6::text[], \
                     $7::text[], $8::bool[], $9::bigint[], $10::bigint[], $11::int[]) ON CONFLICT (call_key) DO NOTHING \
                     RETURNING service_id, started_at, user_ref, call_type, duration_secs, cost_micros, price_micros",
                )
                .bind(keys)
                .bind(batch.iter().map(|c| c.service_id).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.user_ref.clone()).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.started_at).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.duration_secs).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.destination.clone()).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.call_type.clone()).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.inbound).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.cost_micros).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.price_micros).collect::<Vec<_>>())
                .bind(batch.iter().map(|c| c.plan_version).collect::<Vec<_>>())
                .fetch_all(&mut *tx)
                .await?;
                rollups.add(&rows, tz);
                rollups.write_postgres(&mut tx).await?;
                tx.commit().await?;
                Ok(rows.len() as u64)
            }
        }
    }

    /// Rebuilds the rollups of `[first_day, last_day]` from the calls (after re-rating).
    pub async fn rebuild_rollups(
        &self,
        start: i64,
        end: i64,
        first_day: &str,
        last_day: &str,
        tz: Tz,
    ) -> Result<(), StoreError> {
        let mut rollups = Rollups::default();
        let mut after = 0i64;
        loop {
            let page: Vec<Sourced> = on_db!(self, p => sqlx::query_as(
                "SELECT id, service_id, started_at, user_ref, call_type, duration_secs, cost_micros, price_micros FROM calls \
                 WHERE started_at >= $1 AND started_at < $2 AND id > $3 AND service_id IS NOT NULL ORDER BY id LIMIT 50000")
                .bind(start)
                .bind(end)
                .bind(after)
                .fetch_all(p)
                .await?);
            let Some(last) = page.last() else { break };
            after = last.id;
            let rows: Vec<Returned> = page.into_iter().map(|s| s.call).collect();
            rollups.add(&rows, tz);
        }
        match self.db() {
            Db::Sqlite(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("DELETE FROM call_rollups WHERE day >= $1 AND day <= $2")
                    .bind(first_day)
                    .bind(last_day)
                    .execute(&mut *tx)
                    .await?;
                rollups.write_sqlite(&mut tx).await?;
                tx.commit().await?;
            }
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("DELETE FROM call_rollups WHERE day >= $1 AND day <= $2")
                    .bind(first_day)
                    .bind(last_day)
                    .execute(&mut *tx)
                    .await?;
                rollups.write_postgres(&mut tx).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Sums of the matched, rated calls that started in `[start, end)`, per service.
    pub async fn rated_call_totals(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<CallTotal>, StoreError> {
        let rows: Vec<(i64, i64, i64, i64, i64)> = on_db!(self, p => sqlx::query_as(
            "SELECT service_id, COUNT(*), CAST(COALESCE(SUM(duration_secs), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT), CAST(COALESCE(SUM(price_micros), 0) AS BIGINT) \
             FROM calls WHERE service_id IS NOT NULL AND price_micros IS NOT NULL AND started_at >= $1 AND started_at < $2 \
             GROUP BY service_id ORDER BY service_id")
            .bind(start.timestamp())
            .bind(end.timestamp())
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(|(s, calls, seconds, cost, price)| {
                Ok(CallTotal {
                    service_id: ServiceId::new(s)?,
                    calls,
                    seconds,
                    cost: money(cost),
                    price: money(price),
                })
            })
            .collect()
    }

    /// Calls in `[start, end)` whose price is missing (no plan, or no rate for their type).
    pub async fn unrated_calls(
        &self,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(on_db!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM calls WHERE service_id IS NOT NULL AND price_micros IS NULL AND started_at >= $1 AND started_at < $2")
            .bind(start.timestamp())
            .bind(end.timestamp())
            .fetch_one(p)
            .await?))
    }

    /// Every user reference of the catalogue and its service (for matching CDRs).
    pub async fn user_map(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = on_db!(self, p => sqlx::query_as("SELECT user_ref, service_id FROM service_users")
            .fetch_all(p)
            .await?);
        Ok(rows.into_iter().collect())
    }

    /// Stores a new version of a service's rate plan; returns the version.
    pub async fn set_rate_plan(
        &self,
        actor: &Actor,
        service: ServiceId,
        plan: &RatePlan,
    ) -> Result<i32, StoreError> {
        let json = serde_json::to_string(plan).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.service(service).await?;
        let version: i32 = on_db!(self, p => {
            let mut tx = p.begin().await?;
            let v: i32 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(version), 0) + 1 AS INTEGER) FROM rate_plans WHERE service_id = $1")
                .bind(service.get())
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO rate_plans (service_id, version, plan_json, created_at, created_by) VALUES ($1, $2, $3, $4, $5)")
                .bind(service.get())
                .bind(v)
                .bind(&json)
                .bind(Utc::now())
                .bind(actor.as_str())
                .execute(&mut *tx)
                .await?;
            write_audit!(&mut *tx, actor, "rate_plan", service, "set", None, serde_json::from_str(&json).ok())?;
            tx.commit().await?;
            v
        });
        Ok(version)
    }

    /// The newest plan of every service that has one: service id → (version, plan).
    pub async fn rate_plans(&self) -> Result<HashMap<i64, (i32, RatePlan)>, StoreError> {
        let rows: Vec<(i64, i32, String)> = on_db!(self, p => sqlx::query_as(
            "SELECT r.service_id, r.version, r.plan_json FROM rate_plans r \
             WHERE r.version = (SELECT MAX(version) FROM rate_plans x WHERE x.service_id = r.service_id)")
            .fetch_all(p)
            .await?);
        rows.into_iter()
            .map(|(s, v, j)| {
                let plan: RatePlan = serde_json::from_str(&j)
                    .map_err(|e| StoreError::Corrupt(format!("rate plan of service {s}: {e}")))?;
                Ok((s, (v, plan)))
            })
            .collect()
    }

    /// Matched calls of a range, in id order, `limit` at a time after `after_id` (re-rating).
    pub async fn calls_page(
        &self,
        start: i64,
        end: i64,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<RatedCallRow>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(
            "SELECT id, service_id, user_ref, started_at, duration_secs, destination, call_type, inbound, cost_micros, price_micros \
             FROM calls WHERE started_at >= $1 AND started_at < $2 AND id > $3 AND service_id IS NOT NULL ORDER BY id LIMIT $4")
            .bind(start)
            .bind(end)
            .bind(after_id)
            .bind(limit)
            .fetch_all(p)
            .await?))
    }

    /// Writes re-rated prices in one transaction.
    pub async fn update_call_prices(
        &self,
        prices: &[(i64, Option<i64>, Option<i32>)],
    ) -> Result<(), StoreError> {
        on_db!(self, p => {
            let mut tx = p.begin().await?;
            for (id, price, version) in prices {
                sqlx::query("UPDATE calls SET price_micros = $2, plan_version = $3 WHERE id = $1")
                    .bind(id)
                    .bind(price)
                    .bind(version)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Per call type (or per user) sums of a service's days `[first_day, last_day]`, from the rollups.
    pub async fn call_groups(
        &self,
        service: ServiceId,
        first_day: &str,
        last_day: &str,
        by_user: bool,
    ) -> Result<Vec<CallGroup>, StoreError> {
        let sql = if by_user {
            "SELECT user_ref AS key, CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(seconds) AS BIGINT) AS seconds, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost_micros, CAST(SUM(price_micros) AS BIGINT) AS price_micros \
             FROM call_rollups WHERE service_id = $1 AND day >= $2 AND day <= $3 GROUP BY user_ref ORDER BY user_ref"
        } else {
            "SELECT call_type AS key, CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(seconds) AS BIGINT) AS seconds, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost_micros, CAST(SUM(price_micros) AS BIGINT) AS price_micros \
             FROM call_rollups WHERE service_id = $1 AND day >= $2 AND day <= $3 GROUP BY call_type ORDER BY call_type"
        };
        Ok(
            on_db!(self, p => sqlx::query_as(sql).bind(service.get()).bind(first_day).bind(last_day).fetch_all(p).await?),
        )
    }

    /// One user's calls in a range, oldest first, `limit` at a time after `(started_at, id)`.
    pub async fn user_calls(
        &self,
        service: ServiceId,
        user: &str,
        start: i64,
        end: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<CallDetail>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(
            "SELECT id, user_ref, started_at, duration_secs, destination, call_type, inbound, cost_micros, price_micros \
             FROM calls WHERE service_id = $1 AND user_ref = $2 AND started_at >= $3 AND started_at < $4 \
             AND (started_at > $5 OR (started_at = $5 AND id > $6)) ORDER BY started_at, id LIMIT $7")
            .bind(service.get())
            .bind(user)
            .bind(start)
            .bind(end)
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(p)
            .await?))
    }
}
