//! `rebilld bench cycle`: a month's billing cycle at a reseller's size, on deterministic synthetic
//! data (`sandbox::bulk`), through the real pipeline — import, rate, compute and record
//! (`Pipeline::run_period`), push — against local stand-ins of Xero and Autotask that enforce the
//! real limits on a scaled clock (`clock::ScaledClock`: `--speed` times faster than real time), so
//! that a simulated day passes in seconds and the push is paced as in production. Reports the
//! local time of each step (SQLite, and PostgreSQL with `--postgres-url`), the requests made by
//! kind against the fewest the work needs, the 429s received, the simulated wall time of the push
//! against the rate-limit lower bound, and peak memory. Speed is measured here, never in tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Utc};
use clap::Args;
use serde_json::{Value, json};

use crate::autotask::AutotaskClient;
use crate::cdr::{ImportOptions, Mapping, import_file};
use crate::clock::{Clock, ScaledClock};
use crate::config::{Config, DatabaseConfig};
use crate::domain::{OutboxAction, OutboxStatus, Period};
use crate::pipeline::{Pipeline, ResyncRequest};
use crate::sandbox::bulk::{BulkSpec, BulkWorld, change_bulk, seed_bulk, write_bulk_calls};
use crate::sandbox::{Sandboxes, autotask::AutotaskSandbox, xero::XeroSandbox};
use crate::store::{Actor, Store};
use crate::xero::XeroClient;

#[derive(Debug, Args)]
pub struct CycleArgs {
    /// Customers (7 in 10 billed through Xero, 3 in 10 through Autotask)
    #[arg(long, default_value_t = 10_000)]
    pub customers: usize,
    /// Services, one number each [default: 5 per customer]
    #[arg(long)]
    pub services: Option<usize>,
    /// Calls in the billed month
    #[arg(long, default_value_t = 10_000_000)]
    pub calls: usize,
    /// Also time the local steps on this PostgreSQL database (a fresh schema is made and dropped)
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// How many times faster than real time the simulated clock runs
    #[arg(long, default_value_t = 1_000.0)]
    pub speed: f64,
    /// Where to write the calls file and the SQLite database [default: a temporary directory]
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// The billed period: fees of November 2026 in advance, calls of October in arrears.
const PERIOD: &str = "2026-11";

/// The local time of each step on one database.
#[derive(Debug, Default)]
struct Steps {
    seed: f64,
    import: f64,
    rate: f64,
    compute_record: f64,
    /// Peak memory (VmHWM, MB) after each step: the step that raised it is the one to look at.
    peak_mb_after: Vec<(&'static str, Option<f64>)>,
}

impl Steps {
    fn json(&self) -> Value {
        let peaks: serde_json::Map<String, Value> = self
            .peak_mb_after
            .iter()
            .map(|(k, v)| ((*k).to_string(), json!(v)))
            .collect();
        json!({"seed": self.seed, "import": self.import, "rate": self.rate,
               "compute_record": self.compute_record, "peak_memory_mb_after": peaks})
    }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Seeds, imports, rates, computes and records on `store`; returns the steps' times.
async fn local_steps(
    store: &Store,
    config: &Config,
    spec: BulkSpec,
    dir: &Path,
    xero: &XeroSandbox,
    autotask: &AutotaskSandbox,
) -> anyhow::Result<(Steps, BulkWorld)> {
    let period = Period::parse(PERIOD)?;
    let tz = config.business.tz();
    let mut steps = Steps::default();
    let t = Instant::now();
    let world = seed_bulk(store, &Actor::new("bench"), spec, period, xero, autotask).await?;
    steps.seed = secs(t);
    steps.peak_mb_after.push(("seed", peak_memory_mb()));

    let file = dir.join("bench-cycle-calls.csv");
    if !file.exists() {
        let (from, until) = period.previous().bounds(tz);
        write_bulk_calls(
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?),
            spec,
            from,
            until,
        )?;
    }
    let mut mapping = Mapping::standard();
    mapping.time.format = "epoch".into();
    let opts = ImportOptions {
        tz,
        country: config.cdr.country,
        batch_rows: config.cdr.batch_rows,
        progress: false,
    };
    let t = Instant::now();
    let r = import_file(store, &mapping, &file, None, &opts).await?;
    steps.import = secs(t);
    steps.peak_mb_after.push(("import", peak_memory_mb()));
    if r.imported as usize != spec.calls {
        anyhow::bail!(
            "imported {} of {} synthetic calls ({} rejected, {} unmatched)",
            r.imported,
            spec.calls,
            r.rejected,
            r.unmatched
        );
    }
    let t = Instant::now();
    crate::cdr::rerate(store, period.previous(), tz, config.cdr.country).await?;
    steps.rate = secs(t);
    steps.peak_mb_after.push(("rate", peak_memory_mb()));

