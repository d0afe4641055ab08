//! The daemon's loop. tokio-cron-scheduler only wakes it (every minute, in UTC); the schedule and
//! the `billing_runs` table decide what is due, so a daylight-saving change never shifts a run and
//! a period missed while the daemon was down is run on start, once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_cron_scheduler::{Job, JobScheduler};

use super::metrics::Metrics;
use super::schedule::Schedule;
use crate::config::Config;
use crate::domain::{Period, RunStatus};
use crate::pipeline::{Pipeline, PipelineError};
use crate::store::Store;

/// Runs every period that is due at the clock's time and not done yet, oldest first, each under its
/// lease (a period held by another daemon is left to it). Returns the periods this call ran.
pub async fn tick(
    p: &Pipeline,
    schedule: &Schedule,
    metrics: &Metrics,
) -> anyhow::Result<Vec<Period>> {
    let now = p.now();
    let runs = p.store.last_runs(1_000).await?;
    let done: Vec<Period> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .map(|r| r.period)
        .collect();
    let last_done = done.iter().max().copied();
    let mut ran = Vec::new();
    for period in schedule.due_periods(now, last_done, |q| done.contains(&q)) {
        if p.stopping() {
            break;
        }
        notify_status(&format!("running {period}"));
        match p.run_period(period).await {
            Ok(r) => {
                tracing::info!(%period, invoices = r.invoices_created.len(), "billing run done");
                // A run whose push had a refused action is not a success to alert on.
                let ok = r.push.failed.is_empty();
                if !ok {
                    tracing::warn!(%period, failed = r.push.failed.len(), "billing run done, but remote actions failed; see `rebilld outbox list --failed`");
                }
                metrics.record_run(&period.to_string(), ok, p.now().timestamp());
                metrics.record_push(&r.push);
                ran.push(period);
            }
            Err(PipelineError::PeriodHeld { .. }) => {
                tracing::info!(%period, "another daemon is running this period");
            }
            Err(e) => {
                tracing::error!(%period, error = %e, "billing run failed; it is retried on the next tick");
                metrics.record_run(&period.to_string(), false, 0);
            }
        }
    }
    Ok(ran)
}

fn notify_status(status: &str) {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(status)]);
}

/// On SQLite one daemon per database file: an exclusive lock on `<file>.daemon.lock`.
fn single_instance(config: &Config) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = config
        .database
        .url
        .strip_prefix("sqlite://")
        .or_else(|| config.database.url.strip_prefix("sqlite:"))
    else {
        return Ok(None);
    };
    let path = path.split('?').next().unwrap_or(path);
    let lock_path = PathBuf::from(format!("{path}.daemon.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(_) => anyhow::bail!(
            "another rebilld daemon is already running on {path} (lock {}); SQLite allows one daemon per database — use PostgreSQL for several",
            lock_path.display()
        ),
    }
}

