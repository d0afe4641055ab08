//! `rebilld bench cdr`: deterministic synthetic CDRs, then import calls/s (SQLite, and PostgreSQL
//! with `--postgres-url`), re-import rows/s (all duplicates), rating calls/s on one core, summary
//! latency for the busiest service, and peak memory (VmHWM). Speed is measured here, never in tests.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use crate::cdr::{ImportOptions, Mapping, import_file};
use crate::config::{Config, DatabaseConfig};
use crate::domain::rating::{CallForRating, Direction, Rate, RatePlan, rate_call};
use crate::domain::{Money, NonEmpty, Period, ServiceId};
use crate::store::{Actor, ServiceImport, ServiceUserImport, Store};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Rows in the synthetic file
    #[arg(long, default_value_t = 2_000_000)]
    pub rows: usize,
    /// Also import into this PostgreSQL database (a fresh schema is made and dropped)
    #[arg(long)]
    pub postgres_url: Option<String>,
    /// Where to write the file and the SQLite database [default: a temporary directory]
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

const USERS: usize = 1000;

fn generate(path: &std::path::Path, rows: usize) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    writeln!(
        w,
        "call_id,user,start,duration,destination,call_type,cost,direction,disposition"
    )?;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for i in 0..rows {
        // xorshift: deterministic, fast.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half the calls go to the first 500 users (the busy service).
        let user = if i % 2 == 0 {
            (x % 500) as usize
        } else {
            (x % USERS as u64) as usize
        };
        // Chronological, as a PBX writes its calls, with a little jitter: October 2026.
        let secs = (i as u64 * 2_600_000 / rows as u64) + (x >> 20) % 30;
        let duration = (x >> 40) % 900;
        let kind = ["national", "mobile", "local", "international"][(x >> 50) as usize % 4];
        writeln!(
            w,
            "c{i},0299{user:06},{},{duration},04{:08},{kind},0.{:04},out,ANSWERED",
            1_790_812_800 + secs, // 2026-10-01T00:00:00Z
            x % 100_000_000,
            x % 10_000
        )?;
    }
    w.flush()
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

async fn seed(store: &Store) -> anyhow::Result<ServiceId> {
    let actor = Actor::new("bench");
    let plan = RatePlan::CostPlus {
        multiplier: "1.3".parse()?,
        addon_per_minute: Money::parse("0.01")?,
        charge_inbound_13: false,
    };
    let mut busy = None;
    for s in 0..2 {
        let range = if s == 0 { 0..500 } else { 500..USERS };
        let (id, _) = store
            .import_service(
                &actor,
                &ServiceImport {
                    external_ref: format!("bench-{s}"),
                    parent_ref: None,
                    name: NonEmpty::parse("name", &format!("Bench trunk {s}"))?,
                    kind: "voip".into(),
                    rebill_enabled: true,
                    monthly_price: Money::ZERO,
                    monthly_cost: Money::ZERO,
                    xero_account_code: None,
                    xero_tax_type: None,
                    xero_item_code: None,
                    users: range
                        .map(|u| ServiceUserImport {
                            user_ref: format!("0299{u:06}"),
                            label: None,
                        })
                        .collect(),
                },
            )
            .await?;
        store.set_rate_plan(&actor, id, &plan).await?;
        busy.get_or_insert(id);
    }
    busy.ok_or_else(|| anyhow::anyhow!("no service"))
}

async fn import_round(
    label: &str,
    store: &Store,
    file: &std::path::Path,
    rows: usize,
    config: &Config,
) -> anyhow::Result<()> {
    let mut mapping = Mapping::standard();
    mapping.time.format = "epoch".into();
    let opts = ImportOptions {
        tz: config.business.tz(),
        country: config.cdr.country,
        batch_rows: config.cdr.batch_rows,
        progress: false,
    };
    let t = Instant::now();
    let r = import_file(store, &mapping, file, None, &opts).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{label:<28} {:>10.0} calls/s   ({} imported, {} rejected, in {secs:.2} s)",
        rows as f64 / secs,
        r.imported,
        r.rejected
    );
    let t = Instant::now();
    let r = import_file(store, &mapping, file, None, &opts).await?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<28} {:>10.0} rows/s    ({} duplicates in {secs:.2} s)",
        format!("{label} re-import"),
        rows as f64 / secs,
        r.duplicates
    );
    Ok(())
}

