//! `rebilld cdr import|rerate|plan`, `rebilld summary`, `rebilld bench cdr`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use super::output::say;
use crate::cdr::{ImportOptions, Mapping, import_file};
use crate::config::Config;
use crate::domain::rating::RatePlan;
use crate::domain::{Period, ServiceId};

#[derive(Debug, Subcommand)]
pub enum CdrCmd {
    /// Import CDR files (idempotent: importing the same calls again adds nothing)
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The column mapping [default: cdr.mapping_file, else the standard header names]
        #[arg(long)]
        mapping: Option<PathBuf>,
    },
    /// Re-price a month's calls with the current rate plans
    Rerate {
        #[arg(long)]
        period: Period,
    },
    /// Set a rate plan from a TOML or JSON file (a new version): a service's own (`--service N
    /// FILE`) or a shared one (`--shared NAME FILE`); make a service use a shared plan (`--service
    /// N --shared NAME`); or make a shared plan the default of services without one (`--default NAME`)
    Plan {
        #[arg(long)]
        service: Option<ServiceId>,
        #[arg(long)]
        shared: Option<String>,
        #[arg(long, conflicts_with_all = ["service", "shared", "file"])]
        default: Option<String>,
        file: Option<PathBuf>,
    },
    /// Import the spool directory once (the daemon does this continuously)
    Spool,
    /// The numbers whose calls matched no service user in a month, with their call counts (add
    /// each to its service, then `cdr rerate --period`)
    Unmatched {
        #[arg(long)]
        period: Period,
    },
    /// A month's unrated calls (no plan, or no rate for their type), by service and call type
    Unrated {
        #[arg(long)]
        period: Period,
    },
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[arg(long)]
    pub service: ServiceId,
    #[arg(long)]
    pub period: Period,
    #[arg(long, value_parser = ["table", "json", "csv"], default_value = "table")]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// CDR import, rating and summary throughput on synthetic data
    Cdr(super::bench::BenchArgs),
    /// A month's billing cycle at a reseller's size against stand-ins enforcing the real limits
    Cycle(super::bench_cycle::CycleArgs),
}

fn options(ctx: &Ctx) -> ImportOptions {
    ImportOptions {
        tz: ctx.config.business.tz(),
        country: ctx.config.cdr.country,
        batch_rows: ctx.config.cdr.batch_rows,
        progress: !ctx.json,
    }
}