/// `rebilld` with no command.
pub async fn run(config_path: Option<PathBuf>, config: Config, store: Store) -> anyhow::Result<()> {
    let _lock = single_instance(&config)?;
    let metrics = Arc::new(Metrics::default());
    let mut pipeline = Pipeline::from_config(store.clone(), config.clone()).await?;
    let mut schedule = schedule_of(&config).map_err(|e| anyhow::anyhow!("schedule: {e}"))?;
    if let Some(listen) = config.metrics.listen.as_deref().filter(|l| !l.is_empty()) {
        let addr = listen.parse()?;
        let (bound, _) = crate::http::serve(
            super::metrics::router_with(
                metrics.clone(),
                store.clone(),
                super::metrics::Health {
                    clock: pipeline.clock.clone(),
                    failed_action_alert: i64::try_from(config.metrics.failed_action_alert_secs)
                        .ok()
                        .and_then(chrono::Duration::try_seconds)
                        .unwrap_or(chrono::Duration::MAX),
                },
            ),
            addr,
        )
        .await?;
        tracing::info!(%bound, "metrics and health endpoint listening");
    }
    let wake = Arc::new(Notify::new());
    let scheduler = JobScheduler::new().await?;
    {
        let wake = wake.clone();
        scheduler
            .add(Job::new_async("0 * * * * *", move |_, _| {
                let wake = wake.clone();
                Box::pin(async move { wake.notify_one() })
            })?)
            .await?;
    }
    scheduler.start().await?;

    let heartbeat = Arc::new(AtomicI64::new(Utc::now().timestamp()));
    spawn_watchdog(heartbeat.clone());
    let stop = Arc::new(Notify::new());
    let reload = Arc::new(Notify::new());
    spawn_signals(
        pipeline.clone(),
        stop.clone(),
        reload.clone(),
        Duration::from_secs(config.schedule.shutdown_timeout_secs),
    );

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(next = %next_run_description(&config, Utc::now()), backend = store.backend(), "rebilld started");
    let mut outbox = tokio::time::interval(Duration::from_secs(config.schedule.outbox_every_secs));
    let mut spool = tokio::time::interval(Duration::from_secs(config.schedule.spool_every_secs));
    wake.notify_one(); // catch-up on start
    loop {
        heartbeat.store(Utc::now().timestamp(), Ordering::Relaxed);
        let idle = format!("idle, next run {}", next_run_not_billed(&pipeline).await);
        notify_status(&idle);
        tokio::select! {
            _ = stop.notified() => break,
            _ = reload.notified() => {
                match Config::load(config_path.as_deref()) {
                    Ok(new) => match (Pipeline::from_config(store.clone(), new.clone()).await, schedule_of(&new)) {
                        (Ok(p), Ok(s)) => {
                            pipeline = Pipeline { stop: pipeline.stop.clone(), ..p };
                            schedule = s;
                            tracing::info!("configuration reloaded");
                        }
                        (Err(e), _) => tracing::error!(error = %e, "configuration not reloaded; keeping the old one"),
                        (_, Err(e)) => tracing::error!(error = %e, "configuration not reloaded; keeping the old one"),
                    },
                    Err(e) => tracing::error!(error = %e, "configuration not reloaded; keeping the old one"),
                }
            }
            _ = wake.notified() => {
                if let Err(e) = tick(&pipeline, &schedule, &metrics).await {
                    tracing::error!(error = %e, "could not check for due runs");
                }
            }
            _ = outbox.tick() => {
                match pipeline.drain(pipeline.now()).await {
                    Ok(r) => {
                        metrics.record_push(&r);
                        let done = r.xero_invoices_created.len() + r.emailed.len() + r.autotask_charges + r.updated;
                        if done > 0 {
                            tracing::info!(done, failed = r.failed.len(), parked = r.parked.len(), "outbox pushed");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "pushing the outbox failed; retrying later"),
                }
            }
            _ = spool.tick() => {
                let opts = crate::cdr::ImportOptions { tz: pipeline.config.business.tz(), country: pipeline.config.cdr.country, batch_rows: pipeline.config.cdr.batch_rows, progress: false };
                match crate::cdr::import_spool_once(&store, &pipeline.config.cdr, &opts, pipeline.now().into()).await {
                    Ok(r) => {
                        let failed = r.iter().filter(|r| r.failed.is_some()).count();
                        metrics.record_cdr_files(r.len() - failed);
                        metrics.record_cdr_files_failed(failed);
                    }
                    Err(e) => tracing::error!(error = %e, "importing the CDR spool failed"),
                }
            }
        }
        if pipeline.stopping() {
            break;
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("rebilld stopped cleanly");
    let mut scheduler = scheduler;
    let _ = scheduler.shutdown().await;
    store.close().await;
    Ok(())
}

/// How long one step of the loop may hold it, beyond the watchdog period, before the loop stops
/// being vouched for. The heartbeat is only taken between steps, and one step can be a whole
/// billing run (paced Autotask charges, batched Xero creates): without this slack systemd would
/// kill a daemon in the middle of every long run, and the restart would run into the same limit.
const LONG_STEP_SLACK_SECS: i64 = 3_600;

/// WATCHDOG=1 at half of WatchdogSec, only while the loop shows signs of life.
fn spawn_watchdog(heartbeat: Arc<AtomicI64>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period_secs = i64::try_from(period.as_secs()).unwrap_or(i64::MAX);
    let every = period / 2;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            // A loop stuck for longer than the watchdog period plus an hour (a long step, see
            // LONG_STEP_SLACK_SECS) stops being vouched for, and systemd restarts the daemon.
            if Utc::now().timestamp() - heartbeat.load(Ordering::Relaxed)
                < period_secs.saturating_add(LONG_STEP_SLACK_SECS)
            {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    });
}

/// SIGTERM/SIGINT: stop taking new work, let the action in flight finish (bounded), exit 0.
/// SIGHUP: reload the configuration.
fn spawn_signals(p: Pipeline, stop: Arc<Notify>, reload: Arc<Notify>, grace: Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => { reload.notify_one(); continue; }
            }
        }
        tracing::info!("stopping: finishing the action in flight");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        p.stop.store(true, Ordering::SeqCst);
        stop.notify_one();
        tokio::time::sleep(grace).await;
        // The action in flight did not finish in time: its outbox claim expires and the next start
        // looks for what it may have created before doing anything again.
        tracing::warn!(?grace, "shutdown grace period over; exiting");
        std::process::exit(0);
    });
}

