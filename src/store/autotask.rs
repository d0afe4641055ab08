//! Autotask's zone cache, the display-name cache, and the tenant's thread slots.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on_db};

impl Store {
    pub async fn autotask_zone(&self, username: &str) -> Result<Option<String>, StoreError> {
        Ok(
            on_db!(self, p => sqlx::query_scalar("SELECT url FROM autotask_zone WHERE username = $1")
            .bind(username)
            .fetch_optional(p)
            .await?),
        )
    }

    pub async fn save_autotask_zone(&self, username: &str, url: &str) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "INSERT INTO autotask_zone (username, url, resolved_at) VALUES ($1, $2, $3) \
             ON CONFLICT (username) DO UPDATE SET url = excluded.url, resolved_at = excluded.resolved_at")
            .bind(username)
            .bind(url)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Takes one of the tenant's `slots` threads for `endpoint` for `holder` until `until`: a free
    /// slot, or one whose holder's lease ran out (a dead process). None when all are held: the
    /// caller waits and asks again. Shared by every process on the database, so two daemons
    /// together never exceed Autotask's threads per endpoint.
    pub async fn take_autotask_thread(
        &self,
        endpoint: &str,
        slots: i64,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<i64>, StoreError> {
        // The free-or-expired test is repeated in the UPDATE: of two processes that picked the
        // same slot, the second finds it taken and updates nothing.
        let take = || async {
            Ok::<Option<i64>, StoreError>(on_db!(self, p => sqlx::query_scalar(
                "UPDATE autotask_threads SET holder = $3, held_until = $5 \
                 WHERE endpoint = $1 AND (holder IS NULL OR held_until < $4) AND slot = \
                 (SELECT slot FROM autotask_threads WHERE endpoint = $1 AND slot < $2 \
                  AND (holder IS NULL OR held_until < $4) ORDER BY slot LIMIT 1) RETURNING slot")
                .bind(endpoint)
                .bind(slots)
                .bind(holder)
                .bind(now)
                .bind(until)
                .fetch_optional(p)
                .await?))
        };
        if let Some(slot) = take().await? {
            return Ok(Some(slot));
        }
        // None free: perhaps the endpoint's slots do not exist yet (first use, or a higher limit).
        for slot in 0..slots {
            on_db!(self, p => sqlx::query(
                "INSERT INTO autotask_threads (endpoint, slot) VALUES ($1, $2) ON CONFLICT (endpoint, slot) DO NOTHING")
                .bind(endpoint)
                .bind(slot)
                .execute(p)
                .await?
                .rows_affected());
        }
        take().await
    }

    /// Gives a thread slot back (only `holder`'s own).
    pub async fn give_back_autotask_thread(
        &self,
        endpoint: &str,
        slot: i64,
        holder: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "UPDATE autotask_threads SET holder = NULL, held_until = NULL \
             WHERE endpoint = $1 AND slot = $2 AND holder = $3")
            .bind(endpoint)
            .bind(slot)
            .bind(holder)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }
}
