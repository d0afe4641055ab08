//! `rebilld outbox list [--failed] | retry ID | skip ID --reason TEXT`: one remote action at a
//! time, for on-call — see what is waiting or failed, send one again now, or skip one for good
//! (audited; reconcile shows it as skipped).

use clap::Subcommand;
use serde_json::json;

use super::Ctx;
use super::exit::{ExitStatus, Unfinished};
use super::output::{say, table};
use crate::domain::{OutboxId, OutboxStatus};

#[derive(Debug, Subcommand)]
pub enum OutboxCmd {
    /// The remote actions not yet done (pending, in flight, failed), oldest first; exits 1 when
    /// any has failed
    List {
        /// Only the failed ones
        #[arg(long)]
        failed: bool,
    },
    /// Put a failed or waiting (parked) entry back in the queue, due now; the daemon or the next
    /// `rebilld push` sends it
    Retry {
        /// The entry (`outbox list`, `status`, `invoice show`)
        id: OutboxId,
    },
    /// Never send this entry (nor the ones waiting for it): it ends as skipped, with the reason
    /// in the audit log, and reconcile shows it as skipped
    Skip {
        id: OutboxId,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
}

pub async fn run(ctx: &Ctx, cmd: OutboxCmd) -> anyhow::Result<()> {
    match cmd {
        OutboxCmd::List { failed } => list(ctx, failed).await,
        OutboxCmd::Retry { id } => {
            let e = ctx
                .store
                .retry_outbox_entry(id, &ctx.actor, ctx.clock.now())
                .await?;
            say(
                ctx,
                &format!(
                    "outbox entry {} ({}) is due now; the daemon or `rebilld push` sends it",
                    e.id, e.action
                ),
                json!({"retried": e}),
            );
            Ok(())
        }
        OutboxCmd::Skip { id, reason } => {
            let skipped = ctx
                .store
                .skip_outbox_entry(id, &ctx.actor, &reason, ctx.clock.now())
                .await?;
            let also: Vec<String> = skipped.iter().skip(1).map(|i| i.to_string()).collect();
            let text = if also.is_empty() {
                format!("outbox entry {id} skipped: it will not be sent")
            } else {
                format!(
                    "outbox entry {id} skipped: it will not be sent, nor the entries waiting for it ({})",
                    also.join(", ")
                )
            };
            say(ctx, &text, json!({"skipped": skipped, "reason": reason}));
            Ok(())
        }
    }
}

async fn list(ctx: &Ctx, failed_only: bool) -> anyhow::Result<()> {
    let entries = ctx.store.outbox_open(failed_only).await?;
    let failed = entries
        .iter()
        .filter(|e| e.entry.status == OutboxStatus::Failed)
        .count();
    if ctx.json {
        println!("{}", json!(entries));
    } else {
        let tz = ctx.config.business.tz();
        let rows: Vec<Vec<String>> = entries
            .iter()
            .map(|l| {
                let e = &l.entry;
                vec![
                    e.id.to_string(),
                    l.invoice.clone(),
                    e.action.to_string(),
                    e.status.to_string(),
                    e.attempts.to_string(),
                    super::output::local_time(e.next_attempt_at, tz),
                    e.last_error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &[
                "entry",
                "invoice",
                "action",
                "status",
                "attempts",
                "next attempt",
                "last error",
            ],
            &rows,
        );
    }
    if failed > 0 {
        return Err(Unfinished::new(
            ExitStatus::Failed,
            format!(
                "{failed} remote action(s) failed: fix the cause, then `rebilld outbox retry ID` (or a resync), or `rebilld outbox skip ID --reason TEXT`"
            ),
        )
        .into());
    }
    Ok(())
}
