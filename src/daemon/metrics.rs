//! Counters for `/metrics` (Prometheus text exposition format) and `/healthz`, on a loopback
//! address (`metrics.listen`, off by default).

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::pipeline::PushReport;

/// Label pairs of one series, escaped by the encoder.
type Labels = Vec<(String, String)>;

/// The daemon's counters, registered once and rendered by the official client library (names
/// end in `_total` for counters; label values are escaped). The `Counter` and `Gauge` handles
/// share their values with the registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    runs: Counter,
    run_failures: Counter,
    pushed_items: Family<Labels, Counter>,
    push_failures: Counter,
    rate_limit_waits: Counter,
    outbox_depth: Gauge,
    cdr_files: Counter,
    cdr_files_failed: Counter,
    last_success: Family<Labels, Gauge>,
    outbox_actions: Family<Labels, Gauge>,
    oldest_failed_age: Gauge,
    xero_access_expiry: Gauge,
    xero_refresh_expiry: Gauge,
    xero_grant_usable: Gauge,
    budget_used: Family<Labels, Gauge>,
    budget_limit: Family<Labels, Gauge>,
}

/// How long Xero keeps a refresh token usable after it was issued.
const XERO_REFRESH_TOKEN_DAYS: i64 = 60;

fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_string(), value.to_string())]
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            runs: Counter::default(),
            run_failures: Counter::default(),
            pushed_items: Family::default(),
            push_failures: Counter::default(),
            rate_limit_waits: Counter::default(),
            outbox_depth: Gauge::default(),
            cdr_files: Counter::default(),
            cdr_files_failed: Counter::default(),
            last_success: Family::default(),
            outbox_actions: Family::default(),
            oldest_failed_age: Gauge::default(),
            xero_access_expiry: Gauge::default(),
            xero_refresh_expiry: Gauge::default(),
            xero_grant_usable: Gauge::default(),
            budget_used: Family::default(),
            budget_limit: Family::default(),
            registry: Registry::default(),
        };
        // The library appends `_total` to counters and a full stop to the help.
        registry.register("rebill_runs", "Billing runs started", m.runs.clone());
        registry.register(
            "rebill_run_failures",
            "Billing runs that failed",
            m.run_failures.clone(),
        );
        registry.register(
            "rebill_push_failures",
            "Remote actions that failed",
            m.push_failures.clone(),
        );
        registry.register(
            "rebill_rate_limit_waits",
            "Remote actions parked by a rate limit or budget",
            m.rate_limit_waits.clone(),
        );
        registry.register(
            "rebill_cdr_files",
            "CDR files imported from the spool",
            m.cdr_files.clone(),
        );
        registry.register(
            "rebill_cdr_files_failed",
            "CDR files of the spool moved to failed/: refused whole, or too many rejected rows",
            m.cdr_files_failed.clone(),
        );
        // Both targets are shown from the start, at 0.
        for target in ["xero", "autotask"] {
            drop(m.pushed_items.get_or_create(&label("target", target)));
        }
        registry.register(
            "rebill_pushed_items",
            "Remote actions completed, by target",
            m.pushed_items.clone(),
        );
        registry.register(
            "rebill_outbox_depth",
            "Remote actions not yet done",
            m.outbox_depth.clone(),
        );
        registry.register(
            "rebill_last_successful_run_timestamp_seconds",
            "When each period's run last succeeded",
            m.last_success.clone(),
        );
        registry.register(
            "rebill_outbox_actions",
            "Remote actions not yet done, by system and state (pending: due now; parked: waiting for a rate limit, budget or back-off; in_flight; failed: waits for ops)",
            m.outbox_actions.clone(),
        );
        registry.register(
            "rebill_oldest_failed_action_age_seconds",
            "How long the oldest failed remote action has stood failed (0: none)",
            m.oldest_failed_age.clone(),
        );
        registry.register(
            "rebill_xero_access_token_expiry_timestamp_seconds",
            "When the stored Xero access token expires (0: none; it is renewed on demand)",
            m.xero_access_expiry.clone(),
        );
        registry.register(
            "rebill_xero_refresh_token_expiry_timestamp_seconds",
            "When the stored Xero refresh token expires unless used (60 days after it was issued; 0: none)",
            m.xero_refresh_expiry.clone(),
        );
        registry.register(
            "rebill_xero_grant_usable",
            "1 while a Xero grant is stored that can get a token (client credentials, or a refresh token); 0 after a revoked grant: run `rebilld xero connect`",
            m.xero_grant_usable.clone(),
        );
        // Every remote request, counted where the clients send it (`http::stats`).
        let remote = crate::http::stats::stats();
        registry.register(
            "rebill_remote_requests",
            "Requests sent to Xero and Autotask by this process, by API and HTTP status (timeout, transport: no answer)",
            remote.requests.clone(),
        );
        registry.register(
            "rebill_remote_errors",
            "Requests to Xero and Autotask answered 4xx or 5xx, or not answered, by API and status",
            remote.errors.clone(),
        );
        registry.register(
            "rebill_remote_retries",
            "Requests to Xero and Autotask tried again (a 429, a 5xx, a timeout), by API",
            remote.retries.clone(),
        );
        registry.register(
            "rebill_remote_rate_limit_waits",
            "Requests that waited for their turn under a remote's rate limit, or were parked for a long wait, by API",
            remote.rate_limit_waits.clone(),
        );
        registry.register(
            "rebill_remote_rate_limit_wait_seconds",
            "Seconds requests waited for their turn under a remote's rate limit, by API",
            remote.rate_limit_wait_seconds.clone(),
        );
        for api in ["xero", "autotask"] {
            drop(m.budget_used.get_or_create(&label("api", api)));
            drop(m.budget_limit.get_or_create(&label("api", api)));
        }
        registry.register(
            "rebill_remote_budget_used",
            "Requests counted in a remote's budget by every process on the database: Xero's day (rolling 24 h), Autotask's hour (autotask.budget_window_secs)",
            m.budget_used.clone(),
        );
        registry.register(
            "rebill_remote_budget_limit",
            "The most requests of that budget: xero.requests_per_day, Autotask's share of the tenant's hourly budget",
            m.budget_limit.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    pub fn record_push(&self, r: &PushReport) {
        let xero =
            r.xero_invoices_created.len() + r.xero_invoices_found_again.len() + r.emailed.len();
        self.pushed_items
            .get_or_create(&label("target", "xero"))
            .inc_by(xero as u64);
        self.pushed_items
            .get_or_create(&label("target", "autotask"))
            .inc_by(r.autotask_charges as u64);
        self.push_failures.inc_by(r.failed.len() as u64);
        self.rate_limit_waits.inc_by(r.parked.len() as u64);
    }

    pub fn record_run(&self, period: &str, ok: bool, at: i64) {
        self.runs.inc();
        if ok {
            self.last_success
                .get_or_create(&label("period", period))
                .set(at);
        } else {
            self.run_failures.inc();
        }
    }

    pub fn record_cdr_files(&self, n: usize) {
        self.cdr_files.inc_by(n as u64);
    }

    /// CDR files of the spool moved to failed/ (refused whole, or too many rejected rows).
    pub fn record_cdr_files_failed(&self, n: usize) {
        self.cdr_files_failed.inc_by(n as u64);
    }

    pub fn set_outbox_depth(&self, n: usize) {
        self.outbox_depth.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Reads what survives a restart from the database: each period's last successful run, the
    /// open outbox by system and state, the age of the oldest failure. Returns the outbox health
    /// read (for `/healthz`); an error means the database did not answer.
    pub async fn refresh(
        &self,
        store: &crate::store::Store,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::store::OutboxHealth, crate::store::StoreError> {
        let health = store.outbox_health(now).await?;
        for system in crate::domain::RemoteSystem::ALL {
            for state in crate::store::OUTBOX_STATES {
                let n = health
                    .counts
                    .iter()
                    .find(|(s, st, _)| s == system && *st == state)
                    .map_or(0, |(_, _, n)| *n);
                let labels = vec![
                    ("system".to_string(), system.to_string()),
                    ("state".to_string(), state.to_string()),
                ];
                self.outbox_actions.get_or_create(&labels).set(n);
            }
        }
        let total: i64 = health.counts.iter().map(|(_, _, n)| n).sum();
        self.outbox_depth.set(total);
        self.oldest_failed_age.set(
            health
                .oldest_failed
                .map_or(0, |t| (now - t).num_seconds().max(0)),
        );
        let token = store.xero_token_times().await?;
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or(0, |t| t.timestamp());
        self.xero_access_expiry
            .set(ts(token.as_ref().and_then(|t| t.access_expires_at)));
        self.xero_refresh_expiry
            .set(ts(token.as_ref().filter(|t| t.has_refresh_token).map(
                |t| t.updated_at + chrono::Duration::days(XERO_REFRESH_TOKEN_DAYS),
            )));
        self.xero_grant_usable
            .set(i64::from(token.as_ref().is_some_and(|t| {
                t.has_refresh_token
                    || t.grant_type == crate::xero::XeroGrant::CustomConnection.as_str()
            })));
        // The remote budgets every process on the database shares (`store::budget`).
        let mut used: std::collections::BTreeMap<String, (i64, i64)> = ["xero", "autotask"]
            .into_iter()
            .map(|api| (api.to_string(), (0, 0)))
            .collect();
        for b in store.budget_uses(now).await? {
            let api = b.budget.split(':').next().unwrap_or_default().to_string();
            let e = used.entry(api).or_default();
            e.0 += i64::try_from(b.used).unwrap_or(i64::MAX);
            e.1 = e.1.max(i64::try_from(b.max).unwrap_or(i64::MAX));
        }
        for (api, (n, max)) in used {
            self.budget_used.get_or_create(&label("api", &api)).set(n);
            self.budget_limit
                .get_or_create(&label("api", &api))
                .set(max);
        }
        for run in store.last_runs(24).await? {
            if run.status == crate::domain::RunStatus::Done
                && let Some(at) = run.finished_at
            {
                self.last_success
                    .get_or_create(&label("period", &run.period.to_string()))
                    .set(at.timestamp());
            }
        }
        Ok(health)
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut s, &self.registry);
        s
    }
}

/// What `/healthz` judges by: "now", and how long an action may stand failed.
#[derive(Clone)]
pub struct Health {
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
    pub failed_action_alert: chrono::Duration,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            clock: std::sync::Arc::new(crate::clock::SystemClock),
            failed_action_alert: chrono::Duration::seconds(3600),
        }
    }
}

