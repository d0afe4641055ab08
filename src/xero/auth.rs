//! OAuth2 with the `oauth2` crate: the client-credentials grant of a custom connection, and the
//! authorization-code grant (with PKCE) whose refresh tokens rotate and are single-use.
//!
//! Refreshing is single-flight: one task per process (a mutex) and one process per database (a
//! claim row in `xero_tokens`). The rotated refresh token is written in the same statement that
//! records the refresh, before the new access token is used; Xero keeps the previous refresh token
//! valid for a short grace period, which covers a crash between its answer and our write.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, Duration, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, ClientId, ClientSecret, RefreshToken, RequestTokenError, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};

use super::{XeroConfig, XeroError};
use crate::store::Store;
use crate::store::xero::XeroTokenRow;

/// How to make a token key, for the messages that ask for one.
pub const MAKE_A_KEY: &str = "make one with `head -c 32 /dev/urandom | base64 > xero.token_key` \
     (as root: into /etc/rebill/credentials/, mode 0600) and give it as xero.token_key_file or the \
     systemd credential xero.token_key";

/// The prefix of a sealed token as stored: the format's version, then base64 of nonce ‖ ciphertext.
const SEALED: &str = "sealed:v1:";

/// The key that seals Xero's tokens at rest (XChaCha20-Poly1305, 32 bytes): a secret given like
/// the others (`xero.token_key_file` or the credential `xero.token_key`, base64). A copy of the
/// database, a backup or a stray `SELECT` shows only sealed text; without the key it is useless.
pub struct TokenKey(XChaCha20Poly1305);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

/// Why a token key was refused (the message never holds the key).
#[derive(Debug, thiserror::Error)]
pub enum TokenKeyError {
    #[error("is not base64 ({MAKE_A_KEY})")]
    NotBase64,
    #[error("is {0} bytes; it must be 32 ({MAKE_A_KEY})")]
    WrongLength(usize),
}