pub async fn run(config: &Config, a: BenchArgs) -> anyhow::Result<()> {
    let tmp = tempdir_in(a.dir.clone())?;
    let file = tmp.join("bench-cdrs.csv");
    let t = Instant::now();
    generate(&file, a.rows)?;
    println!(
        "generated {} rows ({} MB) in {:.2} s",
        a.rows,
        std::fs::metadata(&file)?.len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );

    let db = tmp.join("bench.db");
    let _ = std::fs::remove_file(&db);
    let cfg = DatabaseConfig {
        url: format!("sqlite://{}", db.display()),
        ..config.database.clone()
    };
    let store = Store::open(&cfg).await?;
    let busy = seed(&store).await?;
    import_round("import into SQLite", &store, &file, a.rows, config).await?;

    // Rating alone, one core, on the same synthetic shapes.
    let mut rates = std::collections::BTreeMap::new();
    rates.insert(
        "national".to_string(),
        Rate {
            per_minute: "0.10".parse()?,
            first_secs: 30,
            next_secs: 1,
            minimum: Money::ZERO,
            flagfall: Money::ZERO,
        },
    );
    let plan = RatePlan::PerMinute {
        rates,
        default: Some(Rate {
            per_minute: "0.2".parse()?,
            first_secs: 60,
            next_secs: 60,
            minimum: Money::ZERO,
            flagfall: Money::parse("0.1")?,
        }),
        charge_inbound_13: false,
    };
    let n = 5_000_000u32;
    let t = Instant::now();
    let mut total = Money::ZERO;
    for i in 0..n {
        let call = CallForRating {
            duration_secs: i % 900,
            call_type: if i % 2 == 0 { "national" } else { "mobile" },
            direction: Direction::Outbound,
            user_ref: "0299000001",
            cost: None,
        };
        total += rate_call(&plan, &call).map_err(|e| anyhow::anyhow!(e))?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<28} {:>10.0} calls/s   (sum {})",
        "rating (one core)",
        f64::from(n) / secs,
        total.round_cents()
    );

    let t = Instant::now();
    let s = crate::cdr::summary::summary(&store, busy, Period::parse("2026-10")?).await?;
    println!(
        "{:<28} {:>10.1} ms      ({} calls on the service)",
        "summary aggregates",
        t.elapsed().as_secs_f64() * 1000.0,
        s.totals.calls
    );
    // A plan change on the busy service, then the month re-rated.
    let dearer = RatePlan::CostPlus {
        multiplier: "1.4".parse()?,
        addon_per_minute: Money::parse("0.01")?,
        charge_inbound_13: false,
    };
    store
        .set_rate_plan(&Actor::new("bench"), busy, &dearer)
        .await?;
    let t = Instant::now();
    let rated = crate::cdr::rerate(
        &store,
        Period::parse("2026-10")?,
        config.business.tz(),
        config.cdr.country,
    )
    .await?
    .rated;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{:<28} {:>10.0} calls/s   ({rated} calls of 2026-10 rated, {} of them re-priced, rollups rebuilt, in {secs:.2} s)",
        "re-rate a month (SQLite)",
        rated as f64 / secs,
        s.totals.calls
    );
    store.close().await;

    if let Some(url) = &a.postgres_url {
        let schema = format!("bench_{}", std::process::id());
        let admin = sqlx::PgPool::connect(url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await?;
        let sep = if url.contains('?') { '&' } else { '?' };
        let cfg = DatabaseConfig {
            url: format!("{url}{sep}options=-c%20search_path%3D{schema}"),
            ..config.database.clone()
        };
        let pg = Store::open(&cfg).await?;
        seed(&pg).await?;
        let result = import_round("import into PostgreSQL", &pg, &file, a.rows, config).await;
        pg.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await?;
        result?;
    }
    if let Some(mb) = peak_memory_mb() {
        println!("{:<28} {:>10.0} MB", "peak memory (VmHWM)", mb);
    }
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn tempdir_in(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let d = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rebill-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
