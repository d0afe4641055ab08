//! Step 1: read what the computation needs, as plain domain values.

use chrono_tz::Tz;

use super::PipelineError;
use crate::domain::billing::{LiveAssignment, Snapshot, UsageTotal};
use crate::domain::{ItemKind, ItemStatus, Period};
use crate::store::Store;

/// The snapshot for period `period`: calls are those of the month before (billed in arrears).
/// For a resync (`resync = true`), the once-off items this period already billed are presented as
/// pending again so that the recomputation still contains them.
pub async fn take(
    store: &Store,
    period: Period,
    tz: Tz,
    resync: bool,
) -> Result<Snapshot, PipelineError> {
    let customers = store.customers().await?;
    let services = store.services().await?;
    let assignments = store
        .live_assignments(None)
        .await?
        .into_iter()
        .map(|a| {
            Ok(LiveAssignment {
                service_id: a.service_id,
                customer_id: a.customer_id,
                state: a.state(),
                starts_on: a.starts_on,
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
    let usage_period = period.previous();
    let (start, end) = usage_period.bounds(tz);
    let usage = store
        .rated_call_totals(start, end)
        .await?
        .into_iter()
        .map(|t| UsageTotal {
            service_id: t.service_id,
            period: usage_period,
            calls: t.calls,
            seconds: t.seconds,
            cost: t.cost,
            price: t.price,
        })
        .collect();
    Ok(Snapshot {
        customers,
        services,
        assignments,
        items,
        usage,
    })
}
