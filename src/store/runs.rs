//! Billing runs and the period lease: one process at a time runs (or resyncs) a period. A lease has
//! an expiry, so that when its holder dies another daemon takes over after at most one lease time.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{Store, StoreError, on_db};
use crate::domain::{Period, RunStatus};

#[derive(sqlx::FromRow)]
struct RunRowRaw {
    period: String,
    status: String,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    attempts: i32,
    last_error: Option<String>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
}

impl TryFrom<RunRowRaw> for RunRow {
    type Error = StoreError;
    fn try_from(r: RunRowRaw) -> Result<Self, StoreError> {
        let bad = |e: crate::domain::DomainError| {
            StoreError::Corrupt(format!("billing_runs row {}: {e}", r.period))
        };
        Ok(RunRow {
            period: Period::parse(&r.period).map_err(bad)?,
            status: r.status.parse().map_err(bad)?,
            started_at: r.started_at,
            finished_at: r.finished_at,
            attempts: r.attempts,
            last_error: r.last_error,
            lease_owner: r.lease_owner,
            lease_expires_at: r.lease_expires_at,
        })
    }
}

/// One period's billing run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub period: Period,
    pub status: RunStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
}

pub const RUN_HEADERS: [&str; 5] = ["period", "status", "started", "finished", "note"];

impl RunRow {
    pub fn table_row(&self) -> Vec<String> {
        let t = |d: &Option<DateTime<Utc>>| {
            d.map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default()
        };
        let note = match (&self.last_error, &self.lease_owner) {
            (Some(e), _) => e.clone(),
            (None, Some(o)) if self.status == RunStatus::Running => format!("held by {o}"),
            _ => String::new(),
        };
        vec![
            self.period.to_string(),
            self.status.to_string(),
            t(&self.started_at),
            t(&self.finished_at),
            note,
        ]
    }
}

impl Store {
    /// Takes the period's lease for `owner` until `now + ttl` when it is free, expired or already
    /// ours. Atomic on both backends: exactly one of several racing processes gets it.
    pub async fn try_acquire_period_lease(
        &self,
        period: Period,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let p_text = period.to_string();
        let until = now + ttl;
        let n = on_db!(self, p => {
            sqlx::query("INSERT INTO billing_runs (period, status) VALUES ($1, 'due') ON CONFLICT (period) DO NOTHING")
                .bind(&p_text)
                .execute(p)
                .await?;
            sqlx::query(
                "UPDATE billing_runs SET lease_owner = $2, lease_expires_at = $3 \
                 WHERE period = $1 AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < $4)",
            )
            .bind(&p_text)
            .bind(owner)
            .bind(until)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Extends a lease we hold; false when it was lost (expired and taken by another process).
    pub async fn renew_period_lease(
        &self,
        period: Period,
        owner: &str,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_db!(self, p => sqlx::query(
            "UPDATE billing_runs SET lease_expires_at = $3 WHERE period = $1 AND lease_owner = $2")
            .bind(period.to_string())
            .bind(owner)
            .bind(until)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    pub async fn release_period_lease(
        &self,
        period: Period,
        owner: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "UPDATE billing_runs SET lease_owner = NULL, lease_expires_at = NULL WHERE period = $1 AND lease_owner = $2")
            .bind(period.to_string())
            .bind(owner)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn mark_period_running(
        &self,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "UPDATE billing_runs SET status = CASE WHEN status = 'done' THEN 'done' ELSE 'running' END, \
             started_at = COALESCE(started_at, $2), attempts = attempts + 1 WHERE period = $1")
            .bind(period.to_string())
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn mark_period_done(
        &self,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "UPDATE billing_runs SET status = 'done', finished_at = $2, last_error = NULL WHERE period = $1")
            .bind(period.to_string())
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn mark_period_failed(&self, period: Period, error: &str) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE billing_runs SET status = 'failed', last_error = $2 WHERE period = $1")
            .bind(period.to_string())
            .bind(error)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn period_done(&self, period: Period) -> Result<bool, StoreError> {
        let s: Option<String> = on_db!(self, p => sqlx::query_scalar("SELECT status FROM billing_runs WHERE period = $1")
            .bind(period.to_string())
            .fetch_optional(p)
            .await?);
        Ok(s.as_deref() == Some(RunStatus::Done.as_str()))
    }

    pub async fn last_runs(&self, limit: i64) -> Result<Vec<RunRow>, StoreError> {
        let rows: Vec<RunRowRaw> = on_db!(self, p => sqlx::query_as(
            "SELECT period, status, started_at, finished_at, attempts, last_error, lease_owner, lease_expires_at \
             FROM billing_runs ORDER BY period DESC LIMIT $1")
            .bind(limit)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(RunRow::try_from).collect()
    }
}
