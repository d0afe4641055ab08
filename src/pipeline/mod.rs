//! A billing run, as a pipeline whose every step is persisted before the next (DESIGN §2):
//!
//! 1. **snapshot** (`snapshot.rs`): read customers, assignments, items and rated calls;
//! 2. **compute** (`domain::billing`, pure): invoices with lines;
//! 3. **record** (`record.rs`): in one transaction per invoice, the local invoice, its lines and one
//!    outbox entry per remote action;
//! 4. **push** (`push/`): drain the outbox through the Xero and Autotask clients, writing each
//!    outcome to the ledger in the same transaction that marks the entry done.
//!
//! `resync.rs` recomputes a period and plans (or, without `--dry-run`, applies) the changes;
//! `reconcile.rs` compares the ledger with what Xero and Autotask hold, read in bulk by
//! `remote_view.rs`; `duplicates.rs` finds second documents and emails and removes them. Sits on `store`, `xero`,
//! `autotask` and `domain`; `cli` and `daemon` call it.

mod drafts;
mod duplicates;
pub mod export;
pub mod invoice_actions;
mod lease;
mod push;
mod reconcile;
mod record;
mod remote_view;
pub mod resync;
mod snapshot;
mod update;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use duplicates::DuplicateDoc;
pub use push::PushReport;
pub use reconcile::{
    Difference, DifferenceKind, EmailCheck, ReconcileOptions, ReconcileReport, Skipped, reconcile,
    reconcile_with,
};
pub use resync::{PlanKind, PlannedAction, ResyncOutcome, ResyncPlan, ResyncRequest, resync};

use crate::autotask::AutotaskClient;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::{CustomerId, Money, Period};
use crate::store::billing::{StoredInvoice, xero_tax};
use crate::store::{Store, StoreError};
use crate::xero::XeroClient;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Xero: {0}")]
    Xero(#[from] crate::xero::XeroError),
    #[error("Autotask: {0}")]
    Autotask(#[from] crate::autotask::AutotaskError),
    #[error("{0}")]
    Refused(String),
    /// The invoice cannot be sent as it stands (e.g. no Xero contact): a permanent failure of its
    /// action until ops fix it and resync.
    #[error("{0}")]
    NotSendable(String),
    #[error("period {period} is being billed or resynced by another process; try again later")]
    PeriodHeld { period: Period },
}

/// Everything a run needs: the store, the configuration and the remote clients (absent when the
/// integration is not configured: its entries wait in the outbox).
#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub config: Config,
    pub xero: Option<XeroClient>,
    pub autotask: Option<AutotaskClient>,
    /// Names this process in outbox claims and period leases.
    pub owner: String,
    /// Set on shutdown: the push stops claiming new work; the action in flight finishes.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// "Now" for every decision of a run (due entries, retries, grace, document dates).
    pub clock: std::sync::Arc<dyn Clock>,
}

/// What one billing run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunReport {
    pub period: String,
    pub invoices_created: Vec<String>,
    pub invoices_already_recorded: usize,
    pub skipped: Vec<(CustomerId, String)>,
    /// Calls of the month billed in arrears that have no price (no plan or no rate for their
    /// type): not billed until the plan is fixed and `cdr rerate` prices them.
    pub unrated_calls: i64,
    pub push: PushReport,
}

impl Pipeline {
    pub fn new(
        store: Store,
        config: Config,
        xero: Option<XeroClient>,
        autotask: Option<AutotaskClient>,
    ) -> Self {
        let owner = format!(
            "{}:{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
            std::process::id()
        );
        Pipeline {
            store,
            config,
            xero,
            autotask,
            owner,
            stop: Default::default(),
            clock: std::sync::Arc::new(SystemClock),
        }
    }

    /// The same pipeline on another clock (tests pin the time with `clock::TestClock`).
    pub fn with_clock(self, clock: std::sync::Arc<dyn Clock>) -> Self {
        Pipeline { clock, ..self }
    }

    /// The pipeline clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// True once shutdown began: no new remote work is started.
    pub fn stopping(&self) -> bool {
        self.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Builds the clients the configuration enables.
    pub async fn from_config(store: Store, config: Config) -> Result<Self, PipelineError> {
        let xero = if config.xero.is_configured() {
            let installation = store.installation_id().await?;
            Some(
                XeroClient::new(&config.xero, store.clone())
                    .await?
                    .with_installation(&installation),
            )
        } else {
            None
        };
        let autotask = if config.autotask.is_configured() {
            Some(AutotaskClient::new(&config.autotask, store.clone()).await?)
        } else {
            None
        };
        Ok(Pipeline::new(store, config, xero, autotask))
    }

    /// A billing run of `period`, as the schedule and `rebilld run` do it: under the period lease
    /// (`PeriodHeld` at once when another process has it), recorded in `billing_runs`. Computes and
    /// records the period (idempotent: invoices already recorded are kept), then pushes what is
    /// due. Running a period again only pushes what is still due.
    pub async fn run_period(&self, period: Period) -> Result<RunReport, PipelineError> {
        lease::with_period_lease(self, period, |p| async move {
            p.store.mark_period_running(period, p.now()).await?;
            match p.bill_period(period).await {
                Ok(r) => {
                    p.store.mark_period_done(period, p.now()).await?;
                    Ok(r)
                }
                Err(e) => {
                    p.store.mark_period_failed(period, &e.to_string()).await?;
                    Err(e)
                }
            }
        })
        .await
    }

    /// Snapshot, compute, record and push one period; the caller holds its lease.
    async fn bill_period(&self, period: Period) -> Result<RunReport, PipelineError> {
        let snapshot = snapshot::take(
            &self.store,
            period,
            self.config.business.tz(),
            self.config.invoices.catch_up_months,
            false,
        )
        .await?;
        let settings = record::settings(&self.config);
        let computed = crate::domain::billing::compute_invoices(&snapshot, period, &settings);
        let recorded = record::record(&self.store, &self.config, period, &computed).await?;
        crash_point("after_record");
        let push = self.drain(self.now()).await?;
        let (start, end) = period.previous().bounds(self.config.business.tz());
        let unrated_calls = self.store.unrated_calls(start, end).await?;
        if unrated_calls > 0 {
            tracing::warn!(%period, unrated_calls, "calls without a price are not billed: fix the rate plan, then `rebilld cdr rerate`");
        }
        Ok(RunReport {
            period: period.to_string(),
            invoices_created: recorded.created,
            invoices_already_recorded: recorded.already_recorded,
            skipped: self.store.skips(period).await?,
            unrated_calls,
            push,
        })
    }

    /// Pushes every outbox entry that is due at `now`.
    pub async fn drain(&self, now: DateTime<Utc>) -> Result<PushReport, PipelineError> {
        push::drain(self, now).await
    }

    /// A local invoice's total with tax as Xero computes it from the lines sent (each line taxed
    /// at `xero.tax_rates` and rounded); `None` when a line's tax type has no configured rate.
    pub async fn total_with_tax(&self, inv: &StoredInvoice) -> Result<Option<Money>, StoreError> {
        let lines = self.store.invoice_lines(inv.id).await?;
        Ok(xero_tax(&lines, &self.config.xero.tax_rates).map(|t| inv.total() + t))
    }
}

pub use export::export_period;

pub use crate::crash::crash_point;