impl TokenKey {
    /// Parses the base64 of 32 random bytes.
    pub fn parse(secret: &SecretString) -> Result<TokenKey, TokenKeyError> {
        let bytes = BASE64
            .decode(secret.expose_secret().trim())
            .map_err(|_| TokenKeyError::NotBase64)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| TokenKeyError::WrongLength(bytes.len()))?;
        Ok(TokenKey(XChaCha20Poly1305::new(&key.into())))
    }

    /// The key configured for Xero, or why there is none to use.
    pub fn from_config(cfg: &XeroConfig) -> Result<TokenKey, XeroError> {
        let secret = cfg.token_key.as_ref().ok_or_else(|| {
            XeroError::NotConfigured(format!(
                "xero.token_key is not set: Xero's tokens are stored sealed with it; {MAKE_A_KEY}"
            ))
        })?;
        TokenKey::parse(secret).map_err(|e| XeroError::NotConfigured(format!("xero.token_key {e}")))
    }

    /// Seals `plain` for the column `what` (the column is bound in: a sealed access token does not
    /// open as a refresh token). A fresh random 24-byte nonce each time.
    pub fn seal(&self, what: &str, plain: &str) -> Result<String, XeroError> {
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: what.as_bytes(),
                },
            )
            .map_err(|_| XeroError::Auth(format!("could not seal the Xero {what}")))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{SEALED}{}", BASE64.encode(out)))
    }

    /// Opens what `seal` made. `None` when it does not open with this key (another key, or
    /// tampered with).
    pub fn open(&self, what: &str, stored: &str) -> Option<String> {
        let bytes = BASE64.decode(stored.strip_prefix(SEALED)?).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(24);
        let nonce = XNonce::try_from(nonce).ok()?;
        let plain = self
            .0
            .decrypt(
                &nonce,
                Payload {
                    msg: sealed,
                    aad: what.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

/// Is this stored token sealed (or plain text written by a version before sealing)?
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED)
}

/// Stores a new grant (after `xero connect` or a client-credentials token), replacing any: its
/// tokens sealed with `xero.token_key` (refused without one: never stored in plain text).
pub async fn save_grant(
    cfg: &XeroConfig,
    store: &Store,
    t: &XeroTokenRow,
) -> Result<(), XeroError> {
    let key = TokenKey::from_config(cfg)?;
    let sealed = XeroTokenRow {
        access_token: t
            .access_token
            .as_deref()
            .map(|a| key.seal("access_token", a))
            .transpose()?,
        refresh_token: t
            .refresh_token
            .as_deref()
            .map(|r| key.seal("refresh_token", r))
            .transpose()?,
        ..t.clone()
    };
    store.save_xero_grant(&sealed).await?;
    Ok(())
}

/// The stored grant with its tokens opened. A token that does not open with the configured key
/// (the key was changed) reads as absent: a custom connection fetches a new one, an
/// authorization-code grant asks for `rebilld xero connect`. Tokens stored in plain text by an
/// earlier version are sealed in place on first read.
pub async fn load(cfg: &XeroConfig, store: &Store) -> Result<Option<XeroTokenRow>, XeroError> {
    let Some(row) = store.xero_token().await? else {
        return Ok(None);
    };
    if row.access_token.is_none() && row.refresh_token.is_none() {
        return Ok(Some(row));
    }
    let key = TokenKey::from_config(cfg)?;
    let legacy = row.access_token.as_deref().is_some_and(|a| !is_sealed(a))
        || row.refresh_token.as_deref().is_some_and(|r| !is_sealed(r));
    if legacy {
        let reseal = |what: &str, v: &Option<String>| -> Result<Option<String>, XeroError> {
            v.as_deref()
                .map(|x| {
                    if is_sealed(x) {
                        Ok(x.to_string())
                    } else {
                        key.seal(what, x)
                    }
                })
                .transpose()
        };
        let access = reseal("access_token", &row.access_token)?;
        let refresh = reseal("refresh_token", &row.refresh_token)?;
        store
            .reseal_xero_tokens(
                row.access_token.as_deref(),
                row.refresh_token.as_deref(),
                access.as_deref(),
                refresh.as_deref(),
            )
            .await?;
        tracing::info!("stored Xero tokens sealed with xero.token_key");
    }
    Ok(Some(open_row(&key, row)))
}

/// The row with its tokens opened (a token that does not open reads as absent, with a warning).
fn open_row(key: &TokenKey, row: XeroTokenRow) -> XeroTokenRow {
    let open = |what: &str, v: &Option<String>| {
        v.as_deref().and_then(|x| {
            if is_sealed(x) {
                let opened = key.open(what, x);
                if opened.is_none() {
                    tracing::warn!(
                        "the stored Xero {what} does not open with xero.token_key (was the key changed?)"
                    );
                }
                opened
            } else {
                Some(x.to_string())
            }
        })
    };
    XeroTokenRow {
        access_token: open("access_token", &row.access_token),
        refresh_token: open("refresh_token", &row.refresh_token),
        ..row
    }
}

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
    let key = TokenKey::from_config(cfg)?;
    for _ in 0..50 {
        let row = load(cfg, store).await?;
        if let Some(t) = usable(&row) {
            return Ok(t);
        }
        if cfg.grant == super::XeroGrant::CustomConnection {
            let t = client_credentials(cfg, http).await?;
            save_grant(
                cfg,
                store,
                &XeroTokenRow {
                    grant_type: "custom_connection".into(),
                    access_token: Some(t.access_token.clone()),
                    access_expires_at: Some(t.expires_at),
                    refresh_token: None,
                    tenant_id: row.and_then(|r| r.tenant_id),
                    refresh_count: 0,
                },
            )
            .await?;
            return Ok(t);
        }
        let Some(row) = row else {
            return Err(XeroError::Reauthorize {
                reason: "no Xero connection is stored".into(),
            });
        };
        if row.refresh_token.is_none() {
            return Err(XeroError::Reauthorize {
                reason: "the stored grant has no refresh token (revoked, or sealed with another xero.token_key)".into(),
            });
        }
        let now = Utc::now();
        if !store
            .claim_xero_refresh(me, now, now + Duration::seconds(60))
            .await?
        {
            // Another process is refreshing: wait for its result instead of spending the token too.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        // Read again under the claim: another process may have refreshed (and rotated the single-
        // use refresh token) between our read and our claim.
        let sealed = store.xero_token().await?;
        let row = sealed.clone().map(|r| open_row(&key, r));
        if let Some(t) = usable(&row) {
            store.release_xero_refresh(me).await?;
            return Ok(t);
        }
        let (Some(refresh), Some(sealed_refresh)) = (
            row.and_then(|r| r.refresh_token),
            sealed.and_then(|r| r.refresh_token),
        ) else {
            store.release_xero_refresh(me).await?;
            return Err(XeroError::Reauthorize {
                reason: "the stored grant has no refresh token (revoked, or sealed with another xero.token_key)".into(),
            });
        };
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
                let e = token_error(e);
                if matches!(e, XeroError::Reauthorize { .. }) {
                    // The grant is dead: forget its tokens (only if still the ones we presented),
                    // so that `xero status` says so instead of showing an old expiry.
                    store.revoke_xero_grant(&sealed_refresh).await?;
                }
                store.release_xero_refresh(me).await?;
                return Err(e);
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
        let access = key.seal("access_token", &t.access_token)?;
        let rotated = resp
            .refresh_token()
            .map(|r| key.seal("refresh_token", r.secret()))
            .transpose()?;
        if !store
            .record_xero_refresh(me, &access, t.expires_at, rotated.as_deref())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> TokenKey {
        TokenKey::parse(&SecretString::from(BASE64.encode([b; 32]))).unwrap()
    }

    #[test]
    fn a_sealed_token_opens_with_its_key_and_column_only() {
        let k = key(7);
        let sealed = k.seal("refresh_token", "refresh-secret-1").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("refresh-secret-1"));
        assert_eq!(
            k.open("refresh_token", &sealed).as_deref(),
            Some("refresh-secret-1")
        );
        // Another key, another column, or a changed byte: it does not open.
        assert_eq!(key(8).open("refresh_token", &sealed), None);
        assert_eq!(k.open("access_token", &sealed), None);
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            k.open("refresh_token", &String::from_utf8(tampered).unwrap()),
            None
        );
        // Each seal has its own nonce.
        assert_ne!(sealed, k.seal("refresh_token", "refresh-secret-1").unwrap());
    }

    #[test]
    fn a_token_key_must_be_32_bytes_of_base64_and_never_prints() {
        let short = SecretString::from(BASE64.encode([1u8; 16]));
        assert!(matches!(
            TokenKey::parse(&short),
            Err(TokenKeyError::WrongLength(16))
        ));
        assert!(matches!(
            TokenKey::parse(&SecretString::from("not base64!")),
            Err(TokenKeyError::NotBase64)
        ));
        assert_eq!(format!("{:?}", key(1)), "TokenKey([redacted])");
    }
}
