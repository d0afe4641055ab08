//! `rebilld item …` (once-off and recurring items) and `rebilld audit`.

use chrono::NaiveDate;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use super::output::{say, table};
use crate::domain::{CustomerId, Item, ItemId, ItemKind, Money, NonEmpty, Period};
use crate::store::NewItem;

#[derive(Debug, Subcommand)]
pub enum ItemCmd {
    /// Add a once-off item: billed on the next run only
    AddOnce(AddItemArgs),
    /// Add a recurring item: billed every run until removed (a part first month is prorated)
    AddRecurring(AddItemArgs),
    /// Change an item's description or amount (not once it was invoiced). A recurring item's
    /// amount is corrected for every day its newest price applies; `item price` changes it from a day
    /// on
    Edit {
        id: ItemId,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        amount: Option<Money>,
    },
    /// Change a recurring item's monthly amount from a day on: periods before it keep their
    /// amount, a month the change falls in is billed day by day at each amount
    Price {
        id: ItemId,
        /// The new monthly amount (ex tax)
        #[arg(long, allow_hyphen_values = true)]
        amount: Money,
        /// The first day of the new amount [default: the 1st of next month in
        /// business.timezone]. An earlier day reaches into periods that may be billed already:
        /// it is audited as retroactive, and their documents change when they are resynced
        #[arg(long)]
        from: Option<NaiveDate>,
    },
    /// Remove an item (a recurring item can be re-enabled later)
    Remove { id: ItemId },
    /// Re-enable a removed recurring item
    Restore { id: ItemId },
    /// List items
    List {
        #[arg(long)]
        customer: Option<CustomerId>,
    },
}

#[derive(Debug, Args)]
pub struct AddItemArgs {
    #[arg(long)]
    pub customer: CustomerId,
    #[arg(long)]
    pub description: String,
    /// The value (ex tax); a recurring item's monthly value
    #[arg(long, allow_hyphen_values = true)]
    pub amount: Money,
    /// Recurring items: the first day billed [default: the 1st of the current month]
    #[arg(long)]
    pub starts_on: Option<NaiveDate>,
    #[command(flatten)]
    pub coding: super::autotask::CodingArgs,
}

pub async fn run(ctx: &Ctx, cmd: ItemCmd) -> anyhow::Result<()> {
    match cmd {
        ItemCmd::AddOnce(a) => add(ctx, ItemKind::Once, a).await,
        ItemCmd::AddRecurring(a) => add(ctx, ItemKind::Recurring, a).await,
        ItemCmd::Edit {
            id,
            description,
            amount,
        } => {
            let description = description
                .map(|d| NonEmpty::parse("description", &d))
                .transpose()?;
            let i = ctx
                .store
                .edit_item(&ctx.actor, id, description, amount)
                .await?;
            say(
                ctx,
                &format!(
                    "item {} is now {:?} at {}",
                    i.id,
                    i.description.as_str(),
                    i.amount
                ),
                json!(i),
            );
            Ok(())
        }
        ItemCmd::Price { id, amount, from } => {
            let (now, tz) = (ctx.clock.now(), ctx.config.business.tz());
            let from = from.unwrap_or_else(|| super::service::next_price_day(now, tz));
            let note = super::service::retroactive_note(from, now, tz);
            let set = ctx
                .store
                .set_item_price(&ctx.actor, id, amount, from, note.is_some())
                .await?;
            let mut text = format!(
                "recurring item {id} is {} a month from {} (was {})",
                set.amount, set.from, set.was
            );
            if let Some(n) = note {
                text.push_str(&format!("\nnote: {n}"));
            }
            say(ctx, &text, json!(set));
            Ok(())
        }
        ItemCmd::Remove { id } => {
            let i = ctx.store.remove_item(&ctx.actor, id).await?;
            say(
                ctx,
                &format!("item {} ({}) is removed", i.id, i.description),
                json!(i),
            );
            Ok(())
        }
        ItemCmd::Restore { id } => {
            let i = ctx.store.restore_item(&ctx.actor, id).await?;
            say(
                ctx,
                &format!(
                    "recurring item {} ({}) is active again",
                    i.id, i.description
                ),
                json!(i),
            );
            Ok(())
        }
        ItemCmd::List { customer } => list(ctx, customer).await,
    }
}

async fn add(ctx: &Ctx, kind: ItemKind, a: AddItemArgs) -> anyhow::Result<()> {
    let coding = a.coding.coding();
    let starts_on = match kind {
        ItemKind::Once => {
            if a.starts_on.is_some() {
                anyhow::bail!(
                    "--starts-on applies to recurring items only; a once-off item is billed on the next run"
                );
            }
            None
        }
        ItemKind::Recurring => Some(a.starts_on.unwrap_or_else(|| {
            let tz = ctx.config.business.tz();
            Period::containing(ctx.clock.now(), tz).first_day()
        })),
    };
    if let Some(c) = &coding {
        let customer = ctx.store.customer(a.customer).await?;
        let on = starts_on.unwrap_or_else(|| {
            Period::containing(ctx.clock.now(), ctx.config.business.tz()).first_day()
        });
        super::autotask::validate_coding(ctx, &customer, c, Period::of_date(on)).await?;
    }
    let new = NewItem {
        customer_id: a.customer,
        kind,
        description: NonEmpty::parse("description", &a.description)?,
        amount: a.amount,
        starts_on,
        autotask: coding,
    };
    let i = ctx.store.add_item(&ctx.actor, &new).await?;
    say(
        ctx,
        &format!(
            "added {} item {} for customer {}: {} {}",
            kind.as_str(),
            i.id,
            i.customer_id,
            i.description,
            i.amount
        ),
        json!(i),
    );
    Ok(())
}

async fn list(ctx: &Ctx, customer: Option<CustomerId>) -> anyhow::Result<()> {
    let items: Vec<Item> = ctx.store.items(customer).await?;
    if ctx.json {
        println!("{}", json!(items));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.customer_id.to_string(),
                i.kind.as_str().into(),
                i.description.to_string(),
                i.amount.to_string(),
                i.starts_on.map(|d| d.to_string()).unwrap_or_default(),
                match i.invoiced_period {
                    Some(p) => format!("invoiced ({p})"),
                    None => i.status.label().into(),
                },
            ]
        })
        .collect();
    table(
        &[
            "item",
            "customer",
            "kind",
            "description",
            "amount",
            "starts",
            "status",
        ],
        &rows,
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this kind of record (customer, service, assignment, item)
    #[arg(long)]
    pub entity: Option<String>,
    /// Only this record's id (with --entity)
    #[arg(long, requires = "entity")]
    pub id: Option<String>,
    /// How many records, newest first
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

pub async fn audit(ctx: &Ctx, a: AuditArgs) -> anyhow::Result<()> {
    let records = ctx
        .store
        .audit_log(a.entity.as_deref(), a.id.as_deref(), a.limit)
        .await?;
    if ctx.json {
        println!("{}", json!(records));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                super::output::local_time_secs(r.at, ctx.config.business.tz()),
                r.actor.clone(),
                format!("{} {}", r.entity, r.entity_id),
                r.action.clone(),
                r.after_json.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["when", "who", "what", "action", "after"], &rows);
    Ok(())
}
