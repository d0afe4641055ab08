//! `rebilld service …`: the catalogue (import, list, show) and the assignment life-cycle
//! (assign, exclude — "trash can", restore, unassign — "minus").

use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use super::import::ImportReport;
use super::import::{Fields, Record, read_records};
use super::output::{say, table};
use crate::domain::{CustomerId, Money, NonEmpty, Period, Service, ServiceId, Transition};
use crate::store::{ServiceImport, ServiceUserImport};

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Import the catalogue (CSV or JSON; parents and children), idempotently by external reference
    Import {
        file: PathBuf,
        /// Ignore columns that are not service fields (without it, an unknown column refuses the file)
        #[arg(long)]
        allow_extra_columns: bool,
        /// A changed `monthly_price` of a service already in the catalogue is in force from this
        /// day (periods before it keep their price) [default: the 1st of next month in
        /// business.timezone]
        #[arg(long)]
        prices_from: Option<NaiveDate>,
    },
    /// Change a service's monthly price from a day on: periods before it keep their price, a
    /// month the change falls in is billed day by day at each price
    Price {
        id: ServiceId,
        /// The new monthly price (ex tax)
        #[arg(long)]
        price: Money,
        /// The first day of the new price [default: the 1st of next month in business.timezone].
        /// An earlier day reaches into periods that may be billed already: it is audited as
        /// retroactive, and their documents change when they are resynced
        #[arg(long)]
        from: Option<NaiveDate>,
    },
    /// List the catalogue (parents with their children)
    List {
        /// Only services that can be assigned (enabled for rebilling, not a parent)
        #[arg(long)]
        assignable: bool,
    },
    /// Show a service with its users and assignment history
    Show { id: ServiceId },
    /// Assign a service to a customer ("Assign Service")
    Assign(AssignArgs),
    /// Leave a service off the next invoice(s) ("trash can"): ASSIGNED → EXCLUDED
    Exclude { id: ServiceId },
    /// Put an excluded service back on the invoice: EXCLUDED → ASSIGNED
    Restore { id: ServiceId },
    /// Free an excluded service ("minus"): EXCLUDED → free
    Unassign {
        id: ServiceId,
        /// The first day the customer no longer holds it: fees are owed up to the day before,
        /// and its calls from this day on are not the customer's [default: today in
        /// business.timezone]
        #[arg(long)]
        ends_on: Option<NaiveDate>,
    },
}

#[derive(Debug, Args)]
pub struct AssignArgs {
    #[arg(required_unless_present = "from")]
    pub id: Option<ServiceId>,
    #[arg(long, required_unless_present = "from")]
    pub customer: Option<CustomerId>,
    /// First day it is billed (a part month is prorated) [default: the 1st of the current month
    /// in business.timezone, as for recurring items]; with --from, of the rows without one
    #[arg(long)]
    pub starts_on: Option<NaiveDate>,
    /// Assign many services from a CSV (or JSON) file with the columns service, customer (each
    /// an external reference or an id), starts_on, and for Autotask accounts contract, product
    /// and material_code. Every row is checked first; one bad row assigns nothing
    #[arg(long, conflicts_with_all = ["id", "customer", "contract", "product", "material_code"])]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub coding: super::autotask::CodingArgs,
}

pub async fn run(ctx: &Ctx, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Import {
            file,
            allow_extra_columns,
            prices_from,
        } => import(ctx, file, allow_extra_columns, prices_from).await,
        ServiceCmd::Price { id, price, from } => set_price(ctx, id, price, from).await,
        ServiceCmd::List { assignable } => list(ctx, assignable).await,
        ServiceCmd::Show { id } => show(ctx, id).await,
        ServiceCmd::Assign(a) => assign(ctx, a).await,
        ServiceCmd::Exclude { id } => transition(ctx, id, Transition::Exclude, None).await,
        ServiceCmd::Restore { id } => transition(ctx, id, Transition::Restore, None).await,
        ServiceCmd::Unassign { id, ends_on } => {
            transition(ctx, id, Transition::Unassign, ends_on).await
        }
    }
}

