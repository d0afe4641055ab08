//! OAuth2 with the `oauth2` crate: the client-credentials grant of a custom connection, and the
//! authorization-code grant (with PKCE) whose refresh tokens rotate and are single-use.
//!
//! Refreshing is single-flight: one task per process (a mutex) and one process per database (a
//! claim row in `xero_tokens`). The rotated refresh token is written in the same statement that
//! records the refresh, before the new access token is used; Xero keeps the previous refresh token
//! valid for a short grace period, which covers a crash between its answer and our write.

use chrono::{DateTime, Duration, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, RefreshToken, RequestTokenError, TokenResponse, TokenUrl,
};
use secrecy::ExposeSecret;

use super::{XeroConfig, XeroError};
use crate::store::Store;
use crate::store::xero::XeroTokenRow;

/// Refresh this long before the access token expires.
const EARLY: i64 = 120;

#[derive(Clone)]
pub struct Token {
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

fn client_parts(
    cfg: &XeroConfig,
) -> Result<(ClientId, ClientSecret, TokenUrl, AuthUrl), XeroError> {
    let id = cfg
        .client_id
        .clone()
        .ok_or_else(|| XeroError::NotConfigured("xero.client_id is not set".into()))?;
    let secret = cfg
        .client_secret
        .as_ref()
        .ok_or_else(|| XeroError::NotConfigured("xero.client_secret is not set".into()))?;
    let token = TokenUrl::new(cfg.token_url.clone())
        .map_err(|e| XeroError::NotConfigured(format!("xero.token_url: {e}")))?;
    let auth = AuthUrl::new(cfg.authorize_url.clone())
        .map_err(|e| XeroError::NotConfigured(format!("xero.authorize_url: {e}")))?;
    Ok((
        ClientId::new(id),
        ClientSecret::new(secret.expose_secret().to_string()),
        token,
        auth,
    ))
}

/// Maps the token endpoint's refusal: `invalid_grant` means the grant was revoked or expired.
fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
) -> XeroError {
    match e {
        RequestTokenError::ServerResponse(r)
            if matches!(r.error(), BasicErrorResponseType::InvalidGrant) =>
        {
            XeroError::Reauthorize {
                reason: "Xero refused the refresh token (invalid_grant: revoked or expired)".into(),
            }
        }
        RequestTokenError::ServerResponse(r)
            if matches!(
                r.error(),
                BasicErrorResponseType::InvalidClient | BasicErrorResponseType::UnauthorizedClient
            ) =>
        {
            XeroError::Reauthorize {
                reason: format!("Xero refused the client credentials ({})", r.error()),
            }
        }
        RequestTokenError::ServerResponse(r) => {
            XeroError::Auth(format!("token endpoint: {}", r.error()))
        }
        RequestTokenError::Request(e) => XeroError::Transport(format!("token endpoint: {e}")),
        RequestTokenError::Parse(e, _) => {
            XeroError::Auth(format!("token endpoint answered something unreadable: {e}"))
        }
        RequestTokenError::Other(e) => XeroError::Auth(format!("token endpoint: {e}")),
    }
}

/// A client-credentials token (custom connection).
pub async fn client_credentials(
    cfg: &XeroConfig,
    http: &reqwest::Client,
) -> Result<Token, XeroError> {
    let (id, secret, token_url, _) = client_parts(cfg)?;
    let client = BasicClient::new(id)
        .set_client_secret(secret)
        .set_token_uri(token_url);
    let mut req = client.exchange_client_credentials();
    for s in cfg
        .scopes
        .split_whitespace()
        .filter(|s| *s != "offline_access")
    {
        req = req.add_scope(oauth2::Scope::new(s.to_string()));
    }
    let resp = req.request_async(http).await.map_err(token_error)?;
    let secs = resp
        .expires_in()
        .map(|d| d.as_secs() as i64)
        .unwrap_or(1800);
    Ok(Token {
        access_token: resp.access_token().secret().clone(),
        expires_at: Utc::now() + Duration::seconds(secs),
    })
}

/// A valid access token: the stored one, or a fresh one (refreshed single-flight).
pub async fn access_token(
    cfg: &XeroConfig,
    http: &reqwest::Client,
    store: &Store,
    me: &str,
) -> Result<Token, XeroError> {
    for _ in 0..50 {
        let row = store.xero_token().await?;
        if let Some(t) = usable(&row) {
            return Ok(t);
        }
        if cfg.grant == super::XeroGrant::CustomConnection {
            let t = client_credentials(cfg, http).await?;
            store
                .save_xero_grant(&XeroTokenRow {
                    grant_type: "custom_connection".into(),
                    access_token: Some(t.access_token.clone()),
                    access_expires_at: Some(t.expires_at),
                    refresh_token: None,
                    tenant_id: row.and_then(|r| r.tenant_id),
                    refresh_count: 0,
                })
                .await?;
            return Ok(t);
        }
        let Some(row) = row else {
            return Err(XeroError::Reauthorize {
                reason: "no Xero connection is stored".into(),
            });
        };
        let Some(refresh) = row.refresh_token.clone() else {
            return Err(XeroError::Reauthorize {
                reason: "the stored grant has no refresh token".into(),
            });
        };
        let now = Utc::now();
        if !store
            .claim_xero_refresh(me, now, now + Duration::seconds(60))
            .await?
        {
            // Another process is refreshing: wait for its result instead of spending the token too.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        let (id, secret, token_url, _) = client_parts(cfg)?;
        let client = BasicClient::new(id)
            .set_client_secret(secret)
            .set_token_uri(token_url);
        let result = client
            .exchange_refresh_token(&RefreshToken::new(refresh))
            .request_async(http)
            .await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                store.release_xero_refresh(me).await?;
                return Err(token_error(e));
            }
        };
        let secs = resp
            .expires_in()
            .map(|d| d.as_secs() as i64)
            .unwrap_or(1800);
        let t = Token {
            access_token: resp.access_token().secret().clone(),
            expires_at: Utc::now() + Duration::seconds(secs),
        };
        let rotated = resp.refresh_token().map(|r| r.secret().as_str());
        if !store
            .record_xero_refresh(me, &t.access_token, t.expires_at, rotated)
            .await?
        {
            return Err(XeroError::Auth(
                "lost the refresh claim while refreshing; retrying later".into(),
            ));
        }
        tracing::info!(expires_at = %t.expires_at, "Xero access token refreshed");
        return Ok(t);
    }
    Err(XeroError::Auth(
        "another process kept the Xero refresh claim for too long".into(),
    ))
}

fn usable(row: &Option<XeroTokenRow>) -> Option<Token> {
    let r = row.as_ref()?;
    let (Some(a), Some(exp)) = (&r.access_token, r.access_expires_at) else {
        return None;
    };
    (exp - Duration::seconds(EARLY) > Utc::now()).then(|| Token {
        access_token: a.clone(),
        expires_at: exp,
    })
}
