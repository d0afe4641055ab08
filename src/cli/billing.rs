//! The billing-run commands: `run`, `push`, `--resync`, `invoice list|show|email|void|export`,
//! `reconcile`, `status` (`invoice void` is in `invoice.rs`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use super::exit::{ExitStatus, Unfinished, push_outcome};
use super::output::{print_push, table};
use crate::domain::{CustomerId, Period, RemoteSystem};

#[derive(Debug, Args)]
pub struct ResyncArgs {
    /// Recompute a period and bring Autotask and Xero in line with it
    #[arg(long)]
    pub resync: bool,
    /// With --resync: the period YYYY-MM [default: the current period]
    #[arg(long, requires = "resync")]
    pub period: Option<Period>,
    /// With --resync: only this customer
    #[arg(long, requires = "resync")]
    pub customer: Option<CustomerId>,
    /// With --resync: print the plan and change nothing, locally or remotely
    #[arg(long, requires = "resync")]
    pub dry_run: bool,
    /// With --resync: exit non-zero instead of waiting when another process holds the period
    #[arg(long, requires = "resync")]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum InvoiceCmd {
    /// List invoices with where they went
    List {
        #[arg(long)]
        period: Option<Period>,
        #[arg(long)]
        customer: Option<CustomerId>,
    },
    /// Show one invoice (by number) with its lines, outbox and ledger
    Show { number: String },
    /// Email a Xero invoice again (after an address was added, or the customer enabled again);
    /// refused for a disabled customer; Xero's daily email cap parks it (exit 75)
    Email { number: String },
    /// Void an invoice: Xero VOIDED while unpaid (else a credit note for all of it), each Autotask
    /// charge deleted while unbilled (else a correcting charge); its charges are not billed again
    Void {
        number: String,
        /// Why (kept with the invoice and audited)
        #[arg(long)]
        reason: String,
        /// Print what would happen and change nothing, locally or remotely
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a period's invoices in Xero's invoice import CSV layout
    Export {
        #[arg(long)]
        period: Period,
        #[arg(long, value_parser = ["xero-csv"], default_value = "xero-csv")]
        format: String,
        /// Output file [default: stdout]
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

pub async fn invoice(ctx: &Ctx, cmd: InvoiceCmd) -> anyhow::Result<()> {
    match cmd {
        InvoiceCmd::List { period, customer } => list(ctx, period, customer).await,
        InvoiceCmd::Show { number } => show(ctx, &number).await,
        InvoiceCmd::Email { number } => email(ctx, &number).await,
        InvoiceCmd::Void {
            number,
            reason,
            dry_run,
        } => super::invoice::void(ctx, &number, &reason, dry_run).await,
        InvoiceCmd::Export {
            period,
            format: _,
            output,
        } => export(ctx, period, output).await,
    }
}

fn email_state(i: &crate::store::billing::StoredInvoice, tz: chrono_tz::Tz) -> String {
    match (&i.emailed_at, i.email_decision.as_str()) {
        (Some(t), _) => format!("emailed {}", super::output::local_date(*t, tz)),
        (None, "send") => "to be emailed".into(),
        (None, d) => d.replace('_', " "),
    }
}

async fn list(
    ctx: &Ctx,
    period: Option<Period>,
    customer: Option<CustomerId>,
) -> anyhow::Result<()> {
    let invoices = ctx.store.invoices(period, customer).await?;
    if ctx.json {
        println!("{}", json!(invoices));
        return Ok(());
    }
    let mut rows = Vec::new();
    for i in &invoices {
        let went = match i.destination {
            RemoteSystem::Xero => match (&i.xero_invoice_id, &i.xero_status) {
                (Some(id), s) => format!(
                    "xero {} {}",
                    s.as_deref().unwrap_or(""),
                    &id[..id.len().min(8)]
                ),
                (None, _) => "xero (not yet pushed)".into(),
            },
            RemoteSystem::Autotask => {
                let lines = ctx.store.invoice_lines(i.id).await?;
                let pushed = lines
                    .iter()
                    .filter(|l| l.autotask_charge_id.is_some())
                    .count();
                format!(
                    "autotask {pushed}/{} charges",
                    lines.iter().filter(|l| !l.removed).count()
                )
            }
        };
        rows.push(vec![
            i.number.clone(),
            i.period.to_string(),
            format!("{} ({})", i.customer_id, i.customer_name),
            i.total().to_string(),
            if i.voided.is_some() {
                format!("{went} (voided)")
            } else {
                went
            },
            email_state(i, ctx.config.business.tz()),
        ]);
    }
    super::output::sort_rows_naturally(&mut rows, 0);
    table(
        &[
            "invoice",
            "period",
            "customer",
            "total",
            "pushed to",
            "email",
        ],
        &rows,
    );
    Ok(())
}

async fn show(ctx: &Ctx, number: &str) -> anyhow::Result<()> {
    let i = ctx.store.invoice_by_number(number).await?;
    let lines = ctx.store.invoice_lines(i.id).await?;
    let outbox = ctx.store.outbox(Some(i.id)).await?;
    let ledger = ctx.store.ledger(Some(i.id)).await?;
    // Xero adds the tax: shown at the configured rates, as Xero will compute it.
    let tax = (i.destination == RemoteSystem::Xero)
        .then(|| crate::store::billing::xero_tax(&lines, &ctx.config.xero.tax_rates))
        .flatten();
    if ctx.json {
        println!(
            "{}",
            json!({"invoice": i, "tax": tax, "total_with_tax": tax.map(|t| i.total() + t),
                   "xero_url": i.xero_invoice_id.as_deref().map(super::invoice::xero_link),
                   "lines": lines, "outbox": outbox, "ledger": ledger})
        );
        return Ok(());
    }
    println!(
        "invoice {} — {} — customer {} ({})",
        i.number, i.period, i.customer_id, i.customer_name
    );
    let with_tax = tax
        .map(|t| format!(" ex tax; tax {t}, total {} with tax", i.total() + t))
        .unwrap_or_default();
    println!(
        "  dated {} due {}, total {} {}{with_tax}",
        i.issue_date,
        i.due_date,
        i.total(),
        i.currency
    );
    match i.destination {
        RemoteSystem::Xero => println!(
            "  xero: {} {}",
            i.xero_invoice_id.as_deref().unwrap_or("not yet created"),
            i.xero_status.as_deref().unwrap_or("")
        ),
        RemoteSystem::Autotask => println!("  autotask: contract charges (never sent to Xero)"),
    }
    if let Some(id) = &i.xero_invoice_id {
        println!("  open in Xero: {}", super::invoice::xero_link(id));
    }
    println!("  email: {}", email_state(&i, ctx.config.business.tz()));
    if let Some(v) = &i.voided {
        println!(
            "  voided {} by {}: {}",
            super::output::local_date(v.at, ctx.config.business.tz()),
            v.by,
            v.reason
        );
    }
    println!();
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.description.clone() + if l.removed { " (removed)" } else { "" },
                l.quantity.to_string(),
                l.unit_price.to_string(),
                l.amount.to_string(),
                l.autotask_charge_id
                    .map(|c| format!("charge {c}"))
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(&["line", "qty", "unit", "amount", "remote"], &rows);
    println!("\nremote actions:");
    let rows: Vec<Vec<String>> = outbox
        .iter()
        .map(|o| {
            vec![
                o.action.to_string(),
                o.status.to_string(),
                o.attempts.to_string(),
                o.remote_id.clone().unwrap_or_default(),
                o.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["action", "status", "attempts", "remote id", "last error"],
        &rows,
    );
    println!("\nledger:");
    let rows: Vec<Vec<String>> = ledger
        .iter()
        .map(|l| {
            vec![
                super::output::local_time_secs(l.completed_at, ctx.config.business.tz()),
                format!("{} {}", l.system, l.action),
                l.outcome.to_string(),
                l.remote_id.clone().unwrap_or_default(),
                l.amount.map(|m| m.to_string()).unwrap_or_default(),
                l.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["when", "action", "outcome", "remote id", "amount", "error"],
        &rows,
    );
    Ok(())
}

async fn export(ctx: &Ctx, period: Period, output: Option<PathBuf>) -> anyhow::Result<()> {
    let csv = crate::pipeline::export_period(&ctx.store, period).await?;
    match output {
        Some(p) => {
            std::fs::write(&p, csv)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        None => print!("{csv}"),
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The period to bill [default: the current period in business.timezone]
    #[arg(long)]
    pub period: Option<Period>,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[arg(long)]
    pub period: Period,
    /// Read every sent invoice's history in Xero to find a second email (one request per
    /// invoice); without it, only invoices whose email's outcome was ever in doubt are read
    #[arg(long)]
    pub emails: bool,
    #[arg(long, value_parser = ["table", "json"], default_value = "table")]
    pub format: String,
}

/// The current period in the business time zone.
pub fn current_period(ctx: &Ctx) -> Period {
    Period::containing(ctx.clock.now(), ctx.config.business.tz())
}

/// `rebilld run [--period]`: bill one period now (under the period lease), then push.
pub async fn run_now(ctx: &Ctx, a: RunArgs) -> anyhow::Result<()> {
    let period = a.period.unwrap_or_else(|| current_period(ctx));
    let p = ctx.pipeline().await?;
    let _signals = stop_on_signals(ctx, &p);
    let report = waiting_for_the_lease(period, false, || p.run_period(period)).await?;
    print_run(ctx, &report);
    Ok(push_outcome(&report.push)?)
}

pub fn print_run(ctx: &Ctx, r: &crate::pipeline::RunReport) {
    if ctx.json {
        println!("{}", json!(r));
        return;
    }
    println!(
        "billing run {}: {} invoice(s) recorded, {} already recorded",
        r.period,
        r.invoices_created.len(),
        r.invoices_already_recorded
    );
    for (c, why) in &r.skipped {
        println!("  skipped customer {c}: {why}");
    }
    if r.unrated_calls > 0 {
        println!(
            "  {} call(s) of the month billed in arrears have no price and are not billed: fix the rate plan, then `rebilld cdr rerate`",
            r.unrated_calls
        );
    }
    print_push(&r.push);
}

/// `rebilld push`: drain the outbox once.
pub async fn push(ctx: &Ctx) -> anyhow::Result<()> {
    let p = ctx.pipeline().await?;
    let _signals = stop_on_signals(ctx, &p);
    let r = p.drain(p.now()).await?;
    if ctx.json {
        println!("{}", json!(r));
    } else {
        print_push(&r);
    }
    Ok(push_outcome(&r)?)
}

/// SIGTERM/SIGINT during `run` or `push`: finish the action in flight, release the other claims,
/// exit within `schedule.shutdown_timeout_secs` (`daemon::stop_on_signals`).
fn stop_on_signals(ctx: &Ctx, p: &crate::pipeline::Pipeline) -> SignalGuard {
    SignalGuard(crate::daemon::stop_on_signals(
        p,
        std::time::Duration::from_secs(ctx.config.schedule.shutdown_timeout_secs),
    ))
}

/// Stops listening for signals when the command is done.
struct SignalGuard(tokio::task::JoinHandle<()>);

impl Drop for SignalGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `work` (which takes the period lease); while another process holds the period, waits
/// (saying so once) unless `no_wait`.
async fn waiting_for_the_lease<T, F, Fut>(
    period: Period,
    no_wait: bool,
    work: F,
) -> Result<T, crate::pipeline::PipelineError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::pipeline::PipelineError>>,
{
    let mut said = false;
    loop {
        match work().await {
            Err(crate::pipeline::PipelineError::PeriodHeld { .. }) if !no_wait => {
                if !said {
                    eprintln!(
                        "waiting: period {period} is held by another process (a run or a resync)"
                    );
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            other => return other,
        }
    }
}

/// `rebilld --resync [--period] [--customer] [--dry-run] [--no-wait]`.
pub async fn resync(ctx: &Ctx, a: ResyncArgs) -> anyhow::Result<()> {
    let period = a.period.unwrap_or_else(|| current_period(ctx));
    let req = crate::pipeline::ResyncRequest {
        period,
        customer: a.customer,
        dry_run: a.dry_run,
    };
    let p = ctx.pipeline().await?;
    let outcome =
        waiting_for_the_lease(period, a.no_wait, || crate::pipeline::resync(&p, &req)).await?;
    if ctx.json {
        println!("{}", json!(outcome));
        return resync_outcome(&outcome);
    }
    let plan = &outcome.plan;
    println!(
        "resync {} plan{}:",
        plan.period,
        if req.dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    );
    let rows: Vec<Vec<String>> = plan
        .actions
        .iter()
        .map(|a| {
            vec![
                format!("{} ({})", a.customer_id, a.customer_name),
                a.invoice.clone().unwrap_or_else(|| "(new)".into()),
                a.kind.to_string(),
                a.description.clone(),
            ]
        })
        .collect();
    table(&["customer", "invoice", "action", "what"], &rows);
    if let Some(pushed) = &outcome.pushed {
        print_push(pushed);
    }
    resync_outcome(&outcome)
}

/// A resync's exit status: its push's (a dry run or an empty plan pushes nothing: done).
fn resync_outcome(outcome: &crate::pipeline::ResyncOutcome) -> anyhow::Result<()> {
    match &outcome.pushed {
        Some(pushed) => Ok(push_outcome(pushed)?),
        None => Ok(()),
    }
}

pub async fn reconcile(ctx: &Ctx, a: ReconcileArgs) -> anyhow::Result<()> {
    let p = ctx.pipeline().await?;
    let options = crate::pipeline::ReconcileOptions {
        emails: if a.emails {
            crate::pipeline::EmailCheck::All
        } else {
            crate::pipeline::EmailCheck::InDoubt
        },
    };
    let r = crate::pipeline::reconcile_with(&p, a.period, options).await?;
    if a.format == "json" || ctx.json {
        println!("{}", json!(r));
    } else {
        println!(
            "reconcile {}: {} Xero invoice(s) and {} Autotask charge(s) checked",
            r.period, r.invoices_checked, r.charges_checked
        );
        if r.is_clean() {
            println!("no differences: the ledger, Xero and Autotask agree");
        } else {
            let rows: Vec<Vec<String>> = r
                .differences
                .iter()
                .map(|d| {
                    vec![
                        d.system.to_string(),
                        d.kind.to_string(),
                        d.invoice.clone(),
                        d.detail.clone(),
                    ]
                })
                .collect();
            table(&["system", "difference", "invoice", "detail"], &rows);
        }
        print_skipped(&r.skipped);
    }
    if !r.is_clean() {
        return Err(Unfinished::new(
            ExitStatus::Failed,
            format!(
                "{} difference(s) between the ledger and the remote systems",
                r.differences.len()
            ),
        )
        .into());
    }
    Ok(())
}

/// The actions ops skipped (`outbox skip`): not differences, but never silent.
fn print_skipped(skipped: &[crate::pipeline::Skipped]) {
    if skipped.is_empty() {
        return;
    }
    println!("skipped by ops (never sent; not counted as differences):");
    let rows: Vec<Vec<String>> = skipped
        .iter()
        .map(|s| {
            vec![
                s.invoice.clone(),
                s.outbox_id.to_string(),
                s.action.to_string(),
                s.skipped_by.clone(),
                s.reason.clone(),
            ]
        })
        .collect();
    table(
        &["invoice", "entry", "action", "skipped by", "reason"],
        &rows,
    );
}

/// `rebilld invoice email NUMBER`: queue the email again and push it now (the orchestration is in
/// `pipeline::invoice_actions`; this parses and prints).
pub async fn email(ctx: &Ctx, number: &str) -> anyhow::Result<()> {
    let p = ctx.pipeline().await?;
    let r = crate::pipeline::invoice_actions::email_again(&p, number, &ctx.actor).await?;
    if ctx.json {
        println!("{}", json!(r));
    } else {
        println!(
            "invoice {}: email queued as outbox entry {} ({})",
            r.invoice, r.entry.id, r.entry.status
        );
        print_push(&r.pushed);
    }
    Ok(super::exit::push_outcome(&r.pushed)?)
}
