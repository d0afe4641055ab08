//! The VoIP service summary of one month (DESIGN §1): totals, a breakdown by call type, calls per
//! user, the reseller's cost against the rebilled price, then each user's calls ("No Records Found"
//! for a user without calls). Totals come from aggregate queries; the per-call detail is streamed a
//! page at a time, never the whole month in memory.

use std::io::Write;

use chrono::DateTime;
use chrono_tz::Tz;
use serde::Serialize;

use super::csv_out::CsvOut;
use crate::domain::{Money, Period, ServiceId};
use crate::store::calls::{CallDetail, CallGroup};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub calls: i64,
    pub seconds: i64,
    /// What the calls are billed at (the customer's price).
    pub total: Money,
    /// The wholesale cost and the margin: for the reseller's eyes only.
    pub wholesale_cost: Money,
    pub margin: Money,
    /// Calls without a price (no plan, or no rate for their type): counted in `calls`, not in
    /// `total`, and never billed until `cdr rerate` prices them.
    pub unrated_calls: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub service_id: i64,
    pub service_name: String,
    pub period: String,
    pub totals: Totals,
    pub by_call_type: Vec<CallGroup>,
    pub by_user: Vec<CallGroup>,
    pub users: Vec<String>,
}

/// The summary's aggregates (the per-call detail is written by `write_details`).
pub async fn summary(
    store: &Store,
    service: ServiceId,
    period: Period,
) -> Result<Summary, StoreError> {
    let s = store.service(service).await?;
    let by_call_type = store.call_groups(service, period, false).await?;
    let by_user = store.call_groups(service, period, true).await?;
    let sum = |what: &str, f: fn(&CallGroup) -> i64| {
        by_call_type
            .iter()
            .try_fold(0i64, |acc, g| acc.checked_add(f(g)))
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the {what} of service {service} in {period} overflows: a call's cost or price is absurd"
                ))
            })
    };
    let total = Money::from_micros(sum("price", |g| g.price_micros)?);
    let cost = Money::from_micros(sum("cost", |g| g.cost_micros)?);
    let mut users: Vec<String> = s.users.iter().map(|u| u.user_ref.clone()).collect();
    for g in &by_user {
        if !users.contains(&g.key) {
            users.push(g.key.clone());
        }
    }
    Ok(Summary {
        service_id: s.id.get(),
        service_name: s.name.to_string(),
        period: period.to_string(),
        totals: Totals {
            calls: sum("calls", |g| g.calls)?,
            seconds: sum("seconds", |g| g.seconds)?,
            unrated_calls: sum("unrated calls", |g| g.unrated)?,
            total: total.round_cents(),
            wholesale_cost: cost.round_cents(),
            // From the rounded figures, so that the three shown add up: total = wholesale + margin.
            margin: total.round_cents() - cost.round_cents(),
        },
        by_call_type,
        by_user,
        users,
    })
}

fn mmss(secs: i64) -> String {
    format!("{}:{:02}", secs / 60, secs % 60)
}

