//! The audit log: every change records what, before/after, when and who, in the same transaction
//! as the change itself.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Store, StoreError, on_db};

/// Who made a change: `--actor`, else `$USER`, else "rebilld" for the daemon's own work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    pub fn new(name: impl Into<String>) -> Self {
        let n: String = name.into();
        let n = n.trim();
        Actor(if n.is_empty() {
            "unknown".into()
        } else {
            n.chars().take(100).collect()
        })
    }

    pub fn system() -> Self {
        Actor("rebilld".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub entity: String,
    pub entity_id: String,
    pub action: String,
    pub before_json: Option<String>,
    pub after_json: Option<String>,
}

/// Inserts one audit record with the executor `$ex` (a transaction), inside `on_db!`.
macro_rules! write_audit {
    ($ex:expr, $actor:expr, $entity:expr, $id:expr, $action:expr, $before:expr, $after:expr) => {{
        let before: Option<String> = $before.map(|v: serde_json::Value| v.to_string());
        let after: Option<String> = $after.map(|v: serde_json::Value| v.to_string());
        sqlx::query(
            "INSERT INTO audit_log (at, actor, entity, entity_id, action, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(chrono::Utc::now())
        .bind($actor.as_str())
        .bind($entity)
        .bind($id.to_string())
        .bind($action)
        .bind(before)
        .bind(after)
        .execute($ex)
        .await
    }};
}
pub(crate) use write_audit;

/// A value as audit JSON.
pub(crate) fn snapshot<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

impl Store {
    /// The newest audit records first, optionally of one entity kind and id.
    pub async fn audit_log(
        &self,
        entity: Option<&str>,
        entity_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = on_db!(self, p => sqlx::query_as::<_, AuditRecord>(
            "SELECT id, at, actor, entity, entity_id, action, before_json, after_json FROM audit_log \
             WHERE (CAST($1 AS TEXT) IS NULL OR entity = $1) AND (CAST($2 AS TEXT) IS NULL OR entity_id = $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(entity)
        .bind(entity_id)
        .bind(limit)
        .fetch_all(p)
        .await?);
        Ok(rows)
    }
}
