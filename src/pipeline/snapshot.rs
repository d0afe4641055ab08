//! Step 1: read what the computation needs, as plain domain values: the customers, the services,
//! every holding (live or ended) of the months the invoice looks at, the items, the rated calls
//! of those months split by who held the service when each call started, the charges recorded
//! invoices already bill, the price histories of fees and recurring items, and each month's
//! extensions with their prices.

use std::collections::BTreeMap;

use chrono::Duration;
use chrono_tz::Tz;

use super::PipelineError;
use crate::domain::billing::{Holding, Prices, Snapshot, UsageTotal};
use crate::domain::owed::catch_up_window;
use crate::domain::{ItemKind, ItemStatus, Period, ServiceId};
use crate::store::Store;

/// The snapshot for period `period`, looking back `catch_up_months` (never before the first period
/// billed). For a resync (`resync = true`), the once-off items this period already billed are
/// presented as pending again so that the recomputation still contains them.
pub async fn take(
    store: &Store,
    period: Period,
    tz: Tz,
    catch_up_months: u32,
    resync: bool,
) -> Result<Snapshot, PipelineError> {
    let customers = store.customers().await?;
    let services = store.services().await?;
    let billing_start = store.billing_start().await?;
    let window = catch_up_window(period, billing_start, catch_up_months);
    let first = window.first().copied().unwrap_or(period);
    // Fees of `first..=period`, calls of the month before each.
    let usage_from = first.previous();
    let assignments = store
        .assignments_overlapping(
            usage_from.first_day(),
            period.last_day() + Duration::days(1),
        )
        .await?
        .into_iter()
        .map(|a| {
            Ok(Holding {
                service_id: a.service_id,
                customer_id: a.customer_id,
                state: a.state(),
                starts_on: a.starts_on,
                ends_on: a.ends_on,
                restored_on: a.restored_on,
                autotask: a.autotask()?,
            })
        })
        .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
    let mut items = store.items(None).await?;
    for item in &mut items {
        if item.kind == ItemKind::Once {
            match (item.status, item.invoiced_period) {
                (ItemStatus::Invoiced, Some(p)) if resync && p == period => {
                    item.status = ItemStatus::Pending;
                    item.invoiced_period = None;
                }
                // A resync does not pull in once-off items added since: they go on the next run.
                (ItemStatus::Pending, _) if resync => item.status = ItemStatus::Removed,
                _ => {}
            }
        }
    }
    let mut usage = Vec::new();
    let mut month = usage_from;
    while month < period {
        usage.extend(usage_by_holder(store, &assignments, month, tz).await?);
        month = month.next();
    }
    // A charge of the window may sit on any invoice up to the window's reach past this period.
    let mut last = period;
    for _ in 0..catch_up_months {
        last = last.next();
    }
    let billed = store.billed_charges(usage_from, last).await?;
    // Fees and recurring items are owed at the price in force on each day (a past period keeps
    // its prices after a change).
    let prices = Prices {
        services: store.service_prices().await?,
        items: store.item_prices().await?,
    };
    // Each month's extensions as its first run froze them (the current ones for a month not run).
    let months: Vec<Period> = window.iter().copied().chain([period]).collect();
    let extensions = store.extension_months(&months).await?;
    Ok(Snapshot {
        extensions,
        customers,
        services,
        assignments,
        items,
        usage,
        billed,
        billing_start,
        prices,
    })
}

/// The rated calls of `month`, per service and per customer who held it when each call started.
/// A service held by one customer the whole month takes its month total; a month shared between
/// holders is summed per holding, over the days each held it. Calls made while nobody held the
/// service belong to nobody and are left out.
async fn usage_by_holder(
    store: &Store,
    holdings: &[Holding],
    month: Period,
    tz: Tz,
) -> Result<Vec<UsageTotal>, PipelineError> {
    let (start, end) = month.bounds(tz);
    let mut by_service: BTreeMap<ServiceId, Vec<&Holding>> = BTreeMap::new();
    for h in holdings.iter().filter(|h| h.days_in(month).is_some()) {
        by_service.entry(h.service_id).or_default().push(h);
    }
    let mut out = Vec::new();
    for total in store.rated_call_totals(start, end).await? {
        let Some(held) = by_service.get(&total.service_id) else {
            continue;
        };
        if let [only] = held.as_slice()
            && only.days_in(month) == Some((month.first_day(), month.last_day()))
        {
            out.push(UsageTotal {
                service_id: total.service_id,
                customer_id: only.customer_id,
                period: month,
                calls: total.calls,
                seconds: total.seconds,
                cost: total.cost,
                price: total.price,
            });
            continue;
        }
        for h in held {
            let Some((first, last)) = h.days_in(month) else {
                continue;
            };
            let from = local_midnight(first, tz).max(start);
            let until = local_midnight(last + Duration::days(1), tz).min(end);
            let sum = store
                .rated_calls_of_service(total.service_id, from, until)
                .await?;
            if sum.calls > 0 {
                out.push(UsageTotal {
                    service_id: total.service_id,
                    customer_id: h.customer_id,
                    period: month,
                    calls: sum.calls,
                    seconds: sum.seconds,
                    cost: sum.cost,
                    price: sum.price,
                });
            }
        }
    }
    Ok(out)
}

/// The instant a local day begins in the business zone (a day starting in a DST gap begins at the
/// first instant that exists).
fn local_midnight(day: chrono::NaiveDate, tz: Tz) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let mut t = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    for _ in 0..4 {
        if let Some(x) = tz.from_local_datetime(&t).earliest() {
            return x.with_timezone(&chrono::Utc);
        }
        t += Duration::minutes(30);
    }
    t.and_utc()
}
