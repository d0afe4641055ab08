//! One retry loop for both API clients, on backon's `Retryable`: exponential back-off with jitter
//! from `base` up to a minute, at most `max_times` retries, and never sooner than the server's
//! `Retry-After`. Each client decides per attempt what is worth retrying ([`Failure::Transient`])
//! and what is not ([`Failure::Final`]); this module only waits and counts.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable, Sleeper};

/// How one attempt failed.
#[derive(Debug)]
pub enum Failure<E> {
    /// Not worth repeating (a refusal, a create that must not be sent twice): returned at once.
    Final(E),
    /// Worth repeating after the back-off, and not before `retry_after` when the server gave one.
    /// `reason` starts the log line of the retry ("Xero server error"). When the retries are
    /// spent, `error` is what the caller gets.
    Transient {
        error: E,
        retry_after: Option<Duration>,
        reason: &'static str,
    },
}

impl<E> Failure<E> {
    /// Transient, with no `Retry-After`.
    pub fn transient(error: E, reason: &'static str) -> Self {
        Failure::Transient {
            error,
            retry_after: None,
            reason,
        }
    }

    fn into_error(self) -> E {
        match self {
            Failure::Final(e) | Failure::Transient { error: e, .. } => e,
        }
    }
}

/// The back-off of one client: `base` doubling (with jitter) up to a minute, `max_times` retries.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    pub base: Duration,
    pub max_times: usize,
    /// The API whose retries are counted (`super::stats`), when given.
    pub api: Option<&'static str>,
}

impl Retries {
    pub fn new(base_ms: u64, max_times: usize) -> Self {
        Retries {
            base: Duration::from_millis(base_ms),
            max_times,
            api: None,
        }
    }

    /// The same back-off, its retries counted as `api`'s.
    pub fn counted_as(self, api: &'static str) -> Self {
        Retries {
            api: Some(api),
            ..self
        }
    }

    fn backoff(self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.base)
            .with_max_delay(Duration::from_secs(60))
            .with_max_times(self.max_times)
            .with_jitter()
    }
}

/// Runs `attempt` until it succeeds, fails finally, or the retries are spent; sleeps on tokio's
/// timer. Each retry is logged with its reason and the error.
pub async fn retrying<T, E, F, Fut>(retries: Retries, attempt: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
{
    retrying_with(retries, tokio::time::sleep, attempt).await
}

/// [`retrying`] with the sleeper given (the tests record the waits instead of sleeping).
pub async fn retrying_with<T, E, F, Fut, S>(
    retries: Retries,
    sleeper: S,
    attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure<E>>>,
    S: Sleeper,
{
    attempt
        .retry(retries.backoff())
        .sleep(sleeper)
        .when(|f| matches!(f, Failure::Transient { .. }))
        .adjust(|f, next| match (f, next) {
            (
                Failure::Transient {
                    retry_after: Some(after),
                    ..
                },
                Some(d),
            ) => Some(d.max(*after)),
            (_, d) => d,
        })
        .notify(|f, wait| {
            if let Some(api) = retries.api {
                super::stats::retried(api);
            }
            if let Failure::Transient { error, reason, .. } = f {
                tracing::warn!(error = %error, ?wait, "{reason}; retrying");
            }
        })
        .await
        .map_err(Failure::into_error)
}

/// The `Retry-After` of a response, when it is a number of seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    /// A GET classified as the clients do: 429 and 5xx are transient, other refusals final.
    async fn get(url: &str) -> Result<u16, Failure<String>> {
        let resp = reqwest::get(url)
            .await
            .map_err(|e| Failure::transient(e.to_string(), "test request failed"))?;
        let status = resp.status();
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Failure::Transient {
                error: format!("status {status}"),
                retry_after: retry_after(resp.headers()),
                reason: "test server refused",
            });
        }
        if !status.is_success() {
            return Err(Failure::Final(format!("status {status}")));
        }
        Ok(status.as_u16())
    }

    fn recording() -> (Arc<Mutex<Vec<Duration>>>, impl Sleeper) {
        let waits = Arc::new(Mutex::new(Vec::new()));
        let w = waits.clone();
        let sleeper = move |d: Duration| {
            w.lock().unwrap().push(d);
            std::future::ready(())
        };
        (waits, sleeper)
    }

    #[tokio::test]
    async fn a_429_with_retry_after_1_waits_at_least_a_second_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .expect(1)
            .mount(&server)
            .await;
        let (waits, sleeper) = recording();
        let url = server.uri();
        let got = retrying_with(Retries::new(10, 3), sleeper, || get(&url)).await;
        assert_eq!(got, Ok(200));
        let waits = waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 1, "one wait between the two attempts");
        assert!(
            waits[0] >= Duration::from_secs(1),
            "the wait {:?} honours Retry-After: 1 over a 10 ms back-off",
            waits[0]
        );
    }

    #[tokio::test]
    async fn a_400_is_not_retried() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(400))
            .expect(1)
            .mount(&server)
            .await;
        let (waits, sleeper) = recording();
        let url = server.uri();
        let got = retrying_with(Retries::new(10, 3), sleeper, || get(&url)).await;
        assert_eq!(got, Err("status 400 Bad Request".to_string()));
        assert!(waits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_persistent_500_is_tried_max_times_plus_one_then_its_error_returned() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(500))
            .expect(3)
            .mount(&server)
            .await;
        let (waits, sleeper) = recording();
        let url = server.uri();
        let got = retrying_with(Retries::new(10, 2), sleeper, || get(&url)).await;
        assert_eq!(got, Err("status 500 Internal Server Error".to_string()));
        let waits = waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 2);
        assert!(
            waits.iter().all(|w| *w < Duration::from_secs(1)),
            "{waits:?}"
        );
    }
}