pub async fn run(ctx: &Ctx, cmd: CdrCmd) -> anyhow::Result<()> {
    match cmd {
        CdrCmd::Import { files, mapping } => {
            let mapping = match mapping {
                Some(p) => Mapping::from_toml(
                    &std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))?,
                )
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
                None => ctx.config.cdr.mapping().map_err(|e| anyhow::anyhow!(e))?,
            };
            let mut failed = 0;
            for f in files {
                match import_file(&ctx.store, &mapping, &f, None, &options(ctx)).await {
                    Ok(mut r) => {
                        r.judge(ctx.config.cdr.max_reject_share);
                        if let Some(reason) = &r.failed {
                            failed += 1;
                            eprintln!("rebilld: {reason}; its other rows were imported");
                        }
                        if ctx.json {
                            println!("{}", json!(r));
                        } else {
                            println!(
                                "{}: {} rows read, {} imported, {} duplicates, {} skipped by rule, {} rejected, {} unmatched, {} unrated",
                                r.file,
                                r.rows_read,
                                r.imported,
                                r.duplicates,
                                r.skipped_by_rule,
                                r.rejected,
                                r.unmatched,
                                r.unrated
                            );
                            if r.second_source > 0 {
                                println!(
                                    "  {} calls left out: another source already holds them (same user, start second and duration)",
                                    r.second_source
                                );
                            }
                            if let Some(p) = &r.rejects_file {
                                println!("  rejected rows (line and reason): {p}");
                            }
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("rebilld: {e}");
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("{failed} file(s) refused or with too many rejected rows");
            }
            Ok(())
        }
        CdrCmd::Rerate { period } => {
            let r = crate::cdr::rerate(
                &ctx.store,
                period,
                ctx.config.business.tz(),
                ctx.config.cdr.country,
            )
            .await?;
            say(
                ctx,
                &format!(
                    "{period}: {} unmatched calls matched to users added since, {} calls re-rated, {} without a plan or rate",
                    r.matched, r.rated, r.unrated
                ),
                json!(r),
            );
            Ok(())
        }
        CdrCmd::Plan {
            service,
            shared,
            default,
            file,
        } => {
            let rerate = "run `rebilld cdr rerate --period …` for calls already imported";
            if let Some(name) = default {
                ctx.store.set_default_rate_plan(&ctx.actor, &name).await?;
                say(
                    ctx,
                    &format!("services without a plan of their own now use {name:?}; {rerate}"),
                    json!({"default": name}),
                );
                return Ok(());
            }
            let plan = match &file {
                Some(file) => Some(read_plan(file)?),
                None => None,
            };
            match (service, shared, plan) {
                (Some(service), None, Some((plan, extensions))) => {
                    let v = ctx
                        .store
                        .set_rate_plan_with(&ctx.actor, service, &plan, &extensions)
                        .await?;
                    say(
                        ctx,
                        &format!(
                            "service {service} now rates calls with plan version {v}; {rerate}"
                        ),
                        json!({"service": service, "version": v}),
                    );
                }
                (None, Some(name), Some((plan, extensions))) => {
                    let v = ctx
                        .store
                        .set_shared_rate_plan_with(&ctx.actor, &name, &plan, &extensions)
                        .await?;
                    say(
                        ctx,
                        &format!("shared plan {name:?} is now version {v}; {rerate}"),
                        json!({"shared": name, "version": v}),
                    );
                }
                (Some(service), Some(name), None) => {
                    ctx.store
                        .use_shared_rate_plan(&ctx.actor, service, &name)
                        .await?;
                    say(
                        ctx,
                        &format!(
                            "service {service} now rates calls with the shared plan {name:?}; {rerate}"
                        ),
                        json!({"service": service, "shared": name}),
                    );
                }
                _ => anyhow::bail!(
                    "give --service N FILE, --shared NAME FILE, --service N --shared NAME, or --default NAME"
                ),
            }
            Ok(())
        }
        CdrCmd::Unmatched { period } => {
            let tz = ctx.config.business.tz();
            let (start, end) = period.bounds(tz);
            let rows = ctx.store.unmatched_numbers(start, end).await?;
            let when = |t: i64| {
                chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default()
            };
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.user_ref.clone(),
                        r.calls.to_string(),
                        r.seconds.to_string(),
                        when(r.first_at),
                        when(r.last_at),
                    ]
                })
                .collect();
            if ctx.json {
                println!("{}", json!(rows));
            } else {
                super::output::table(
                    &["number", "calls", "seconds", "first call", "last call"],
                    &table,
                );
            }
            Ok(())
        }
        CdrCmd::Unrated { period } => {
            let (start, end) = period.bounds(ctx.config.business.tz());
            let rows = ctx.store.unrated_groups(start, end).await?;
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        r.service_id.to_string(),
                        r.call_type.clone(),
                        r.calls.to_string(),
                        r.seconds.to_string(),
                    ]
                })
                .collect();
            if ctx.json {
                println!("{}", json!(rows));
            } else {
                super::output::table(&["service", "call type", "calls", "seconds"], &table);
            }
            Ok(())
        }
        CdrCmd::Spool => {
            let reports = crate::cdr::import_spool_once(
                &ctx.store,
                &ctx.config.cdr,
                &options(ctx),
                std::time::SystemTime::now(),
            )
            .await?;
            say(
                ctx,
                &format!("{} file(s) imported from the spool", reports.len()),
                json!(reports),
            );
            Ok(())
        }
    }
}

pub async fn summary(ctx: &Ctx, a: SummaryArgs) -> anyhow::Result<()> {
    let format = if ctx.json {
        "json".to_string()
    } else {
        a.format
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    crate::cdr::summary::write(
        &ctx.store,
        a.service,
        a.period,
        ctx.config.business.tz(),
        &format,
        &mut out,
    )
    .await?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// Runs a benchmark. It needs no store: the configured database is never opened (nor created).
pub async fn bench(config: &Config, c: BenchCmd, json: bool) -> anyhow::Result<()> {
    match c {
        BenchCmd::Cdr(a) => super::bench::run(config, a).await,
        BenchCmd::Cycle(a) => super::bench_cycle::run(config, a, json).await,
    }
}

/// A plan file (TOML, or JSON when it starts with `{`): the rating plan, and its optional
/// `[extensions]` table of monthly prices per extension kind (`domain::extensions`). Unknown keys
/// in either are refused, naming the file.
fn read_plan(
    file: &std::path::Path,
) -> anyhow::Result<(RatePlan, crate::domain::extensions::ExtensionPrices)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let bad = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: {e}", file.display());
    if text.trim_start().starts_with('{') {
        let mut t: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).map_err(|e| bad(&e))?;
        let ext = match t.remove("extensions") {
            Some(v) => serde_json::from_value(v).map_err(|e| bad(&e))?,
            None => Default::default(),
        };
        let plan = serde_json::from_value(serde_json::Value::Object(t)).map_err(|e| bad(&e))?;
        Ok((plan, ext))
    } else {
        let mut t: toml::Table = toml::from_str(&text).map_err(|e| bad(&e))?;
        let ext = match t.remove("extensions") {
            Some(v) => v.try_into().map_err(|e| bad(&e))?,
            None => Default::default(),
        };
        let plan = t.try_into().map_err(|e| bad(&e))?;
        Ok((plan, ext))
    }
}
