//! Requests: the three auth headers on every call (and only to the zone's host), the zone looked
//! up once and cached in the database, per-endpoint concurrency (the tenant's threads, shared by
//! every process on the database), pacing to the configured share of the tenant's hourly budget
//! (one budget for every process on the database: `store::budget`), and retries of throttling,
//! timeouts and 5xx only where the request is safe to repeat.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::query::Filter;
use super::server_errors::{ServerError, classify_server_error, errors_of};
use super::wire::{self, Page};
use super::{AutotaskConfig, AutotaskError};
use crate::clock::{Clock, SystemClock};
use crate::http::pace::{ClockSleeper, on_clock, turn};
use crate::http::retry::retrying_with;
use crate::http::{Failure, Retries, retry_after, stats};
use crate::store::Store;
use crate::store::budget::{Ask, Window};

/// How long after its timeout a request still counts as in flight (see `store::budget`).
const LEASE_MARGIN_SECS: u64 = 5;

/// The API's name in the counters of `http::stats`.
const API: &str = "autotask";

#[derive(Clone)]
pub struct AutotaskClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    http: reqwest::Client,
    pub(super) cfg: AutotaskConfig,
    pub(super) store: Store,
    zone: Mutex<Option<url::Url>>,
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The share of the tenant's hourly budget that every process on the database together may
    /// use (`store::budget`), paced on `clock`; lowered by [`AutotaskClient::prepare_run`] when
    /// the other integrations have used more than theirs.
    limit: AtomicU64,
    pub(super) clock: Arc<dyn Clock>,
    /// Names this client in the tenant's thread slots.
    me: String,
    /// Names this client's turns in the shared budget (`store::budget::holder_name`).
    turns: String,
}

impl std::fmt::Debug for AutotaskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutotaskClient")
            .field("username", &self.inner.cfg.username)
            .finish_non_exhaustive()
    }
}

/// What came back, before interpretation.
pub(super) struct Reply {
    pub status: StatusCode,
    pub body: String,
}

/// What came back, with the server's `Retry-After`.
struct RawReply {
    status: StatusCode,
    body: String,
    retry_after: Option<Duration>,
}

/// Whether a request may be sent again after an unclear outcome.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    Safe,
    /// A create: never repeated here; the caller queries for its marker first.
    Never,
}

impl AutotaskClient {
    pub async fn new(cfg: &AutotaskConfig, store: Store) -> Result<Self, AutotaskError> {
        Self::new_on(cfg, store, Arc::new(SystemClock)).await
    }

    /// A client whose pacing and waits run on `clock` (the bench's scaled clock).
    pub async fn new_on(
        cfg: &AutotaskConfig,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AutotaskError> {
        if cfg.username.is_none() {
            return Err(AutotaskError::NotConfigured(
                "autotask.username, autotask.secret and autotask.integration_code are all needed"
                    .into(),
            ));
        }
        // A secret is asked for only here, when a command uses Autotask.
        cfg.secrets()
            .map_err(|e| AutotaskError::NotConfigured(e.to_string()))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .build()
            .map_err(|e| AutotaskError::Transport(e.to_string()))?;
        let limit = (f64::from(cfg.hourly_budget) * cfg.budget_share).floor() as u64;
        Ok(AutotaskClient {
            inner: Arc::new(Inner {
                http,
                cfg: cfg.clone(),
                store,
                zone: Mutex::new(None),
                endpoints: Mutex::new(HashMap::new()),
                limit: AtomicU64::new(limit.max(1)),
                clock,
                me: format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
                turns: crate::store::budget::holder_name(
                    &uuid::Uuid::new_v4().simple().to_string(),
                ),
            }),
        })
    }

    fn username(&self) -> &str {
        self.inner.cfg.username.as_deref().unwrap_or_default()
    }

    /// The tenant's budget in the database: every process with this API user shares it.
    fn budget(&self) -> String {
        format!("autotask:{}", self.username())
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.inner.cfg.budget_window_secs)
    }

