//! Requests: the three auth headers on every call (and only to the zone's host), the zone looked
//! up once and cached in the database, per-endpoint concurrency (the tenant's threads, shared by
//! every process on the database), pacing, and retries of throttling,
//! timeouts and 5xx only where the request is safe to repeat.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::query::Filter;
use super::wire::{self, Page};
use super::{AutotaskConfig, AutotaskError};
use crate::clock::{Clock, SystemClock};
use crate::http::pace::{ClockSleeper, Pace, Rate};
use crate::http::retry::retrying_with;
use crate::http::{Failure, Retries, retry_after};
use crate::store::Store;

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
    /// This client's share of the tenant's hourly budget, paced on `clock`.
    pub(super) pacer: Pace,
    pub(super) clock: Arc<dyn Clock>,
    /// Names this client in the tenant's thread slots.
    me: String,
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
        let limit = (f64::from(cfg.hourly_budget) * cfg.budget_share).floor() as usize;
        Ok(AutotaskClient {
            inner: Arc::new(Inner {
                http,
                cfg: cfg.clone(),
                store,
                zone: Mutex::new(None),
                endpoints: Mutex::new(HashMap::new()),
                pacer: Pace::new(
                    &[Rate::new(
                        limit,
                        Duration::from_secs(cfg.budget_window_secs),
                    )],
                    Duration::from_secs(cfg.max_budget_wait_secs),
                    clock.clone(),
                ),
                clock,
                me: format!("{}:{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            }),
        })
    }

    fn username(&self) -> &str {
        self.inner.cfg.username.as_deref().unwrap_or_default()
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
            .map_err(transport)?;
        let status = resp.status();
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
        let retries = Retries::new(self.inner.cfg.retry_base_ms, self.inner.cfg.max_retries);
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
            Repeat::Safe => Failure::transient(transport(e), "Autotask request failed"),
            Repeat::Never => Failure::Final(transport(e)),
        };
        // One of the tenant's threads for this endpoint, shared with every process on the
        // database, for the time of the request.
        let thread = self.tenant_thread(endpoint).await.map_err(Failure::Final)?;
        let sent = async {
            // Paced last, right before the request leaves, so the pace is what Autotask sees;
            // held until the answer is in.
            let _paced = match self.inner.pacer.acquire().await {
                Ok(p) => p,
                Err(wait) => {
                    return Err(Failure::Final(AutotaskError::BudgetSpent {
                        retry_after: wait,
                    }));
                }
            };
            let resp = req.send().await.map_err(unclear)?;
            let status = resp.status();
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

    /// Reads the tenant's thresholds and sets this daemon's pace to its share of what is left.
    pub async fn prepare_run(&self) -> Result<wire::ThresholdInformation, AutotaskError> {
        let reply = self
            .request(Method::GET, "V1.0/ThresholdInformation", None, Repeat::Safe)
            .await?;
        let t: wire::ThresholdInformation = decode(&Self::check(reply)?)?;
        let budget = t
            .external_request_threshold
            .unwrap_or(i64::from(self.inner.cfg.hourly_budget));
        let used = t.current_timeframe_request_count.unwrap_or(0);
        let share = (budget as f64 * self.inner.cfg.budget_share).floor() as i64;
        // Never take the tenant past its budget, even when the others used more than their half.
        let limit = share.min(budget - used).max(1) as usize;
        self.inner.pacer.set_max(0, limit);
        tracing::info!(budget, used, limit, "Autotask pacing set for this run");
        Ok(t)
    }

    pub async fn pace_limit(&self) -> usize {
        self.inner.pacer.max(0).unwrap_or(1)
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

/// How a 5xx reply is read, by its body (Autotask answers its validation errors with HTTP 500).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ServerError {
    /// Autotask's own words about the request (a product that does not exist, a contract that
    /// takes no charges, a duplicate, an invalid integration code): sending it again changes
    /// nothing, a person must fix something first. Permanent.
    Validation(Vec<String>),
    /// The server's trouble, not the request's: retried (and for a create, its outcome unknown:
    /// looked for by marker after `autotask.settle_secs`).
    Transient,
}

/// Words in an error message that say the server failed, not the request (matched in lower case).
const SERVER_FAULT_WORDS: [&str; 10] = [
    "unexpected error",
    "error id",
    "timeout",
    "timed out",
    "deadlock",
    "try again",
    "temporarily",
    "unavailable",
    "internal server error",
    "could not connect",
];

/// The rule for a 5xx reply. It is a validation error (permanent) only when the body is
/// Autotask's JSON `{"errors": [...]}` with at least one message and none of its messages speaks
/// of a server fault (`SERVER_FAULT_WORDS`: "An unexpected error has occurred … Error ID: 54634",
/// a timeout, a deadlock, "try again", "temporarily unavailable"). Everything else is transient:
/// an HTML error page (a proxy or the load balancer), an empty body, plain text, JSON in another
/// shape (ASP.NET's `{"Message": …}`), an empty `errors` list.
pub(super) fn classify_server_error(body: &str) -> ServerError {
    let words: Vec<String> = errors_of(body)
        .into_iter()
        .filter(|w| !w.trim().is_empty())
        .collect();
    let server_fault = |w: &String| {
        let w = w.to_lowercase();
        SERVER_FAULT_WORDS.iter().any(|f| w.contains(f))
    };
    if words.is_empty() || words.iter().any(server_fault) {
        ServerError::Transient
    } else {
        ServerError::Validation(words)
    }
}

pub(super) fn errors_of(body: &str) -> Vec<String> {
    serde_json::from_str::<wire::Errors>(body)
        .map(|e| e.errors)
        .unwrap_or_default()
}

pub(super) fn decode<T: DeserializeOwned>(body: &str) -> Result<T, AutotaskError> {
    serde_json::from_str(body)
        .map_err(|e| AutotaskError::Decode(format!("{e}: {}", truncate(body))))
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

#[cfg(test)]
mod tests {
    use super::{ServerError, classify_server_error};

    fn validation(body: &str) -> bool {
        matches!(classify_server_error(body), ServerError::Validation(_))
    }

    // Bodies from /work/shared/research/autotask/samples (public documentation and issues).
    #[test]
    fn autotasks_own_validation_words_on_a_500_are_permanent() {
        // error.create-duplicate.500.official-docs.json
        assert!(validation(
            r#"{"errors":["A ContactGroup already exists with Name [Test 1 Create of Contact Group x]. ContactGroup names must be unique."]}"#
        ));
        // error.integration-code-invalid.500.json
        assert!(validation(r#"{"errors":["IntegrationCode is invalid."]}"#));
        // error.zone-information-not-determined.500.json
        assert!(validation(
            r#"{"errors":["Zone information could not be determined"]}"#
        ));
        // The stand-in's and the fixtures' words for a charge Autotask refuses.
        assert!(validation(
            r#"{"errors":["Value for BillingCodeID (29682804) is not valid: the billing code is not a Material Cost Code."]}"#
        ));
        assert_eq!(
            classify_server_error(r#"{"errors":["Product 7 does not exist or is not active."]}"#),
            ServerError::Validation(vec!["Product 7 does not exist or is not active.".into()])
        );
    }

    #[test]
    fn a_500_that_speaks_of_a_server_fault_is_transient() {
        // error.unexpected-with-errorId.json
        assert_eq!(
            classify_server_error(
                r#"{"errors":["An unexpected error has occurred.  If the problem persists, please contact Autotask Support and reference Error ID: 54634.","If the problem persists, please contact Autotask Support and reference Error ID: 54634."],"errorId":54634}"#
            ),
            ServerError::Transient
        );
        assert_eq!(
            classify_server_error(
                r#"{"errors":["Transaction (Process ID 71) was deadlocked on lock resources with another process and has been chosen as the deadlock victim. Rerun the transaction."]}"#
            ),
            ServerError::Transient
        );
        assert_eq!(
            classify_server_error(r#"{"errors":["Execution Timeout Expired."]}"#),
            ServerError::Transient
        );
    }

    #[test]
    fn a_500_without_autotasks_error_words_is_transient() {
        for body in [
            "",
            "   ",
            "<!DOCTYPE html><html><head><title>500 - Internal server error.</title></head><body><h2>500 - Internal server error.</h2></body></html>",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
            "The service is unavailable.",
            // error.method-not-allowed.405.json's ASP.NET shape, on a 5xx
            r#"{"Message":"An error has occurred."}"#,
            r#"{"errors":[]}"#,
            r#"{"errors":[""]}"#,
        ] {
            assert_eq!(
                classify_server_error(body),
                ServerError::Transient,
                "{body:?}"
            );
        }
    }
}
