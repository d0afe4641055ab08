//! `rebilld status`: the next scheduled run (never a period already billed), unrated calls, the
//! last runs and the open remote actions, every time in the business time zone; exits 1 while an
//! action stands failed.

use serde_json::json;

use super::Ctx;
use super::billing::current_period;
use super::exit::{ExitStatus, Unfinished};
use super::output::table;
use crate::domain::Period;

/// `rebilld status`: the last runs, the outbox, the next scheduled run.
pub async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let counts = ctx.store.outbox_counts().await?;
    let open = ctx.store.outbox(None).await?;
    let runs = ctx.store.last_runs(12).await?;
    let next = next_run(ctx, &runs).await?;
    // The calls the current period's invoice bills in arrears that have no price yet.
    let usage_month = current_period(ctx).previous();
    let (start, end) = usage_month.bounds(ctx.config.business.tz());
    let unrated = ctx.store.unrated_calls(start, end).await?;
    if ctx.json {
        println!(
            "{}",
            json!({"runs": runs, "outbox": counts, "open": open, "next_run": next,
                   "unrated_calls": {"month": usage_month, "calls": unrated}})
        );
        return failed_actions(&counts);
    }
    println!("next scheduled run: {next}");
    if unrated > 0 {
        println!(
            "unrated calls in {usage_month}: {unrated} (not billed until the rate plan covers them and `rebilld cdr rerate --period {usage_month}` prices them)"
        );
    }
    println!("\nlast runs:");
    let tz = ctx.config.business.tz();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            // The times in the business time zone, as every other date `status` prints.
            let mut row = r.table_row();
            let at = |t: &Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| super::output::local_time(t, tz))
                    .unwrap_or_default()
            };
            row[2] = at(&r.started_at);
            row[3] = at(&r.finished_at);
            row
        })
        .collect();
    table(&crate::store::runs::RUN_HEADERS, &rows);
    println!(
        "\noutbox: {}",
        counts
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows: Vec<Vec<String>> = open
        .iter()
        .map(|o| {
            vec![
                o.id.to_string(),
                o.action.to_string(),
                o.status.to_string(),
                o.attempts.to_string(),
                super::output::local_time(o.next_attempt_at, ctx.config.business.tz()),
                o.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "entry",
            "action",
            "status",
            "attempts",
            "next attempt",
            "last error",
        ],
        &rows,
    );
    failed_actions(&counts)
}

/// The next scheduled run, never a period already billed.
async fn next_run(ctx: &Ctx, runs: &[crate::store::runs::RunRow]) -> anyhow::Result<String> {
    let now = ctx.clock.now();
    let tz = ctx.config.schedule_tz();
    // The periods the next run could be: the current one and the next (the schedule fires in every
    // month), looked up once; `runs` answers for the rest.
    let current = Period::containing(now, tz);
    let mut done: std::collections::BTreeSet<Period> = runs
        .iter()
        .filter(|r| r.status == crate::domain::RunStatus::Done)
        .map(|r| r.period)
        .collect();
    for p in [current, current.next()] {
        if ctx.store.period_done(p).await? {
            done.insert(p);
        }
    }
    Ok(crate::daemon::next_run_skipping(&ctx.config, now, |p| {
        done.contains(&p)
    }))
}

/// `status` exits 1 while any action stands failed (it waits for a fix: `outbox retry` or a resync).
fn failed_actions(counts: &[(crate::domain::OutboxStatus, i64)]) -> anyhow::Result<()> {
    let failed: i64 = counts
        .iter()
        .filter(|(s, _)| *s == crate::domain::OutboxStatus::Failed)
        .map(|(_, n)| n)
        .sum();
    if failed > 0 {
        return Err(Unfinished::new(
            ExitStatus::Failed,
            format!("{failed} remote action(s) failed; see `rebilld outbox list --failed`"),
        )
        .into());
    }
    Ok(())
}