    /// Waits for this request's turn under the share of the tenant's budget, shared with every
    /// process on the database; Ok(Err(wait)) when the wait is longer than
    /// `autotask.max_budget_wait_secs` (the work is parked).
    async fn take_turn(&self) -> Result<Result<i64, Duration>, AutotaskError> {
        let budget = self.budget();
        let windows = [Window::new(
            self.inner.limit.load(Ordering::Relaxed),
            self.window(),
        )];
        let ask = Ask {
            budget: &budget,
            holder: &self.inner.turns,
            windows: &windows,
            // The threads per endpoint are the tenant's thread slots' (`tenant_thread`).
            at_once: None,
            // The request's timeout bounds it (from before it is sent until its answer is read),
            // and a few seconds more mark it answered: a dead process's turn ends soon after.
            lease: on_clock(
                &*self.inner.clock,
                Duration::from_secs(self.inner.cfg.timeout_secs + LEASE_MARGIN_SECS),
            ),
        };
        let store = &self.inner.store;
        Ok(turn(
            &*self.inner.clock,
            Duration::from_secs(self.inner.cfg.max_budget_wait_secs),
            API,
            |now| store.take_budget(&ask, now),
        )
        .await?)
    }

    /// The zone's API base URL: cached, else looked up (and cached).
    async fn zone(&self, refresh: bool) -> Result<url::Url, AutotaskError> {
        let mut z = self.inner.zone.lock().await;
        if !refresh {
            if let Some(u) = z.as_ref() {
                return Ok(u.clone());
            }
            if let Some(u) = self.inner.store.autotask_zone(self.username()).await? {
                let u = parse_base(&u)?;
                *z = Some(u.clone());
                return Ok(u);
            }
        }
        let resp = self
            .inner
            .http
            .get(&self.inner.cfg.zone_lookup_url)
            .query(&[("user", self.username())])
            .send()
            .await
            .map_err(counted_transport)?;
        let status = resp.status();
        stats::answered(API, status.as_u16());
        let body = resp.text().await.map_err(transport)?;
        if !status.is_success() {
            let words = serde_json::from_str::<wire::Errors>(&body)
                .map(|e| e.errors)
                .unwrap_or_default();
            return Err(if words.is_empty() {
                AutotaskError::Http {
                    status: status.as_u16(),
                    body: truncate(&body),
                }
            } else {
                AutotaskError::Refused(words)
            });
        }
        let info: wire::ZoneInformation = decode(&body)?;
        let u = parse_base(&info.url)?;
        self.inner
            .store
            .save_autotask_zone(self.username(), u.as_str())
            .await?;
        tracing::info!(zone = %u, "Autotask zone resolved");
        *z = Some(u.clone());
        Ok(u)
    }

