//! The period lease around a run or a resync: one process at a time per period, kept alive while
//! the work runs, released after. A holder that dies stops renewing; after the lease time another
//! process takes over. A period held by someone else is `PipelineError::PeriodHeld`; whether to
//! wait is the caller's choice (the daemon moves on, `rebilld run` waits, `--no-wait` does not).

use std::future::Future;
use std::time::Duration;

use super::{Pipeline, PipelineError};
use crate::domain::Period;

/// Runs `work` holding the lease of `period`, or fails at once with `PeriodHeld`.
pub async fn with_period_lease<F, Fut, T>(
    p: &Pipeline,
    period: Period,
    work: F,
) -> Result<T, PipelineError>
where
    F: FnOnce(Pipeline) -> Fut,
    Fut: Future<Output = Result<T, PipelineError>>,
{
    let secs = p.config.schedule.lease_secs.max(1);
    let ttl = chrono::Duration::seconds(secs as i64);
    if !p
        .store
        .try_acquire_period_lease(period, &p.owner, p.now(), ttl)
        .await?
    {
        return Err(PipelineError::PeriodHeld { period });
    }
    let renew = {
        let (store, owner, clock) = (p.store.clone(), p.owner.clone(), p.clock.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(secs * 1000 / 3)).await;
                match store
                    .renew_period_lease(period, &owner, clock.now() + ttl)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(%period, "lost the period lease");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(%period, error = %e, "could not renew the period lease")
                    }
                }
            }
        })
    };
    let result = work(p.clone()).await;
    renew.abort();
    p.store.release_period_lease(period, &p.owner).await?;
    result
}