    // No clients: the run computes and records, and its outbox waits for the push.
    let t = Instant::now();
    Pipeline::new(store.clone(), config.clone(), None, None)
        .run_period(period)
        .await?;
    steps.compute_record = secs(t);
    steps
        .peak_mb_after
        .push(("compute_record", peak_memory_mb()));
    Ok((steps, world))
}

/// What the recorded run asks of the remotes.
#[derive(Debug, Default)]
struct Work {
    xero_invoices: usize,
    xero_emails: usize,
    autotask_charges: usize,
    autotask_contracts: usize,
    /// When the first entry may be sent.
    due: Option<DateTime<Utc>>,
}

async fn work_of(store: &Store) -> anyhow::Result<Work> {
    let mut w = Work::default();
    let mut invoices = std::collections::HashSet::new();
    for e in store.outbox(None).await? {
        w.due = Some(w.due.map_or(e.not_before, |d| d.max(e.not_before)));
        match e.action {
            OutboxAction::XeroInvoice => w.xero_invoices += 1,
            OutboxAction::XeroEmail => w.xero_emails += 1,
            OutboxAction::AutotaskCharge => {
                w.autotask_charges += 1;
                // One contract per Autotask customer in the synthetic world, one invoice each.
                invoices.insert(e.invoice_id);
            }
            OutboxAction::XeroUpdate
            | OutboxAction::AutotaskUpdate
            | OutboxAction::XeroRemoveDuplicate
            | OutboxAction::AutotaskRemoveDuplicate => {}
        }
    }
    w.autotask_contracts = invoices.len();
    Ok(w)
}

/// The earliest the `n`-th request can go under `per_window` requests a `window` (aligned on the
/// start) — the lower bound of `n` requests, in seconds.
fn bound(n: u64, per_window: u64, window: u64) -> u64 {
    if n == 0 || per_window == 0 {
        return 0;
    }
    (n - 1) / per_window * window
}

/// Xero's bound: 60 a minute within 5,000 a day.
fn xero_bound(n: u64, per_minute: u64, per_day: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let days = (n - 1) / per_day.max(1);
    let rest = n - days * per_day;
    days * 86_400 + bound(rest, per_minute, 60)
}

/// Drains the outbox on the scaled clock until nothing is left to send; returns the drains made.
async fn push_all(p: &Pipeline, clock: &ScaledClock) -> anyhow::Result<(usize, Vec<String>)> {
    let mut drains = 0;
    let mut failed = Vec::new();
    loop {
        let report = p.drain(clock.now()).await?;
        drains += 1;
        failed.extend(report.failed);
        let open: Vec<_> = p
            .store
            .outbox(None)
            .await?
            .into_iter()
            .filter(|e| matches!(e.status, OutboxStatus::Pending | OutboxStatus::InFlight))
            .collect();
        let Some(next) = open
            .iter()
            .map(|e| e.next_attempt_at.max(e.not_before))
            .min()
        else {
            return Ok((drains, failed));
        };
        if drains > 100_000 {
            anyhow::bail!("the push did not finish: {} entries still open", open.len());
        }
        let wait = (next - clock.now()).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep(clock.real_duration(wait).max(Duration::from_millis(2))).await;
    }
}

fn kinds(m: &std::collections::BTreeMap<String, u64>, pick: impl Fn(&str) -> bool) -> u64 {
    m.iter().filter(|(k, _)| pick(k)).map(|(_, n)| *n).sum()
}

fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

pub async fn run(base: &Config, a: CycleArgs, as_json: bool) -> anyhow::Result<()> {
    let spec = BulkSpec {
        customers: a.customers,
        services: a.services.unwrap_or(a.customers * 5),
        calls: a.calls,
    };
    let dir = a.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rebill-bench-cycle-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench-cycle.db");
    let _ = std::fs::remove_file(&db);
    let mut config = base.clone();
    config.database = DatabaseConfig {
        url: format!("sqlite://{}", db.display()),
        ..base.database.clone()
    };
    // No claim expires while its request is in flight, however fast the simulated clock runs.
    config.schedule.claim_secs = 30 * 86_400;

    let clock = Arc::new(ScaledClock::new(Utc::now(), a.speed));
    let sb = Sandboxes::start_limited(clock.clone()).await?;
    sb.configure(&mut config);
    // The clients pace themselves to the real limits (the stand-ins' configuration does not).
    let defaults = Config::default();
    config.xero.requests_per_minute = defaults.xero.requests_per_minute;
    config.xero.requests_per_day = defaults.xero.requests_per_day;
    config.xero.max_concurrent = defaults.xero.max_concurrent;
    config.xero.batch_size = base.xero.batch_size;
    config.autotask.hourly_budget = defaults.autotask.hourly_budget;
    config.autotask.budget_share = base.autotask.budget_share;
    config.autotask.budget_window_secs = defaults.autotask.budget_window_secs;

    let period = Period::parse(PERIOD)?;
    let store = Store::open(&config.database).await?;
    let (sqlite, world) = local_steps(&store, &config, spec, &dir, &sb.xero, &sb.autotask).await?;
    let work = work_of(&store).await?;

    // The push, from the first moment the entries are due (a UTC midnight, so that Xero's day
    // windows start with it).
    let due = work.due.unwrap_or_else(Utc::now);
    let start = if due.time() == NaiveTime::MIN {
        due
    } else {
        (due.date_naive() + chrono::Duration::days(1))
            .and_time(NaiveTime::MIN)
            .and_utc()
    };
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    let xero = XeroClient::new_on(&config.xero, store.clone(), dyn_clock.clone()).await?;
    let autotask =
        AutotaskClient::new_on(&config.autotask, store.clone(), dyn_clock.clone()).await?;
    let p = Pipeline::new(store.clone(), config.clone(), Some(xero), Some(autotask))
        .with_clock(dyn_clock);
    clock.reset(start);
    let real = Instant::now();
    let (drains, failed) = push_all(&p, &clock).await?;
    let push_real = secs(real);
    let peak_after_push = peak_memory_mb();
    let simulated = (clock.now() - start).num_seconds().max(0) as u64;

    // The push's figures, before the resync adds to the counters.
    let xr = sb.xero.limits.requests_by_kind();
    let ar = sb.autotask.limits.requests_by_kind();
    let (xero_throttled, autotask_throttled) =
        (sb.xero.limits.throttled(), sb.autotask.limits.throttled());

    // The resync: 5 % of the customers change (a dearer plan on one service, the month re-rated) (a one-off item each); what it costs remotely
    // should follow the changes, not the customer count.
    let (xero_before, autotask_before) = (sb.xero.limits.requests(), sb.autotask.limits.requests());
    let resync_start = clock.now();
    let changed = change_bulk(&store, &Actor::new("bench"), spec).await?;
    crate::cdr::rerate(
        &store,
        period.previous(),
        config.business.tz(),
        config.cdr.country,
    )
    .await?;
    let req = ResyncRequest {
        period,
        customer: None,
        dry_run: false,
    };
    let outcome = crate::pipeline::resync(&p, &req).await?;
    let (resync_drains, resync_failed) = push_all(&p, &clock).await?;
    let mut planned = std::collections::BTreeMap::<String, usize>::new();
    for a in &outcome.plan.actions {
        *planned.entry(a.kind.to_string()).or_default() += 1;
    }
    let resync = json!({
        "changed_customers": changed,
        "planned_actions": planned,
        "throttled": sb.xero.limits.throttled() + sb.autotask.limits.throttled()
            - xero_throttled - autotask_throttled,
        "xero_requests": sb.xero.limits.requests() - xero_before,
        "autotask_requests": sb.autotask.limits.requests() - autotask_before,
        "simulated_seconds": (clock.now() - resync_start).num_seconds().max(0),
        "drains": resync_drains,
        "failed": resync_failed.len(),
    });
    store.close().await;

    let postgres = match &a.postgres_url {
        Some(url) => Some(postgres_steps(url, &config, spec, &dir).await?),
        None => None,
    };

    let batch = u64::from(config.xero.batch_size.max(1));
    let xero_creates_min = (work.xero_invoices as u64).div_ceil(batch);
    let xero_min = xero_creates_min + work.xero_emails as u64;
    let xero_total = kinds(&xr, |k| k.contains("/api.xro/"));
    let at_min = (work.autotask_charges + work.autotask_contracts) as u64;
    let at_total = kinds(&ar, |k| {
        k.to_ascii_lowercase().contains("/atservicesrest/v1.0/")
    }) - kinds(&ar, |k| k.to_ascii_lowercase().contains("zoneinformation"));
    let per_hour =
        (f64::from(config.autotask.hourly_budget) * config.autotask.budget_share).floor() as u64;
    let xero_lb = xero_bound(
        xero_min,
        u64::from(config.xero.requests_per_minute),
        u64::from(config.xero.requests_per_day),
    );
    let at_lb = bound(at_min, per_hour, 3_600);
    let lower = xero_lb.max(at_lb);
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let report = json!({
        "size": {"customers": spec.customers, "services": spec.services, "calls": spec.calls,
                 "xero_customers": world.xero_customers, "xero_emailed": world.xero_enabled,
                 "autotask_customers": world.autotask_customers},
        "speed": clock.factor(),
        "local_seconds": {"sqlite": sqlite.json(),
                          "postgres": postgres.as_ref().map(Steps::json)},
        "xero": {
            "requests": xero_total,
            "by_kind": xr,
            "invoice_creates": kinds(&xr, |k| k.starts_with("PUT /api.xro/2.0/Invoices")),
            "emails": kinds(&xr, |k| k.ends_with("/Email")),
            "minimum": {"invoice_creates": xero_creates_min, "emails": work.xero_emails, "total": xero_min},
            "ratio": ratio(xero_total, xero_min),
            "throttled": xero_throttled,
            "lower_bound_seconds": xero_lb,
        },
        "autotask": {
            "requests": at_total,
            "by_kind": ar,
            "charge_creates": kinds(&ar, |k| k.ends_with("/Charges") && k.starts_with("POST")),
            "marker_queries": kinds(&ar, |k| k.contains("ContractCharges/query")),
            "minimum": {"charge_creates": work.autotask_charges,
                        "marker_queries": work.autotask_contracts, "total": at_min},
            "ratio": ratio(at_total, at_min),
            "throttled": autotask_throttled,
            "lower_bound_seconds": at_lb,
        },
        "push": {"peak_memory_mb_after": peak_after_push, "drains": drains, "failed": failed.len(), "real_seconds": push_real,
                 "simulated_seconds": simulated, "lower_bound_seconds": lower,
                 "ratio": ratio(simulated, lower)},
        "resync": resync,
        "peak_memory_mb": peak_memory_mb(),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The local steps again on a fresh PostgreSQL schema (the push is measured once, on SQLite).
async fn postgres_steps(
    url: &str,
    config: &Config,
    spec: BulkSpec,
    dir: &Path,
) -> anyhow::Result<Steps> {
    let schema = format!("bench_cycle_{}", std::process::id());
    let admin = sqlx::PgPool::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    let sep = if url.contains('?') { '&' } else { '?' };
    let cfg = DatabaseConfig {
        url: format!("{url}{sep}options=-c%20search_path%3D{schema}"),
        ..config.database.clone()
    };
    let result = on_postgres(&cfg, config, spec, dir).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    Ok(result?.0)
}

async fn on_postgres(
    cfg: &DatabaseConfig,
    config: &Config,
    spec: BulkSpec,
    dir: &Path,
) -> anyhow::Result<(Steps, BulkWorld)> {
    let pg = Store::open(cfg).await?;
    let (xero, autotask) = (XeroSandbox::new(), AutotaskSandbox::new());
    let r = local_steps(&pg, config, spec, dir, &xero, &autotask).await;
    pg.close().await;
    r
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let s = &r["size"];
    println!(
        "bench cycle: {} customers ({} Xero, {} emailed; {} Autotask), {} services, {} calls; clock ×{}",
        s["customers"],
        s["xero_customers"],
        s["xero_emailed"],
        s["autotask_customers"],
        s["services"],
        s["calls"],
        r["speed"]
    );
    println!(
        "\n{:<18} {:>10} {:>12}",
        "local step (s)", "SQLite", "PostgreSQL"
    );
    for step in ["seed", "import", "rate", "compute_record"] {
        let pg = &r["local_seconds"]["postgres"][step];
        println!(
            "{step:<18} {:>10.2} {:>12}",
            f(&r["local_seconds"]["sqlite"][step]),
            if pg.is_null() {
                "-".to_string()
            } else {
                format!("{:.2}", f(pg))
            }
        );
    }
    println!(
        "\n{:<26} {:>9} {:>9} {:>7} {:>6}",
        "requests", "made", "minimum", "ratio", "429s"
    );
    for (name, sys, made, min) in [
        (
            "Xero invoice creates",
            "xero",
            "invoice_creates",
            "invoice_creates",
        ),
        ("Xero emails", "xero", "emails", "emails"),
        ("Xero, all", "xero", "requests", "total"),
        (
            "Autotask charge creates",
            "autotask",
            "charge_creates",
            "charge_creates",
        ),
        (
            "Autotask marker queries",
            "autotask",
            "marker_queries",
            "marker_queries",
        ),
        ("Autotask, all", "autotask", "requests", "total"),
    ] {
        let m = f(&r[sys][made]);
        let n = f(&r[sys]["minimum"][min]);
        let all = made == "requests";
        println!(
            "{name:<26} {m:>9} {n:>9} {:>7} {:>6}",
            if n > 0.0 {
                format!("{:.2}", m / n)
            } else {
                "-".into()
            },
            if all {
                r[sys]["throttled"].to_string()
            } else {
                String::new()
            }
        );
    }
    let p = &r["push"];
    let hours = |v: &Value| f(v) / 3_600.0;
    println!(
        "\npush: simulated {:.2} h against a rate-limit lower bound of {:.2} h (ratio {:.2}; Xero {:.2} h, Autotask {:.2} h); {:.1} s real, {} drains, {} failed",
        hours(&p["simulated_seconds"]),
        hours(&p["lower_bound_seconds"]),
        f(&p["ratio"]),
        hours(&r["xero"]["lower_bound_seconds"]),
        hours(&r["autotask"]["lower_bound_seconds"]),
        f(&p["real_seconds"]),
        p["drains"],
        p["failed"]
    );
    let rs = &r["resync"];
    println!(
        "resync after {} customers changed: planned {}, {} Xero and {} Autotask requests, {:.2} h simulated, {} failed",
        rs["changed_customers"],
        rs["planned_actions"],
        rs["xero_requests"],
        rs["autotask_requests"],
        hours(&rs["simulated_seconds"]),
        rs["failed"]
    );
    println!("peak memory (VmHWM): {:.0} MB", f(&r["peak_memory_mb"]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xero_bound_spans_two_days_past_5000_requests() {
        // The default size: 140 creates and 6,650 emails.
        let b = xero_bound(6_790, 60, 5_000);
        assert_eq!(b, 86_400 + (1_790 - 1) / 60 * 60);
        assert_eq!(xero_bound(60, 60, 5_000), 0, "the first minute holds 60");
        assert_eq!(xero_bound(61, 60, 5_000), 60);
        assert_eq!(xero_bound(0, 60, 5_000), 0);
    }

    #[test]
    fn the_autotask_bound_is_whole_hours_of_the_share() {
        assert_eq!(bound(15_000 + 3_000, 5_000, 3_600), 3 * 3_600);
        assert_eq!(bound(5_000, 5_000, 3_600), 0);
    }
}