/// Parses one import record. `users` is `ref[=label]` separated by `;` in CSV, or an array in JSON.
pub fn service_from_record(r: &Record) -> Result<ServiceImport, String> {
    let f = Fields(&r.fields);
    if let Some(e) = f.error() {
        return Err(e);
    }
    let money = |key: &str| -> Result<Money, String> {
        match f.str(key) {
            Some(s) => Money::parse(&s).map_err(|e| format!("`{key}`: {e}")),
            None => Ok(Money::ZERO),
        }
    };
    let users = match r.fields.get("users") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => s
            .split(';')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| match u.split_once('=') {
                Some((r, l)) => ServiceUserImport {
                    user_ref: r.trim().into(),
                    label: Some(l.trim().into()),
                },
                None => ServiceUserImport {
                    user_ref: u.into(),
                    label: None,
                },
            })
            .collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|u| match u {
                serde_json::Value::String(s) => Ok(ServiceUserImport {
                    user_ref: s.clone(),
                    label: None,
                }),
                serde_json::Value::Object(o) => {
                    if let Some(k) = o
                        .keys()
                        .find(|k| !["user_ref", "label"].contains(&k.as_str()))
                    {
                        return Err(format!(
                            "`users`: unknown key {k:?} in a user (use user_ref and label)"
                        ));
                    }
                    let uf = Fields(o);
                    Ok(ServiceUserImport {
                        user_ref: uf.required("user_ref")?,
                        label: uf.str("label"),
                    })
                }
                other => Err(format!("`users`: {other} is not a user")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`users`: {other} is not a list")),
    };
    Ok(ServiceImport {
        external_ref: f.required("external_ref")?,
        parent_ref: f.str("parent_ref"),
        name: NonEmpty::parse("name", &f.required("name")?).map_err(|e| e.to_string())?,
        kind: f
            .str("kind")
            .unwrap_or_else(|| "voip".into())
            .to_ascii_lowercase(),
        rebill_enabled: f.bool("rebill_enabled", false)?,
        monthly_price: money("monthly_price")?,
        monthly_cost: money("monthly_cost")?,
        xero_account_code: f.str("xero_account_code"),
        xero_tax_type: f.str("xero_tax_type"),
        xero_item_code: f.str("xero_item_code"),
        users,
    })
}

/// The fields of a service import file (CSV columns or JSON keys).
pub const SERVICE_FIELDS: [&str; 11] = [
    "external_ref",
    "parent_ref",
    "name",
    "kind",
    "rebill_enabled",
    "monthly_price",
    "monthly_cost",
    "xero_account_code",
    "xero_tax_type",
    "xero_item_code",
    "users",
];

