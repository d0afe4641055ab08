//! Xero's OAuth2 tokens. A rotated refresh token is written in the same statement that records the
//! refresh, and a refresh is claimed in the database first, so that two processes never spend the
//! same single-use refresh token.
//!
//! The store keeps the tokens as it is given them: `xero::auth` seals them with `xero.token_key`
//! before they are written and opens them after they are read, so the database holds only sealed
//! text.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on_db};

/// The one grant. Not `Debug`-derived: its tokens must never reach a log line or an error.
#[derive(Clone, sqlx::FromRow)]
pub struct XeroTokenRow {
    pub grant_type: String,
    pub access_token: Option<String>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_token: Option<String>,
    pub tenant_id: Option<String>,
    pub refresh_count: i64,
}

impl std::fmt::Debug for XeroTokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |t: &Option<String>| t.as_ref().map(|_| "[redacted]");
        f.debug_struct("XeroTokenRow")
            .field("grant_type", &self.grant_type)
            .field("access_token", &shown(&self.access_token))
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_token", &shown(&self.refresh_token))
            .field("tenant_id", &self.tenant_id)
            .field("refresh_count", &self.refresh_count)
            .finish()
    }
}

impl Store {
    pub async fn xero_token(&self) -> Result<Option<XeroTokenRow>, StoreError> {
        Ok(on_db!(self, p => sqlx::query_as(
            "SELECT grant_type, access_token, access_expires_at, refresh_token, tenant_id, refresh_count FROM xero_tokens WHERE id = 1")
            .fetch_optional(p)
            .await?))
    }

    /// Stores a new grant (after `xero connect` or a client-credentials token), replacing any.
    pub async fn save_xero_grant(&self, t: &XeroTokenRow) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "INSERT INTO xero_tokens (id, grant_type, access_token, access_expires_at, refresh_token, tenant_id, refresh_count, updated_at) \
             VALUES (1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET grant_type = excluded.grant_type, \
             access_token = excluded.access_token, access_expires_at = excluded.access_expires_at, \
             refresh_token = excluded.refresh_token, tenant_id = COALESCE(excluded.tenant_id, xero_tokens.tenant_id), \
             refresh_count = excluded.refresh_count, refreshing_by = NULL, refreshing_until = NULL, updated_at = excluded.updated_at")
            .bind(&t.grant_type)
            .bind(t.access_token.as_deref())
            .bind(t.access_expires_at)
            .bind(t.refresh_token.as_deref())
            .bind(t.tenant_id.as_deref())
            .bind(t.refresh_count)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn save_xero_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE xero_tokens SET tenant_id = $1 WHERE id = 1")
            .bind(tenant)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Claims the right to refresh until `until`; false when another process holds the claim.
    pub async fn claim_xero_refresh(
        &self,
        me: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = on_db!(self, p => sqlx::query(
            "UPDATE xero_tokens SET refreshing_by = $1, refreshing_until = $2 \
             WHERE id = 1 AND (refreshing_until IS NULL OR refreshing_until < $3 OR refreshing_by = $1)")
            .bind(me)
            .bind(until)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Records a refresh: the new access token and the rotated refresh token together, only if we
    /// still hold the claim.
    pub async fn record_xero_refresh(
        &self,
        me: &str,
        access_token: &str,
        expires_at: DateTime<Utc>,
        refresh_token: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = on_db!(self, p => sqlx::query(
            "UPDATE xero_tokens SET access_token = $2, access_expires_at = $3, refresh_token = COALESCE($4, refresh_token), \
             refresh_count = refresh_count + 1, refreshing_by = NULL, refreshing_until = NULL, updated_at = $5 \
             WHERE id = 1 AND refreshing_by = $1")
            .bind(me)
            .bind(access_token)
            .bind(expires_at)
            .bind(refresh_token)
            .bind(Utc::now())
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Replaces tokens stored in plain text by an earlier version with their sealed form, only if
    /// they are still the ones read (a compare-and-set: a refresh in between wins).
    pub async fn reseal_xero_tokens(
        &self,
        old_access: Option<&str>,
        old_refresh: Option<&str>,
        access: Option<&str>,
        refresh: Option<&str>,
    ) -> Result<bool, StoreError> {
        let n = on_db!(self, p => sqlx::query(
            "UPDATE xero_tokens SET access_token = $3, refresh_token = $4 WHERE id = 1 \
             AND access_token IS NOT DISTINCT FROM $1 AND refresh_token IS NOT DISTINCT FROM $2")
            .bind(old_access)
            .bind(old_refresh)
            .bind(access)
            .bind(refresh)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n == 1)
    }

    /// Forgets a grant Xero refused (`invalid_grant`): its tokens are cleared, only if the refresh
    /// token is still the one presented (a newer grant from `xero connect` stays).
    pub async fn revoke_xero_grant(&self, presented_refresh: &str) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query(
            "UPDATE xero_tokens SET access_token = NULL, access_expires_at = NULL, refresh_token = NULL \
             WHERE id = 1 AND refresh_token = $1")
            .bind(presented_refresh)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    pub async fn release_xero_refresh(&self, me: &str) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE xero_tokens SET refreshing_by = NULL, refreshing_until = NULL WHERE id = 1 AND refreshing_by = $1")
            .bind(me)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }
}

impl Store {
    /// Marks the stored access token expired (the server refused it), keeping the refresh token.
    pub async fn save_xero_tenant_token_expired(&self) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE xero_tokens SET access_expires_at = $1 WHERE id = 1")
            .bind(DateTime::<Utc>::UNIX_EPOCH)
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }
}

/// When the stored grant's tokens expire, for `/metrics`: no token is read.
#[derive(Debug, Clone, PartialEq)]
pub struct XeroTokenTimes {
    pub grant_type: String,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub has_refresh_token: bool,
    /// When the grant was stored or last refreshed (a refresh token is issued then).
    pub updated_at: DateTime<Utc>,
}

/// grant_type, access_expires_at, has a refresh token (0/1), updated_at.
type TokenTimesRow = (String, Option<DateTime<Utc>>, i64, DateTime<Utc>);

impl Store {
    pub async fn xero_token_times(&self) -> Result<Option<XeroTokenTimes>, StoreError> {
        let row: Option<TokenTimesRow> = on_db!(self, p => sqlx::query_as(
            "SELECT grant_type, access_expires_at, \
             CAST(CASE WHEN refresh_token IS NULL THEN 0 ELSE 1 END AS BIGINT), updated_at \
             FROM xero_tokens WHERE id = 1")
            .fetch_optional(p)
            .await?);
        Ok(row.map(
            |(grant_type, access_expires_at, refresh, updated_at)| XeroTokenTimes {
                grant_type,
                access_expires_at,
                has_refresh_token: refresh == 1,
                updated_at,
            },
        ))
    }
}
