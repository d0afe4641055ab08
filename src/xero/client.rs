//! Requests to the Accounting API: tenant header, a bearer token, the organisation's limits (60 a
//! minute, 5,000 a day, `max_concurrent` at once) taken from the budget every process on the
//! database shares (`store::budget`), and retries of 429/5xx/timeouts through `crate::http::retry`
//! (exponential back-off with jitter, honouring `Retry-After`). Only requests that are safe to
//! repeat are retried: reads, and writes that carry an `Idempotency-Key`.
//!
//! The day's budget is spent on invoice creates first: any other request (an email, a read) leaves
//! room for the creates still waiting in the outbox (one request per `batch_size` of them), so
//! that emails never use up the day and make an invoice wait for tomorrow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::wire::{self, ApiError};
use super::{XeroConfig, XeroError, auth};
use crate::clock::{Clock, SystemClock};
use crate::http::pace::{ClockSleeper, on_clock, turn};
use crate::http::retry::retrying_with;
use crate::http::{Failure, Retries, retry_after, stats};
use crate::store::Store;
use crate::store::budget::{Ask, Window};

/// What a request may spend of the organisation's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spend {
    /// Invoice creates and the look-ups before them: the whole day's budget.
    Creates,
    /// Everything else: the day less what the creates still waiting need.
    Rest,
}

#[derive(Clone)]
pub struct XeroClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    cfg: XeroConfig,
    store: Store,
    slots: Semaphore,
    /// Single-flight within the process; `auth::access_token` is single-flight across processes.
    token: Mutex<Option<auth::Token>>,
    tenant: Mutex<Option<String>>,
    me: String,
    /// Names this client's turns in the shared budget (`store::budget::holder_name`).
    turns: String,
    /// Xero's minute and day limits, shared through the database and paced on `clock` (0 429s:
    /// the limits are not learnt from them).
    windows: [Window; 2],
    clock: Arc<dyn Clock>,
    /// This installation's id (`store::installation_id`, passed down by the pipeline), put in
    /// front of every Idempotency-Key: two databases on one Xero organisation never share a key.
    installation: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for XeroClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XeroClient")
            .field("api_url", &self.inner.cfg.api_url)
            .finish_non_exhaustive()
    }
}

pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: String,
}

impl XeroClient {
    pub async fn new(cfg: &XeroConfig, store: Store) -> Result<Self, XeroError> {
        Self::new_on(cfg, store, Arc::new(SystemClock)).await
    }