    async fn slot(&self, endpoint: &str) -> Arc<Semaphore> {
        let mut m = self.inner.endpoints.lock().await;
        m.entry(endpoint.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.inner.cfg.max_concurrent.max(1) as usize))
            })
            .clone()
    }

    /// Sends `method path` (relative to the zone, e.g. `V1.0/Contracts/query`), or an absolute
    /// `next page` URL on the zone's host. Retries throttling, timeouts and 5xx when `repeat` is Safe.
    pub(super) async fn request(
        &self,
        method: Method,
        path_or_url: &str,
        body: Option<&Value>,
        repeat: Repeat,
    ) -> Result<Reply, AutotaskError> {
        let endpoint = endpoint_of(path_or_url);
        let retries =
            Retries::new(self.inner.cfg.retry_base_ms, self.inner.cfg.max_retries).counted_as(API);
        let re_resolved = AtomicBool::new(false);
        let sleep = ClockSleeper(self.inner.clock.clone());
        retrying_with(retries, sleep, || {
            self.attempt(&method, path_or_url, body, repeat, &endpoint, &re_resolved)
        })
        .await
    }

    /// One attempt, and what the retry loop should make of it: throttling (429, "thread
    /// threshold"), 5xx without Autotask's error words, and transport errors are transient when
    /// the request is Safe; a 401 looks the zone up again once per request before it counts.
    async fn attempt(
        &self,
        method: &Method,
        path_or_url: &str,
        body: Option<&Value>,
        repeat: Repeat,
        endpoint: &str,
        re_resolved: &AtomicBool,
    ) -> Result<Reply, Failure<AutotaskError>> {
        let mut sent = self
            .send_once(method, path_or_url, body, repeat, endpoint)
            .await?;
        if sent.status == StatusCode::UNAUTHORIZED && !re_resolved.swap(true, Ordering::SeqCst) {
            // The zone may have moved: look it up again once.
            self.zone(true).await.map_err(Failure::Final)?;
            sent = self
                .send_once(method, path_or_url, body, repeat, endpoint)
                .await?;
        }
        let RawReply {
            status,
            body: text,
            retry_after,
        } = sent;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Final(AutotaskError::Unauthorized {
                status: status.as_u16(),
            }));
        }
        if status == StatusCode::TOO_MANY_REQUESTS || is_thread_threshold(&text) {
            let throttled = AutotaskError::Throttled {
                retry_after: retry_after.unwrap_or(Duration::from_secs(30)),
            };
            return Err(match repeat {
                Repeat::Never => Failure::Final(throttled),
                Repeat::Safe => Failure::Transient {
                    error: throttled,
                    retry_after,
                    reason: "Autotask throttled the request",
                },
            });
        }
        if status.is_server_error()
            && repeat == Repeat::Safe
            && classify_server_error(&text) == ServerError::Transient
        {
            return Err(Failure::transient(
                AutotaskError::Http {
                    status: status.as_u16(),
                    body: truncate(&text),
                },
                "Autotask server error",
            ));
        }
        Ok(Reply { status, body: text })
    }

    /// Sends the request once, within the pace and the endpoint's concurrency. A failure before
    /// anything was sent is final; a transport failure is transient when the request is Safe.
    async fn send_once(
        &self,
        method: &Method,
        path_or_url: &str,
        body: Option<&Value>,
        repeat: Repeat,
        endpoint: &str,
    ) -> Result<RawReply, Failure<AutotaskError>> {
        let zone = self.zone(false).await.map_err(Failure::Final)?;
        let url = if path_or_url.starts_with("http") {
            let u = url::Url::parse(path_or_url)
                .map_err(|e| Failure::Final(AutotaskError::Decode(e.to_string())))?;
            if u.host_str() != zone.host_str()
                || u.scheme() != zone.scheme()
                || u.port_or_known_default() != zone.port_or_known_default()
            {
                return Err(Failure::Final(AutotaskError::ForeignHost(
                    u.host_str().unwrap_or("?").to_string(),
                )));
            }
            u
        } else {
            zone.join(path_or_url)
                .map_err(|e| Failure::Final(AutotaskError::Decode(e.to_string())))?
        };
        let sem = self.slot(endpoint).await;
        let _permit = sem
            .acquire()
            .await
            .map_err(|_| Failure::Final(AutotaskError::Transport("client closed".into())))?;
        let mut req = self
            .inner
            .http
            .request(method.clone(), url)
            .header(
                "ApiIntegrationCode",
                self.inner
                    .cfg
                    .integration_code
                    .as_ref()
                    .map(|s| s.expose_secret().to_string())
                    .unwrap_or_default(),
            )
            .header("UserName", self.username())
            .header(
                "Secret",
                self.inner
                    .cfg
                    .secret
                    .as_ref()
                    .map(|s| s.expose_secret().to_string())
                    .unwrap_or_default(),
            )
            .header("Accept", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let unclear = |e: reqwest::Error| match repeat {
            Repeat::Safe => Failure::transient(counted_transport(e), "Autotask request failed"),
            Repeat::Never => Failure::Final(counted_transport(e)),
        };
        // One of the tenant's threads for this endpoint, shared with every process on the
        // database, for the time of the request.
        let thread = self.tenant_thread(endpoint).await.map_err(Failure::Final)?;
        let sent = async {
            // Paced last, right before the request leaves, so the pace is what Autotask sees;
            // counted until the answer is in (or its lease ends).
            let ticket = match self.take_turn().await {
                Ok(Ok(t)) => t,
                Ok(Err(wait)) => {
                    return Err(Failure::Final(AutotaskError::BudgetSpent {
                        retry_after: wait,
                    }));
                }
                Err(e) => return Err(Failure::Final(e)),
            };
            let sent = async {
                let resp = req.send().await.map_err(unclear)?;
                let status = resp.status();
                stats::answered(API, status.as_u16());
                let retry_after = retry_after(resp.headers());
                let body = resp.text().await.map_err(unclear)?;
                Ok(RawReply {
                    status,
                    body,
                    retry_after,
                })
            }
            .await;
            if let Err(e) = self
                .inner
                .store
                .budget_answered(ticket, self.inner.clock.now())
                .await
            {
                tracing::warn!(error = %e, "could not mark an Autotask request answered; it leaves the budget when its lease ends");
            }
            sent
        }
        .await;
        if let Err(e) = self
            .inner
            .store
            .give_back_autotask_thread(endpoint, thread, &self.inner.me)
            .await
        {
            tracing::warn!(error = %e, endpoint, "could not give an Autotask thread back; it comes back when its lease ends");
        }
        sent
    }

    /// Waits for one of the tenant's `autotask.max_concurrent` threads of `endpoint` (a slot in
    /// the database, so that several processes together stay within Autotask's threads per
    /// endpoint). Its lease outlasts the request's timeout: a process that dies holding one gives it
    /// back when the lease ends.
    async fn tenant_thread(&self, endpoint: &str) -> Result<i64, AutotaskError> {
        let slots = i64::from(self.inner.cfg.max_concurrent.max(1));
        // Held through the pace's wait and the request's timeout, with a margin.
        let lease = chrono::Duration::seconds(
            (self.inner.cfg.max_budget_wait_secs + self.inner.cfg.timeout_secs + 30) as i64,
        );
        let mut wait = Duration::from_millis(10);
        loop {
            let now = self.inner.clock.now();
            if let Some(slot) = self
                .inner
                .store
                .take_autotask_thread(endpoint, slots, &self.inner.me, now, now + lease)
                .await?
            {
                return Ok(slot);
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(200));
        }
    }

    /// Interprets a reply: success, or Autotask's `{"errors": [...]}` words, or the bare status.
    pub(super) fn check(reply: Reply) -> Result<String, AutotaskError> {
        if reply.status.is_success() {
            return Ok(reply.body);
        }
        if reply.status == StatusCode::NOT_FOUND {
            return Err(AutotaskError::NotFound("such record".into()));
        }
        if reply.status.is_server_error() {
            // By the body (see `classify_server_error`): validation words are permanent, anything
            // else is the server's trouble and transient (for a create: its outcome is unknown).
            return Err(match classify_server_error(&reply.body) {
                ServerError::Validation(words) => AutotaskError::Refused(words),
                ServerError::Transient => AutotaskError::Http {
                    status: reply.status.as_u16(),
                    body: truncate(&reply.body),
                },
            });
        }
        let words = errors_of(&reply.body);
        if !words.is_empty() {
            return Err(AutotaskError::Refused(words));
        }
        Err(AutotaskError::Http {
            status: reply.status.as_u16(),
            body: truncate(&reply.body),
        })
    }

    /// All items of a query, page by page: each `nextPageUrl` is POSTed again with the same body.
    pub async fn query<T: DeserializeOwned>(
        &self,
        entity: &str,
        filter: &Filter,
    ) -> Result<Vec<T>, AutotaskError> {
        let body = filter.body();
        let mut out = Vec::new();
        let mut next = Some(format!("V1.0/{entity}/query"));
        let mut pages = 0;
        while let Some(target) = next.take() {
            let reply = self
                .request(Method::POST, &target, Some(&body), Repeat::Safe)
                .await?;
            let page: Page<T> = decode(&Self::check(reply)?)?;
            out.extend(page.items);
            next = page
                .page_details
                .and_then(|d| d.next_page_url)
                .filter(|u| !u.is_empty());
            pages += 1;
            if pages > 10_000 {
                return Err(AutotaskError::Decode(
                    "query returned more than 10,000 pages".into(),
                ));
            }
        }
        Ok(out)
    }

    /// One record by id.
    pub async fn get<T: DeserializeOwned>(
        &self,
        entity: &str,
        id: i64,
    ) -> Result<T, AutotaskError> {
        let reply = self
            .request(
                Method::GET,
                &format!("V1.0/{entity}/{id}"),
                None,
                Repeat::Safe,
            )
            .await?;
        let one: wire::One<T> = decode(&Self::check(reply).map_err(|e| match e {
            AutotaskError::NotFound(_) => AutotaskError::NotFound(format!("{entity} {id}")),
            other => other,
        })?)?;
        one.item
            .ok_or_else(|| AutotaskError::NotFound(format!("{entity} {id}")))
    }

    /// Reads the tenant's thresholds and sets the pace of every process on the database to their
    /// share of what is left: the share, or less when the other integrations used more than theirs
    /// (what the tenant used less what our processes used in the window, from the database).
    pub async fn prepare_run(&self) -> Result<wire::ThresholdInformation, AutotaskError> {
        let reply = self
            .request(Method::GET, "V1.0/ThresholdInformation", None, Repeat::Safe)
            .await?;
        let t: wire::ThresholdInformation = decode(&Self::check(reply)?)?;
        let budget = t
            .external_request_threshold
            .unwrap_or(i64::from(self.inner.cfg.hourly_budget));
        let used = t.current_timeframe_request_count.unwrap_or(0);
        let ours = self
            .inner
            .store
            .budget_used(&self.budget(), self.window(), self.inner.clock.now())
            .await? as i64;
        let others = (used - ours).max(0);
        let share = (budget as f64 * self.inner.cfg.budget_share).floor() as i64;
        // Never take the tenant past its budget, even when the others used more than their half.
        let limit = share.min(budget - others).max(1) as u64;
        self.inner.limit.store(limit, Ordering::Relaxed);
        tracing::info!(
            budget,
            used,
            ours,
            limit,
            "Autotask pacing set for this run"
        );
        Ok(t)
    }

    /// The most requests every process on the database together sends in a budget window.
    pub async fn pace_limit(&self) -> usize {
        self.inner.limit.load(Ordering::Relaxed) as usize
    }
}

