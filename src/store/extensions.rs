//! Per-extension pricing's tables (`domain::extensions`): each extension's kind, the plan's
//! extension prices as they resolve per service (its own plan, a shared one it uses, or the
//! default), and the months frozen by their first run with the counts and prices they are billed
//! with.

use crate::store::BeginWrite;
use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::audit::write_audit;
use super::{Actor, Store, StoreError, on_db};
use crate::domain::extensions::{ExtensionCounts, ExtensionKind, ExtensionMonth, ExtensionPrices};
use crate::domain::service::normalise_user_ref;
use crate::domain::{Period, ServiceId};

/// One extension as `extension list` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ExtensionRow {
    pub service_id: i64,
    pub user_ref: String,
    pub label: Option<String>,
    pub kind: String,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

impl Store {
    /// Sets the kind of the extension `user_ref` (a user of some service). Audited.
    pub async fn set_extension_kind(
        &self,
        actor: &Actor,
        user_ref: &str,
        kind: ExtensionKind,
    ) -> Result<ExtensionRow, StoreError> {
        let user_ref = normalise_user_ref(user_ref);
        let now = Utc::now();
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let known: Option<i64> = sqlx::query_scalar("SELECT service_id FROM service_users WHERE user_ref = $1")
                .bind(&user_ref)
                .fetch_optional(&mut *tx)
                .await?;
            if known.is_none() {
                return Err(StoreError::NotFound(format!(
                    "extension {user_ref:?} (no service has this user; `rebilld service show ID` lists them)"
                )));
            }
            let before: Option<String> = sqlx::query_scalar("SELECT kind FROM extension_kinds WHERE user_ref = $1")
                .bind(&user_ref)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO extension_kinds (user_ref, kind, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_ref) DO UPDATE SET kind = excluded.kind, updated_at = excluded.updated_at",
            )
            .bind(&user_ref)
            .bind(kind.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let before = serde_json::json!({"kind": before.unwrap_or_else(|| "standard".into())});
            let after = serde_json::json!({"kind": kind.as_str()});
            write_audit!(&mut *tx, actor, "extension", &user_ref, "set_kind", Some(before), Some(after))?;
            tx.commit().await?;
        });
        let mut rows = self.extensions(None).await?;
        rows.retain(|r| r.user_ref == user_ref);
        rows.pop()
            .ok_or_else(|| StoreError::NotFound(format!("extension {user_ref:?}")))
    }

    /// Every extension (user) with its kind, optionally of one service.
    pub async fn extensions(
        &self,
        service: Option<ServiceId>,
    ) -> Result<Vec<ExtensionRow>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(
            "SELECT u.service_id, u.user_ref, u.label, COALESCE(k.kind, 'standard') AS kind \
             FROM service_users u LEFT JOIN extension_kinds k ON k.user_ref = u.user_ref \
             WHERE CAST($1 AS BIGINT) IS NULL OR u.service_id = $1 ORDER BY u.service_id, u.user_ref")
            .bind(service.map(|s| s.get()))
            .fetch_all(p)
            .await?))
    }

    /// Each service's extensions now, by kind.
    async fn extension_counts_now(&self) -> Result<BTreeMap<i64, ExtensionCounts>, StoreError> {
        let mut out: BTreeMap<i64, ExtensionCounts> = BTreeMap::new();
        for r in self.extensions(None).await? {
            let kind: ExtensionKind = r.kind.parse().map_err(corrupt)?;
            *out.entry(r.service_id)
                .or_default()
                .entry(kind)
                .or_default() += 1;
        }
        Ok(out)
    }

    /// The extension prices that apply to each service now, resolved as its calls' plan is
    /// (`rate_plans`): its own plan's newest version, else the shared plan it uses, else the
    /// default plan. Services whose plan prices no extension are left out.
    pub async fn extension_prices(&self) -> Result<HashMap<i64, ExtensionPrices>, StoreError> {
        let own: Vec<(i64, Option<String>)> = on_db!(self, p => sqlx::query_as(
            "SELECT r.service_id, r.extensions_json FROM rate_plans r \
             WHERE r.version = (SELECT MAX(version) FROM rate_plans x WHERE x.service_id = r.service_id)")
            .fetch_all(p)
            .await?);
        let shared: Vec<(String, Option<String>)> = on_db!(self, p => sqlx::query_as(
            "SELECT r.name, r.extensions_json FROM shared_rate_plans r \
             WHERE r.version = (SELECT MAX(version) FROM shared_rate_plans x WHERE x.name = r.name)")
            .fetch_all(p)
            .await?);
        let uses: Vec<(i64, String)> = on_db!(self, p => sqlx::query_as(
            "SELECT service_id, name FROM service_shared_plan")
            .fetch_all(p)
            .await?);
        let default: Option<String> = on_db!(self, p => sqlx::query_scalar(
            "SELECT name FROM default_rate_plan WHERE only_row = 1")
            .fetch_optional(p)
            .await?);
        let read = |j: Option<String>| -> Result<ExtensionPrices, StoreError> {
            match j {
                None => Ok(ExtensionPrices::default()),
                Some(j) => serde_json::from_str(&j)
                    .map_err(|e| corrupt(format!("extension prices of a rate plan: {e}"))),
            }
        };
        let mut named: HashMap<String, ExtensionPrices> = HashMap::new();
        for (n, j) in shared {
            named.insert(n, read(j)?);
        }
        let mut plans: HashMap<i64, ExtensionPrices> = HashMap::new();
        for (s, j) in own {
            plans.insert(s, read(j)?);
        }
        for (s, n) in uses {
            if let Some(p) = named.get(&n) {
                plans.insert(s, p.clone());
            }
        }
        if let Some(p) = default.and_then(|d| named.get(&d).cloned()) {
            let ids: Vec<i64> = on_db!(self, db => sqlx::query_scalar("SELECT id FROM services")
                .fetch_all(db)
                .await?);
            for id in ids {
                plans.entry(id).or_insert_with(|| p.clone());
            }
        }
        plans.retain(|_, p| !p.is_empty());
        Ok(plans)
    }

    /// What each service's extensions are now: counts and prices.
    async fn extension_months_now(&self) -> Result<BTreeMap<i64, ExtensionMonth>, StoreError> {
        let counts = self.extension_counts_now().await?;
        let mut prices = self.extension_prices().await?;
        Ok(counts
            .into_iter()
            .filter_map(|(s, c)| {
                prices
                    .remove(&s)
                    .map(|prices| (s, ExtensionMonth { counts: c, prices }))
            })
            .collect())
    }

    /// Freezes what `period` is billed with (the counts and prices of every service's
    /// extensions now), unless its first run did already. Called by the run before its snapshot.
    pub async fn freeze_extension_months(
        &self,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let months = self.extension_months_now().await?;
        let mut rows = Vec::new();
        for (s, m) in &months {
            let counts = serde_json::to_string(&m.counts).map_err(corrupt)?;
            let prices = serde_json::to_string(&m.prices).map_err(corrupt)?;
            rows.push((*s, counts, prices));
        }
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let first = sqlx::query(
                "INSERT INTO extension_periods (period, frozen_at) VALUES ($1, $2) ON CONFLICT (period) DO NOTHING",
            )
            .bind(period.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if first.rows_affected() == 1 {
                for (s, counts, prices) in &rows {
                    sqlx::query(
                        "INSERT INTO extension_months (period, service_id, counts_json, prices_json) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(period.to_string())
                    .bind(s)
                    .bind(counts)
                    .bind(prices)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// What each service's extensions are billed with in each of `months`: as frozen by the
    /// month's first run, or, for a month never run, as they are now.
    pub async fn extension_months(
        &self,
        months: &[Period],
    ) -> Result<BTreeMap<(ServiceId, Period), ExtensionMonth>, StoreError> {
        let (Some(from), Some(to)) = (months.iter().min(), months.iter().max()) else {
            return Ok(BTreeMap::new());
        };
        let (from, to) = (from.to_string(), to.to_string());
        let frozen: Vec<String> = on_db!(self, p => sqlx::query_scalar(
            "SELECT period FROM extension_periods WHERE period >= $1 AND period <= $2")
            .bind(&from)
            .bind(&to)
            .fetch_all(p)
            .await?);
        let rows: Vec<(String, i64, String, String)> = on_db!(self, p => sqlx::query_as(
            "SELECT period, service_id, counts_json, prices_json FROM extension_months \
             WHERE period >= $1 AND period <= $2")
            .bind(&from)
            .bind(&to)
            .fetch_all(p)
            .await?);
        let now = self.extension_months_now().await?;
        let mut out = BTreeMap::new();
        for &m in months {
            let key = m.to_string();
            if frozen.contains(&key) {
                for (_, s, counts, prices) in rows.iter().filter(|r| r.0 == key) {
                    let month = ExtensionMonth {
                        counts: serde_json::from_str(counts).map_err(corrupt)?,
                        prices: serde_json::from_str(prices).map_err(corrupt)?,
                    };
                    out.insert((ServiceId::new(*s)?, m), month);
                }
            } else {
                for (s, month) in &now {
                    out.insert((ServiceId::new(*s)?, m), month.clone());
                }
            }
        }
        Ok(out)
    }
}