    /// A client whose pacing and waits run on `clock` (the bench's scaled clock).
    pub async fn new_on(
        cfg: &XeroConfig,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, XeroError> {
        // A secret is asked for only here, when a command uses Xero.
        if cfg.is_configured() {
            cfg.client_secret()
                .map_err(|e| XeroError::NotConfigured(e.to_string()))?;
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .build()
            .map_err(|e| XeroError::Transport(e.to_string()))?;
        let me = format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Ok(XeroClient {
            inner: Arc::new(Inner {
                http,
                cfg: cfg.clone(),
                store,
                slots: Semaphore::new(cfg.max_concurrent.max(1) as usize),
                token: Mutex::new(None),
                tenant: Mutex::new(cfg.tenant_id.clone()),
                turns: crate::store::budget::holder_name(&me),
                me,
                windows: [
                    Window::new(u64::from(cfg.requests_per_minute), Duration::from_secs(60)),
                    Window::new(u64::from(cfg.requests_per_day), Duration::from_secs(86_400)),
                ],
                clock,
                installation: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Scopes every Idempotency-Key this client sends to `installation` (once: a client never
    /// mixes two scopes).
    pub fn with_installation(self, installation: &str) -> Self {
        let set = self
            .inner
            .installation
            .get_or_init(|| installation.to_string());
        debug_assert_eq!(set, installation, "one installation per client");
        self
    }

    pub fn config(&self) -> &XeroConfig {
        &self.inner.cfg
    }

    async fn token(&self, force: bool) -> Result<String, XeroError> {
        let mut cached = self.inner.token.lock().await;
        if !force
            && let Some(t) = cached.as_ref()
            && t.expires_at - ChronoDuration::seconds(120) > Utc::now()
        {
            return Ok(t.access_token.clone());
        }
        if force {
            // The server refused our token: forget it here and in the database's copy.
            self.inner.store.save_xero_tenant_token_expired().await?;
        }
        let t = auth::access_token(
            &self.inner.cfg,
            &self.inner.http,
            &self.inner.store,
            &self.inner.me,
        )
        .await?;
        let a = t.access_token.clone();
        *cached = Some(t);
        Ok(a)
    }

    /// The organisation: configured, stored, or the only one `/connections` lists.
    pub async fn tenant(&self) -> Result<String, XeroError> {
        let mut t = self.inner.tenant.lock().await;
        if let Some(id) = t.as_ref() {
            return Ok(id.clone());
        }
        if let Some(id) = self
            .inner
            .store
            .xero_token()
            .await?
            .and_then(|r| r.tenant_id)
        {
            *t = Some(id.clone());
            return Ok(id);
        }
        let token = self.token(false).await?;
        let url = format!(
            "{}/connections",
            self.inner.cfg.identity_url.trim_end_matches('/')
        );
        let resp = self
            .inner
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(counted_transport)?;
        let status = resp.status();
        stats::answered(API, status.as_u16());
        let body = resp.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(XeroError::Http {
                status: status.as_u16(),
                body: truncate(&body),
            });
        }
        let conns: Vec<wire::Connection> =
            serde_json::from_str(&body).map_err(|e| XeroError::Decode(e.to_string()))?;
        let orgs: Vec<&wire::Connection> = conns
            .iter()
            .filter(|c| c.tenant_type.as_deref().is_none_or(|k| k == "ORGANISATION"))
            .collect();
        let id = match orgs.as_slice() {
            [one] => one.tenant_id.clone(),
            [] => {
                return Err(XeroError::Reauthorize {
                    reason: "the grant reaches no Xero organisation".into(),
                });
            }
            many => {
                return Err(XeroError::NotConfigured(format!(
                    "the grant reaches {} organisations ({}); set xero.tenant_id",
                    many.len(),
                    many.iter()
                        .map(|c| format!(
                            "{} {}",
                            c.tenant_id,
                            c.tenant_name.as_deref().unwrap_or("")
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        };
        self.inner.store.save_xero_tenant(&id).await?;
        *t = Some(id.clone());
        Ok(id)
    }

    /// Sends one request, retrying what is safe to retry. `key` is the Idempotency-Key of a write.
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Reply, XeroError> {
        self.send_spending(Spend::Rest, method, path, query, body, key)
            .await
    }

    /// [`Self::send`], spending the day's budget as `spend` may.
    pub(super) async fn send_spending(
        &self,
        spend: Spend,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Reply, XeroError> {
        let retries =
            Retries::new(self.inner.cfg.retry_base_ms, self.inner.cfg.max_retries).counted_as(API);
        let refreshed = AtomicBool::new(false);
        let sleep = ClockSleeper(self.inner.clock.clone());
        retrying_with(retries, sleep, || {
            self.attempt(spend, &method, path, query, body, key, &refreshed)
        })
        .await
    }

    /// Waits for this request's turn under the organisation's limits, shared with every process
    /// on the database; returns its ticket. A wait longer than a minute (the day's budget spent)
    /// is refused: the entry is parked.
    async fn take_turn(&self, tenant: &str, spend: Spend) -> Result<i64, XeroError> {
        let [minute, day] = self.inner.windows;
        let day = match spend {
            Spend::Creates => day,
            Spend::Rest => {
                let creates = self.inner.store.xero_creates_waiting().await?;
                let batch = u64::from(self.inner.cfg.batch_size.max(1));
                day.keeping(creates.div_ceil(batch))
            }
        };
        let budget = format!("xero:{tenant}");
        let windows = [minute, day];
        let ask = Ask {
            budget: &budget,
            holder: &self.inner.turns,
            windows: &windows,
            at_once: Some(u64::from(self.inner.cfg.max_concurrent.max(1))),
            // The request's timeout bounds it (from before it is sent until its answer is read),
            // and a few seconds more mark it answered: a dead process's turn ends soon after.
            lease: on_clock(
                &*self.inner.clock,
                Duration::from_secs(self.inner.cfg.timeout_secs + LEASE_MARGIN_SECS),
            ),
        };
        let store = &self.inner.store;
        match turn(&*self.inner.clock, Duration::from_secs(60), API, |now| {
            store.take_budget(&ask, now)
        })
        .await?
        {
            Ok(ticket) => Ok(ticket),
            Err(wait) => Err(XeroError::RateLimited { retry_after: wait }),
        }
    }

    /// One attempt, and what the retry loop should make of it: 429 and 5xx and transport errors
    /// are transient when the request is safe to repeat (a read, or a write with a key); a 401 gets
    /// one fresh token (once per request) before it counts.
    #[allow(clippy::too_many_arguments)] // one attempt of `send_spending`, with its arguments
    async fn attempt(
        &self,
        spend: Spend,
        method: &Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        key: Option<&str>,
        refreshed: &AtomicBool,
    ) -> Result<Reply, Failure<XeroError>> {
        let retryable = *method == Method::GET || key.is_some();
        let mut sent = self
            .send_once(spend, method.clone(), path, query, body, key)
            .await;
        if matches!(&sent, Ok(r) if r.status == StatusCode::UNAUTHORIZED)
            && !refreshed.swap(true, Ordering::SeqCst)
        {
            self.token(true).await.map_err(Failure::Final)?;
            sent = self
                .send_once(spend, method.clone(), path, query, body, key)
                .await;
        }
        match sent {
            Ok(r) if r.status == StatusCode::UNAUTHORIZED => {
                Err(Failure::Final(XeroError::Reauthorize {
                    reason: "Xero refused a fresh access token (401)".into(),
                }))
            }
            Ok(r) if r.status == StatusCode::FORBIDDEN => {
                Err(Failure::Final(XeroError::Reauthorize {
                    reason: format!("Xero refused access (403): {}", truncate(&r.body)),
                }))
            }
            Ok(r) if r.status == StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = r.retry_after.unwrap_or(Duration::from_secs(60));
                if r.day_limit {
                    // The outbox parks the work until then, on the pipeline's clock.
                    return Err(Failure::Final(XeroError::DayBudgetSpent {
                        until: self.inner.clock.now()
                            + ChronoDuration::from_std(retry_after)
                                .unwrap_or(ChronoDuration::hours(1)),
                    }));
                }
                let limited = XeroError::RateLimited { retry_after };
                if !retryable || retry_after > Duration::from_secs(60) {
                    // A long wait is the outbox's job (the entry is parked), not a sleeping request.
                    return Err(Failure::Final(limited));
                }
                Err(Failure::Transient {
                    error: limited,
                    retry_after: Some(retry_after),
                    reason: "Xero asked us to slow down",
                })
            }
            Ok(r) if r.status.is_server_error() && retryable => Err(Failure::transient(
                XeroError::Http {
                    status: r.status.as_u16(),
                    body: truncate(&r.body),
                },
                "Xero server error",
            )),
            Ok(r) => Ok(Reply {
                status: r.status,
                body: r.body,
            }),
            Err(e @ XeroError::Transport(_)) if retryable => {
                Err(Failure::transient(e, "Xero request failed"))
            }
            Err(e) => Err(Failure::Final(e)),
        }
    }

    async fn send_once(
        &self,
        spend: Spend,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<RawReply, XeroError> {
        let token = self.token(false).await?;
        let tenant = self.tenant().await?;
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .map_err(|_| XeroError::Transport("client closed".into()))?;
        // Counted until the answer is in (or the lease ends). A long wait (the day's budget
        // spent) is the outbox's: the entry is parked.
        let ticket = self.take_turn(&tenant, spend).await?;
        let sent = self
            .send_taken(method, path, query, body, key, (&token, &tenant))
            .await;
        if let Err(e) = self
            .inner
            .store
            .budget_answered(ticket, self.inner.clock.now())
            .await
        {
            tracing::warn!(error = %e, "could not mark a Xero request answered; it leaves the budget when its lease ends");
        }
        sent
    }

    /// Sends the request whose turn was taken, once.
    async fn send_taken(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        key: Option<&str>,
        (token, tenant): (&str, &str),
    ) -> Result<RawReply, XeroError> {
        let url = format!(
            "{}/{}",
            self.inner.cfg.api_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut req = self
            .inner
            .http
            .request(method, &url)
            .bearer_auth(token)
            .header("xero-tenant-id", tenant)
            .header("Accept", "application/json")
            .query(query);
        if let Some(k) = key {
            req = req.header(
                "Idempotency-Key",
                scoped_key(self.inner.installation.get().map(String::as_str), k),
            );
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(counted_transport)?;
        let status = resp.status();
        stats::answered(API, status.as_u16());
        let h = resp.headers();
        let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        let retry_after = retry_after(h);
        let day_limit = header("x-rate-limit-problem")
            .is_some_and(|p| p.eq_ignore_ascii_case("day"))
            || header("x-daylimit-remaining").is_some_and(|v| v.trim() == "0")
                && status.as_u16() == 429;
        if let Some(rem) = header("x-minlimit-remaining").and_then(|v| v.parse::<i64>().ok())
            && rem <= 1
        {
            // Nearly out of this minute's calls: pause before the next one instead of earning a 429.
            tracing::info!(remaining = rem, "Xero minute budget nearly spent; pausing");
            tokio::time::sleep(self.inner.clock.real_duration(Duration::from_secs(2))).await;
        }
        let body = resp.text().await.map_err(transport)?;
        Ok(RawReply {
            status,
            body,
            retry_after,
            day_limit,
        })
    }

    pub(super) fn decode<T: DeserializeOwned>(body: &str) -> Result<T, XeroError> {
        serde_json::from_str(body)
            .map_err(|e| XeroError::Decode(format!("{e}: {}", truncate(body))))
    }

    pub(super) fn refusal(r: &Reply) -> XeroError {
        match serde_json::from_str::<ApiError>(&r.body) {
            Ok(e) if r.status == StatusCode::BAD_REQUEST && !e.messages().is_empty() => {
                XeroError::Validation(e.messages())
            }
            _ if r.status == StatusCode::NOT_FOUND => XeroError::NotFound {
                what: "such record".into(),
            },
            _ => XeroError::Http {
                status: r.status.as_u16(),
                body: truncate(&r.body),
            },
        }
    }
}

struct RawReply {
    status: StatusCode,
    body: String,
    retry_after: Option<Duration>,
    day_limit: bool,
}

/// How long after its timeout a request still counts as in flight (see `store::budget`).
const LEASE_MARGIN_SECS: u64 = 5;

/// The API's name in the counters of `http::stats`.
const API: &str = "xero";

/// A request that got no answer: counted, then [`transport`].
fn counted_transport(e: reqwest::Error) -> XeroError {
    stats::unanswered(API, e.is_timeout());
    transport(e)
}

fn transport(e: reqwest::Error) -> XeroError {
    // reqwest's message can include the URL but never our headers, so no token reaches it.
    XeroError::Transport(if e.is_timeout() {
        "timed out".into()
    } else {
        e.without_url().to_string()
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(500).collect()
}

/// The Idempotency-Key sent for `key`: prefixed with the installation's id when there is one, so
/// that the same action of two installations (two databases on one Xero organisation) never
/// shares a key. Xero takes at most 128 characters: a longer key is sent as the installation and
/// the SHA-256 of the key.
pub fn scoped_key(installation: Option<&str>, key: &str) -> String {
    let Some(i) = installation else {
        return key.to_string();
    };
    let k = format!("{i}-{key}");
    if k.len() <= 128 {
        return k;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{i}-{hex}")
}

#[cfg(test)]
mod key_tests {
    use super::scoped_key;

    #[test]
    fn keys_are_scoped_to_the_installation_and_stay_within_xeros_128_characters() {
        assert_eq!(
            scoped_key(None, "xero-invoice:2026-11:3"),
            "xero-invoice:2026-11:3"
        );
        let a = scoped_key(Some("aaaa"), "xero-invoice:2026-11:3");
        let b = scoped_key(Some("bbbb"), "xero-invoice:2026-11:3");
        assert_eq!(a, "aaaa-xero-invoice:2026-11:3");
        assert_ne!(a, b);
        let long = "k".repeat(200);
        let inst = "0123456789abcdef0123456789abcdef";
        let k = scoped_key(Some(inst), &long);
        assert!(k.len() <= 128 && k.starts_with(inst), "{k}");
        assert_eq!(k, scoped_key(Some(inst), &long), "stable");
        assert_ne!(k, scoped_key(Some(inst), &"k".repeat(201)));
    }
}