/// `/healthz` and `/metrics`, judging health by the defaults (the system clock, one hour).
pub fn router(metrics: std::sync::Arc<Metrics>, store: crate::store::Store) -> axum::Router {
    router_with(metrics, store, Health::default())
}

/// `/healthz` and `/metrics`. `/metrics` reads the database on every scrape (what survives a
/// restart). `/healthz` answers 503 when the database does not answer, or when a remote action has
/// stood failed longer than `health.failed_action_alert` (`metrics.failed_action_alert_secs`).
pub fn router_with(
    metrics: std::sync::Arc<Metrics>,
    store: crate::store::Store,
    health: Health,
) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    let (m, scrape_store, scrape_clock) = (metrics.clone(), store.clone(), health.clock.clone());
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (m, store, clock) = (m.clone(), scrape_store.clone(), scrape_clock.clone());
                async move {
                    if let Err(e) = m.refresh(&store, clock.now()).await {
                        tracing::warn!(error = %e, "metrics: the database did not answer");
                    }
                    (
                        [("content-type", prometheus_text::CONTENT_TYPE)],
                        m.render(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let (store, health) = (store.clone(), health.clone());
                async move {
                    let now = health.clock.now();
                    match store.outbox_health(now).await {
                        Err(e) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("unhealthy: the database does not answer: {e}\n"),
                        ),
                        Ok(h) => match h.oldest_failed {
                            Some(t) if now - t > health.failed_action_alert => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!(
                                    "unhealthy: a remote action has stood failed since {t}; see `rebilld outbox list --failed`\n"
                                ),
                            ),
                            _ => (StatusCode::OK, "ok\n".to_string()),
                        },
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_sample_with_help_and_type() {
        let m = Metrics::default();
        m.record_run("2026-11", true, 1_790_000_000);
        let text = m.render();
        assert!(text.contains(
            "rebill_last_successful_run_timestamp_seconds{period=\"2026-11\"} 1790000000"
        ));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has a TYPE line"
            );
        }
    }

    #[test]
    fn a_label_value_with_a_quote_a_backslash_and_a_newline_is_escaped() {
        let m = Metrics::default();
        m.record_run("2026-11\"} evil 1\n\\x", true, 5);
        let text = m.render();
        assert!(
            text.contains(
                r#"rebill_last_successful_run_timestamp_seconds{period="2026-11\"} evil 1\n\\x"} 5"#
            ),
            "{text}"
        );
        // The newline did not end the sample early: no line starts with what followed it.
        assert!(!text.lines().any(|l| l.starts_with('\\')), "{text}");
    }

    #[test]
    fn counters_keep_their_names_and_start_at_zero() {
        let m = Metrics::default();
        let text = m.render();
        for line in [
            "rebill_runs_total 0",
            "rebill_run_failures_total 0",
            "rebill_push_failures_total 0",
            "rebill_rate_limit_waits_total 0",
            "rebill_cdr_files_total 0",
            "rebill_pushed_items_total{target=\"xero\"} 0",
            "rebill_pushed_items_total{target=\"autotask\"} 0",
            "rebill_outbox_depth 0",
            "# HELP rebill_runs_total Billing runs started.",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        m.record_run("2026-11", false, 0);
        m.record_cdr_files(2);
        assert!(m.render().lines().any(|l| l == "rebill_runs_total 1"));
        assert!(
            m.render()
                .lines()
                .any(|l| l == "rebill_run_failures_total 1")
        );
        assert!(m.render().lines().any(|l| l == "rebill_cdr_files_total 2"));
    }
}
