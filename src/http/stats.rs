//! What every remote request came to, counted where the clients send it (this module's callers:
//! `xero::client`, `autotask::client`, the retry loop and the pace), so that no request escapes
//! the count: requests by API and HTTP status (or `timeout` / `transport` when none came back),
//! errors (4xx, 5xx, no answer), retries, and waits for a rate limit (how many, and the seconds
//! waited on the client's clock). Process-wide, as a Prometheus client's default registry is:
//! the daemon registers these families in its `/metrics` (`daemon::metrics`).

use std::sync::LazyLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Label pairs of one series.
pub type Labels = Vec<(String, String)>;

/// The counters; clones of the families share their values (the registry holds clones).
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub requests: Family<Labels, Counter>,
    pub errors: Family<Labels, Counter>,
    pub retries: Family<Labels, Counter>,
    pub rate_limit_waits: Family<Labels, Counter>,
    pub rate_limit_wait_seconds: Family<Labels, Counter<f64, AtomicU64>>,
}

static STATS: LazyLock<RemoteStats> = LazyLock::new(|| {
    let s = RemoteStats::default();
    // Both APIs are shown from the start, at 0, so that a rate is defined before the first call.
    for api in ["xero", "autotask"] {
        drop(s.retries.get_or_create(&api_label(api)));
        drop(s.rate_limit_waits.get_or_create(&api_label(api)));
        drop(s.rate_limit_wait_seconds.get_or_create(&api_label(api)));
    }
    s
});

/// This process's counters.
pub fn stats() -> &'static RemoteStats {
    &STATS
}

fn api_label(api: &str) -> Labels {
    vec![("api".to_string(), api.to_string())]
}

fn status_labels(api: &str, status: &str) -> Labels {
    vec![
        ("api".to_string(), api.to_string()),
        ("status".to_string(), status.to_string()),
    ]
}

/// A request of `api` was answered with `status`.
pub fn answered(api: &str, status: u16) {
    let labels = status_labels(api, &status.to_string());
    STATS.requests.get_or_create(&labels).inc();
    if status >= 400 {
        STATS.errors.get_or_create(&labels).inc();
    }
}

/// A request of `api` got no answer: it timed out, or the connection failed.
pub fn unanswered(api: &str, timed_out: bool) {
    let labels = status_labels(api, if timed_out { "timeout" } else { "transport" });
    STATS.requests.get_or_create(&labels).inc();
    STATS.errors.get_or_create(&labels).inc();
}

/// A request of `api` is tried again.
pub fn retried(api: &str) {
    STATS.retries.get_or_create(&api_label(api)).inc();
}

/// A request of `api` waited `secs` (on its clock) for its turn, or was refused a long wait
/// (`secs` 0: its work is parked).
pub fn rate_limit_wait(api: &str, secs: f64) {
    STATS.rate_limit_waits.get_or_create(&api_label(api)).inc();
    STATS
        .rate_limit_wait_seconds
        .get_or_create(&api_label(api))
        .inc_by(secs);
}

/// The requests of `api` answered with `status` so far (tests and the bench read it).
pub fn requests_with(api: &str, status: &str) -> u64 {
    STATS
        .requests
        .get_or_create(&status_labels(api, status))
        .get()
}