/// For `rebilld run` and `rebilld push` (the daemon has `spawn_signals`): on SIGTERM or SIGINT the
/// push stops taking new work — the action in flight finishes, the claims not yet started are
/// released at once (another process takes them without waiting for them to expire) — and the
/// command ends, printing what it did. Should that take longer than `grace`
/// (`schedule.shutdown_timeout_secs`), the process exits anyway: what it still holds expires after
/// `schedule.claim_secs` and is looked for before anything is sent again.
pub fn stop_on_signals(p: &Pipeline, grace: Duration) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let stop = p.stop.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: finishing the action in flight, releasing the rest");
        stop.store(true, Ordering::SeqCst);
        tokio::time::sleep(grace).await;
        tracing::warn!(?grace, "shutdown grace period over; exiting");
        std::process::exit(1);
    })
}

/// The schedule of a configuration (its zone defaults to `business.timezone`).
pub fn schedule_of(config: &Config) -> Result<Schedule, String> {
    Schedule::parse(&config.schedule.cron, config.schedule_tz())
}

/// "2026-12-01 02:00 AEDT (period 2026-12)", skipping the periods `is_done` says are billed; a
/// period whose time has passed and that is not billed yet is "due since …".
pub fn next_run_skipping(
    config: &Config,
    now: DateTime<Utc>,
    is_done: impl Fn(Period) -> bool,
) -> String {
    match schedule_of(config) {
        Ok(s) => match s.next_run(now, is_done) {
            Some((t, p)) if t <= now => format!(
                "period {p}, due since {} (the daemon runs it at its next tick)",
                s.describe(t)
            ),
            Some((t, p)) => format!("{} (period {p})", s.describe(t)),
            None => "none in the next two years (check schedule.cron)".into(),
        },
        Err(e) => format!("unknown: {e}"),
    }
}

/// The next run as the systemd status line says it: never a period already billed (a manual
/// `rebilld run` may have billed the coming one); the schedule alone if the database does not
/// answer.
async fn next_run_not_billed(p: &Pipeline) -> String {
    let done: Vec<Period> = match p.store.last_runs(3).await {
        Ok(runs) => runs
            .into_iter()
            .filter(|r| r.status == RunStatus::Done)
            .map(|r| r.period)
            .collect(),
        Err(_) => Vec::new(),
    };
    next_run_skipping(&p.config, p.now(), |q| done.contains(&q))
}

/// "2026-12-01 02:00 AEDT (period 2026-12)".
pub fn next_run_description(config: &Config, now: DateTime<Utc>) -> String {
    match schedule_of(config) {
        Ok(s) => match s.next_after(now) {
            Some(t) => format!("{} (period {})", s.describe(t), Period::containing(t, s.tz)),
            None => "none in the next two years (check schedule.cron)".into(),
        },
        Err(e) => format!("unknown: {e}"),
    }
}
