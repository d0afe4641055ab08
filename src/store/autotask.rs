//! Autotask's zone cache and the display-name cache.

use chrono::Utc;

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
}