fn local(ts: i64, tz: Tz) -> String {
    DateTime::from_timestamp(ts, 0)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Streams each user's calls: `on_call(user, Some(call))` per call, `on_call(user, None)` for a
/// user without calls.
pub async fn for_each_call(
    store: &Store,
    summary: &Summary,
    period: Period,
    tz: Tz,
    on_call: impl FnMut(&str, Option<&CallDetail>) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    let (start, end) = period.bounds(tz);
    let service = ServiceId::new(summary.service_id)?;
    store
        .stream_user_calls(
            service,
            &summary.users,
            start.timestamp(),
            end.timestamp(),
            on_call,
        )
        .await
}

/// Writes the summary as a readable report, JSON or CSV.
pub async fn write(
    store: &Store,
    service: ServiceId,
    period: Period,
    tz: Tz,
    format: &str,
    out: &mut dyn Write,
) -> Result<Summary, StoreError> {
    let s = summary(store, service, period).await?;
    let w = |e: std::io::Error| StoreError::Corrupt(format!("write: {e}"));
    let price = |c: &CallDetail| {
        c.price_micros
            .map(|p| Money::from_micros(p).to_string())
            .unwrap_or_else(|| "unrated".into())
    };
    match format {
        "json" => {
            // Streamed: the aggregates, then each call as it is read, never the month in memory.
            let head = serde_json::to_string(&s)
                .map_err(|e| StoreError::Corrupt(format!("summary JSON: {e}")))?;
            write!(out, "{{\"summary\":{head},\"calls\":[").map_err(w)?;
            let mut first = true;
            for_each_call(store, &s, period, tz, |u, c| {
                let Some(c) = c else { return Ok(()) };
                let call = serde_json::json!({"user": u, "destination": c.destination, "started_at": local(c.started_at, tz),
                    "duration_secs": c.duration_secs, "call_type": c.call_type,
                    "cost": c.price_micros.map(|p| Money::from_micros(p).to_string()), "rated": c.price_micros.is_some()});
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                write!(out, "{call}")
            })
            .await?;
            let users_without_calls: Vec<&String> = s
                .users
                .iter()
                .filter(|u| !s.by_user.iter().any(|g| &g.key == *u))
                .collect();
            writeln!(
                out,
                "],\"users_without_calls\":{}}}",
                serde_json::json!(users_without_calls)
            )
            .map_err(w)?;
        }
        "csv" => {
            // Data columns hold data only: a user without calls has empty ones and says so in
            // `note`, as an unrated call does (its cost is empty, never a word in a number column).
            let mut csv = CsvOut::new(&mut *out);
            let bad = |e: csv::Error| StoreError::Corrupt(format!("write: {e}"));
            csv.row([
                "user",
                "destination",
                "date_time",
                "duration_secs",
                "call_type",
                "cost",
                "note",
            ])
            .map_err(bad)?;
            let as_io = |e: csv::Error| std::io::Error::other(e.to_string());
            for_each_call(store, &s, period, tz, |u, c| match c {
                Some(c) => csv
                    .row([
                        u,
                        &c.destination,
                        &local(c.started_at, tz),
                        &c.duration_secs.to_string(),
                        &c.call_type,
                        &c.price_micros
                            .map(|p| Money::from_micros(p).to_string())
                            .unwrap_or_default(),
                        if c.price_micros.is_some() {
                            ""
                        } else {
                            "unrated"
                        },
                    ])
                    .map_err(as_io),
                None => csv.row([u, "", "", "", "", "", "no calls"]).map_err(as_io),
            })
            .await?;
            csv.flush().map_err(w)?;
        }
        _ => {
            writeln!(
                out,
                "VoIP service summary — service {} ({}) — {}",
                s.service_id, s.service_name, s.period
            )
            .map_err(w)?;
            writeln!(
                out,
                "  total cost:  {}   total calls: {}   duration: {}",
                s.totals.total,
                s.totals.calls,
                mmss(s.totals.seconds)
            )
            .map_err(w)?;
            writeln!(
                out,
                "  wholesale:   {}   margin: {}   (reseller only)",
                s.totals.wholesale_cost, s.totals.margin
            )
            .map_err(w)?;
            if s.totals.unrated_calls > 0 {
                writeln!(
                    out,
                    "  UNRATED:     {} calls have no price (no plan, or no rate for their type) and are not in the total;\n               fix the plan, then `rebilld cdr rerate --period {}`",
                    s.totals.unrated_calls, s.period
                )
                .map_err(w)?;
            }
            writeln!(out, "\nby call type:").map_err(w)?;
            let rows: Vec<Vec<String>> = s
                .by_call_type
                .iter()
                .map(|g| {
                    vec![
                        g.key.clone(),
                        g.calls.to_string(),
                        mmss(g.seconds),
                        Money::from_micros(g.price_micros).round_cents().to_string(),
                        if g.unrated > 0 {
                            format!("{} unrated", g.unrated)
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect();
            write!(
                out,
                "{}",
                crate::table::render_table(&["type", "calls", "duration", "cost", ""], &rows)
            )
            .map_err(w)?;
            writeln!(out, "\ncalls per user:").map_err(w)?;
            let rows: Vec<Vec<String>> = s
                .users
                .iter()
                .map(|u| {
                    let n = s
                        .by_user
                        .iter()
                        .find(|g| &g.key == u)
                        .map(|g| g.calls)
                        .unwrap_or(0);
                    vec![u.clone(), n.to_string()]
                })
                .collect();
            write!(
                out,
                "{}",
                crate::table::render_table(&["user", "calls"], &rows)
            )
            .map_err(w)?;
            let mut current: Option<String> = None;
            for_each_call(store, &s, period, tz, |u, c| {
                if current.as_deref() != Some(u) {
                    writeln!(out, "\nuser {u}:")?;
                    if c.is_some() {
                        writeln!(
                            out,
                            "  {:<16} {:<19} {:>8} {:>10}",
                            "destination", "date/time", "duration", "cost"
                        )?;
                    }
                    current = Some(u.to_string());
                }
                match c {
                    Some(c) => writeln!(
                        out,
                        "  {:<16} {:<19} {:>8} {:>10}",
                        c.destination,
                        local(c.started_at, tz),
                        mmss(i64::from(c.duration_secs)),
                        price(c)
                    ),
                    None => writeln!(out, "  No Records Found"),
                }
            })
            .await?;
        }
    }
    Ok(s)
}
