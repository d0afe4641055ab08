//! Autotask's field definitions as last read, per API user and entity, with when they were read:
//! the client decides by its own clock whether they are fresh enough (`autotask.field_cache_secs`).

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on_db};

impl Store {
    /// The field definitions of `entity` as last read for `username`, and when.
    pub async fn autotask_fields(
        &self,
        username: &str,
        entity: &str,
    ) -> Result<Option<(String, DateTime<Utc>)>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(
            "SELECT body, read_at FROM autotask_field_cache WHERE username = $1 AND entity = $2")
            .bind(username)
            .bind(entity)
            .fetch_optional(p)
            .await?))
    }

    /// Keeps the field definitions of `entity` just read for `username` at `read_at`.
    pub async fn save_autotask_fields(
        &self,
        username: &str,
        entity: &str,
        body: &str,
        read_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "INSERT INTO autotask_field_cache (username, entity, body, read_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username, entity) DO UPDATE SET body = excluded.body, read_at = excluded.read_at")
            .bind(username)
            .bind(entity)
            .bind(body)
            .bind(read_at)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }
}