async fn import(
    ctx: &Ctx,
    file: PathBuf,
    allow_extra: bool,
    prices_from: Option<NaiveDate>,
) -> anyhow::Result<()> {
    let prices_from =
        prices_from.unwrap_or_else(|| next_price_day(ctx.clock.now(), ctx.config.business.tz()));
    let records = read_records(&file, &SERVICE_FIELDS, allow_extra)?;
    let mut parsed: Vec<(u64, Result<ServiceImport, String>)> = records
        .iter()
        .map(|r| (r.line, service_from_record(r)))
        .collect();
    // Parents first, whatever the order in the file.
    parsed.sort_by_key(|(line, s)| {
        (
            s.as_ref().map(|s| s.parent_ref.is_some()).unwrap_or(false),
            *line,
        )
    });
    let mut report = ImportReport::default();
    for (line, s) in parsed {
        let outcome = match s {
            Ok(s) => ctx
                .store
                .import_service_from(&ctx.actor, &s, Some(prices_from))
                .await
                .map(|(_, u)| u)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        report.record(&file, line, outcome);
    }
    report.finish(ctx, "services")
}

async fn list(ctx: &Ctx, assignable: bool) -> anyhow::Result<()> {
    let all = ctx.store.services().await?;
    let holders = ctx.store.live_assignments(None).await?;
    let shown: Vec<&Service> = if assignable {
        // A parent with assignable children is shown (as a heading) with them; it is not assignable itself.
        all.iter()
            .filter(|s| {
                s.assignability().is_ok()
                    || (s.is_parent
                        && all
                            .iter()
                            .any(|c| c.parent_id == Some(s.id) && c.assignability().is_ok()))
            })
            .collect()
    } else {
        all.iter().collect()
    };
    if ctx.json {
        let v: Vec<_> = shown
            .iter()
            .map(|s| {
                let holder = holders.iter().find(|a| a.service_id == s.id);
                json!({"service": s, "assignable": s.assignability().is_ok(), "assignment": holder})
            })
            .collect();
        println!("{}", json!(v));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|s| {
            let holder = holders.iter().find(|a| a.service_id == s.id);
            let name = if s.parent_id.is_some() {
                format!("  └ {}", s.name)
            } else {
                s.name.to_string()
            };
            let status = if s.is_parent {
                "parent (choose a child)".to_string()
            } else if !s.rebill_enabled {
                "not enabled for rebilling".to_string()
            } else {
                match holder {
                    Some(a) => format!("{} to {} ({})", a.state(), a.customer_id, a.customer_name),
                    None => "free".to_string(),
                }
            };
            vec![
                s.id.to_string(),
                name,
                s.kind.clone(),
                s.monthly_price.to_string(),
                s.users.len().to_string(),
                status,
            ]
        })
        .collect();
    table(
        &["id", "service", "kind", "monthly", "users", "status"],
        &rows,
    );
    Ok(())
}

async fn show(ctx: &Ctx, id: ServiceId) -> anyhow::Result<()> {
    let s = ctx.store.service(id).await?;
    let history = ctx.store.assignment_history(id).await?;
    if ctx.json {
        let prices = ctx.store.service_price_history(id).await?;
        println!(
            "{}",
            json!({"service": s, "prices": prices, "assignments": history})
        );
        return Ok(());
    }
    println!("service {} — {} ({})", s.id, s.name, s.kind);
    println!(
        "  rebilling: {}",
        if s.rebill_enabled {
            "enabled"
        } else {
            "not enabled"
        }
    );
    println!(
        "  monthly:   price {} / cost {}",
        s.monthly_price, s.monthly_cost
    );
    let prices = ctx.store.service_price_history(id).await?;
    println!("\nprices:");
    let rows: Vec<Vec<String>> = prices
        .changes()
        .iter()
        .map(|c| {
            vec![
                c.from
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "the beginning".into()),
                c.amount.to_string(),
            ]
        })
        .collect();
    table(&["from", "monthly price"], &rows);
    println!("\nusers:");
    let rows: Vec<Vec<String>> = s
        .users
        .iter()
        .map(|u| vec![u.user_ref.clone(), u.label.clone().unwrap_or_default()])
        .collect();
    table(&["user", "label"], &rows);
    println!("\nassignments (newest first):");
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|a| {
            vec![
                format!("{} ({})", a.customer_id, a.customer_name),
                a.state().to_string(),
                a.starts_on.to_string(),
                super::output::local_time(a.changed_at, ctx.config.business.tz()),
                a.changed_by.clone(),
            ]
        })
        .collect();
    table(&["customer", "state", "since", "changed", "by"], &rows);
    Ok(())
}

async fn assign(ctx: &Ctx, a: AssignArgs) -> anyhow::Result<()> {
    let starts_on = a
        .starts_on
        .unwrap_or_else(|| default_starts_on(ctx.clock.now(), ctx.config.business.tz()));
    if let Some(file) = &a.from {
        return super::assign_import::run(ctx, file, starts_on).await;
    }
    let (Some(id), Some(customer)) = (a.id, a.customer) else {
        anyhow::bail!("give the service and --customer, or --from FILE");
    };
    let coding = a.coding.coding();
    if let Some(c) = &coding {
        let customer = ctx.store.customer(customer).await?;
        let period = Period::of_date(starts_on);
        super::autotask::validate_coding(ctx, &customer, c, period)
            .await
            .with_context(|| {
                format!(
                    "service {} was not assigned to customer {} ({})",
                    id, customer.id, customer.name
                )
            })?;
    }
    let view = ctx
        .store
        .assign(&ctx.actor, id, customer, starts_on, coding)
        .await?;
    say(
        ctx,
        &format!(
            "service {} ({}) is ASSIGNED to customer {} ({}) from {}",
            view.service_id,
            view.service_name,
            view.customer_id,
            view.customer_name,
            view.starts_on
        ),
        json!(view),
    );
    Ok(())
}