fn parse_base(u: &str) -> Result<url::Url, AutotaskError> {
    let mut s = u.trim().to_string();
    if !s.ends_with('/') {
        s.push('/');
    }
    url::Url::parse(&s).map_err(|e| AutotaskError::Decode(format!("zone URL {u:?}: {e}")))
}

fn endpoint_of(path_or_url: &str) -> String {
    let p = path_or_url.split("V1.0/").nth(1).unwrap_or(path_or_url);
    p.split(['/', '?']).next().unwrap_or(p).to_ascii_lowercase()
}

fn is_thread_threshold(body: &str) -> bool {
    body.to_ascii_lowercase().contains("thread threshold")
}

pub(super) fn decode<T: DeserializeOwned>(body: &str) -> Result<T, AutotaskError> {
    serde_json::from_str(body)
        .map_err(|e| AutotaskError::Decode(format!("{e}: {}", truncate(body))))
}

/// A request that got no answer: counted, then [`transport`].
fn counted_transport(e: reqwest::Error) -> AutotaskError {
    stats::unanswered(API, e.is_timeout());
    transport(e)
}

fn transport(e: reqwest::Error) -> AutotaskError {
    AutotaskError::Transport(if e.is_timeout() {
        "timed out".into()
    } else {
        e.without_url().to_string()
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(500).collect()
}
