//! Counters for `/metrics` (Prometheus text exposition format) and `/healthz`, on a loopback
//! address (`metrics.listen`, off by default).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::pipeline::PushReport;

#[derive(Debug, Default)]
pub struct Metrics {
    pub runs_total: AtomicU64,
    pub run_failures_total: AtomicU64,
    pub pushed_xero_total: AtomicU64,
    pub pushed_autotask_total: AtomicU64,
    pub push_failures_total: AtomicU64,
    pub rate_limit_waits_total: AtomicU64,
    pub outbox_depth: AtomicI64,
    pub cdr_files_total: AtomicU64,
    pub cdr_files_failed_total: AtomicU64,
    last_success: Mutex<BTreeMap<String, i64>>,
}

impl Metrics {
    pub fn record_push(&self, r: &PushReport) {
        let xero =
            r.xero_invoices_created.len() + r.xero_invoices_found_again.len() + r.emailed.len();
        self.pushed_xero_total
            .fetch_add(xero as u64, Ordering::Relaxed);
        self.pushed_autotask_total
            .fetch_add(r.autotask_charges as u64, Ordering::Relaxed);
        self.push_failures_total
            .fetch_add(r.failed.len() as u64, Ordering::Relaxed);
        self.rate_limit_waits_total
            .fetch_add(r.parked.len() as u64, Ordering::Relaxed);
    }

    /// CDR files of the spool moved to failed/ (refused whole, or too many rejected rows).
    pub fn record_cdr_files_failed(&self, n: u64) {
        self.cdr_files_failed_total.fetch_add(n, Ordering::Relaxed);
    }

    pub fn record_run(&self, period: &str, ok: bool, at: i64) {
        self.runs_total.fetch_add(1, Ordering::Relaxed);
        if ok {
            if let Ok(mut m) = self.last_success.lock() {
                m.insert(period.to_string(), at);
            }
        } else {
            self.run_failures_total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "rebill_runs_total",
            "Billing runs started.",
            self.runs_total.load(Ordering::Relaxed),
        );
        counter(
            "rebill_run_failures_total",
            "Billing runs that failed.",
            self.run_failures_total.load(Ordering::Relaxed),
        );
        counter(
            "rebill_push_failures_total",
            "Remote actions that failed.",
            self.push_failures_total.load(Ordering::Relaxed),
        );
        counter(
            "rebill_rate_limit_waits_total",
            "Remote actions parked by a rate limit or budget.",
            self.rate_limit_waits_total.load(Ordering::Relaxed),
        );
        counter(
            "rebill_cdr_files_total",
            "CDR files imported from the spool.",
            self.cdr_files_total.load(Ordering::Relaxed),
        );
        counter(
            "rebill_cdr_files_failed_total",
            "CDR files of the spool moved to failed/: refused whole, or too many rejected rows.",
            self.cdr_files_failed_total.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP rebill_pushed_items_total Remote actions completed, by target.\n# TYPE rebill_pushed_items_total counter"
        );
        let _ = writeln!(
            s,
            "rebill_pushed_items_total{{target=\"xero\"}} {}",
            self.pushed_xero_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "rebill_pushed_items_total{{target=\"autotask\"}} {}",
            self.pushed_autotask_total.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP rebill_outbox_depth Remote actions not yet done.\n# TYPE rebill_outbox_depth gauge"
        );
        let _ = writeln!(
            s,
            "rebill_outbox_depth {}",
            self.outbox_depth.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP rebill_last_successful_run_timestamp_seconds When each period's run last succeeded.\n# TYPE rebill_last_successful_run_timestamp_seconds gauge"
        );
        if let Ok(m) = self.last_success.lock() {
            for (p, t) in m.iter() {
                let _ = writeln!(
                    s,
                    "rebill_last_successful_run_timestamp_seconds{{period=\"{p}\"}} {t}"
                );
            }
        }
        s
    }
}

/// `/healthz` and `/metrics`.
pub fn router(metrics: std::sync::Arc<Metrics>, store: crate::store::Store) -> axum::Router {
    use axum::routing::get;
    let m = metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let (m, store) = (m.clone(), store.clone());
                async move {
                    if let Ok(open) = store.outbox(None).await {
                        m.outbox_depth.store(open.len() as i64, Ordering::Relaxed);
                    }
                    ([("content-type", "text/plain; version=0.0.4")], m.render())
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
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
}