/// The default first day of a new price: the 1st of next month in the business zone, so that no
/// period already billed (the current month is billed in advance) changes.
pub fn next_price_day(now: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> NaiveDate {
    Period::containing(now, tz).next().first_day()
}

/// Whether a price from `from` reaches into a period that may already be billed, and the message
/// that tells ops what to resync.
pub fn retroactive_note(
    from: NaiveDate,
    now: chrono::DateTime<chrono::Utc>,
    tz: chrono_tz::Tz,
) -> Option<String> {
    let current = Period::containing(now, tz);
    (from < current.next().first_day()).then(|| {
        let first = Period::of_date(from);
        let periods = if first == current {
            format!("{current}")
        } else {
            format!("{first} to {current}")
        };
        format!(
            "the change reaches back into {periods}: documents already sent keep their amounts until the period is resynced (`rebilld --resync --period {first}`, then each later one)"
        )
    })
}

async fn set_price(
    ctx: &Ctx,
    id: ServiceId,
    price: Money,
    from: Option<NaiveDate>,
) -> anyhow::Result<()> {
    let (now, tz) = (ctx.clock.now(), ctx.config.business.tz());
    let from = from.unwrap_or_else(|| next_price_day(now, tz));
    let note = retroactive_note(from, now, tz);
    let s = ctx.store.service(id).await?;
    let set = ctx
        .store
        .set_service_price(&ctx.actor, id, price, from, note.is_some())
        .await?;
    let mut text = format!(
        "service {} ({}) costs {} a month from {} (was {})",
        s.id, s.name, set.amount, set.from, set.was
    );
    if let Some(n) = note {
        text.push_str(&format!("\nnote: {n}"));
    }
    say(ctx, &text, json!(set));
    Ok(())
}

/// Without `--starts-on` a service is billed from the 1st of the current month in the business
/// zone, as recurring items are: assigning on the 28th bills the whole month, not 3 days of it.
pub fn default_starts_on(now: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> NaiveDate {
    Period::containing(now, tz).first_day()
}

async fn transition(
    ctx: &Ctx,
    id: ServiceId,
    t: Transition,
    on: Option<NaiveDate>,
) -> anyhow::Result<()> {
    let tz = ctx.config.business.tz();
    let on = on.unwrap_or_else(|| ctx.clock.now().with_timezone(&tz).date_naive());
    let view = ctx.store.transition(&ctx.actor, id, t, on).await?;
    let text = match t {
        Transition::Exclude => format!(
            "service {} ({}) is EXCLUDED: it is left off customer {}'s invoices until restored",
            view.service_id, view.service_name, view.customer_id
        ),
        Transition::Restore => {
            format!(
                "service {} ({}) is ASSIGNED to customer {} again",
                view.service_id, view.service_name, view.customer_id
            )
        }
        Transition::Unassign => format!(
            "service {} ({}) is free from {on}: it is no longer assigned to customer {} ({})",
            view.service_id, view.service_name, view.customer_id, view.customer_name
        ),
    };
    say(ctx, &text, json!(view));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_new_price_defaults_to_the_first_of_next_month_and_earlier_days_are_retroactive() {
        let tz = chrono_tz::Australia::Sydney;
        // 14:00 UTC on 30 November is already 1 December in Sydney.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 30, 14, 0, 0)
            .unwrap();
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(next_price_day(now, tz), d("2027-01-01"));
        assert!(retroactive_note(d("2027-01-01"), now, tz).is_none());
        let note = retroactive_note(d("2026-11-15"), now, tz).unwrap();
        assert!(note.contains("2026-11 to 2026-12"), "{note}");
        assert!(retroactive_note(d("2026-12-15"), now, tz).is_some());
    }

    #[test]
    fn an_assignment_without_starts_on_begins_on_the_first_of_the_current_month() {
        // 28 November in Sydney: the whole of November is billed, not 3 days of it.
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 28, 3, 0, 0).unwrap();
        let tz = chrono_tz::Australia::Sydney;
        assert_eq!(
            default_starts_on(now, tz),
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
        );
        // 14:00 UTC on 30 November is already 1 December in Sydney.
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 30, 14, 0, 0)
            .unwrap();
        assert_eq!(
            default_starts_on(now, tz),
            NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()
        );
    }
}
