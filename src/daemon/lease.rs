//! The period lease around a run or a resync: one process at a time per period, kept alive while
//! the work runs, released after. A holder that dies stops renewing; after the lease time another
//! process takes over.

use std::future::Future;
use std::time::Duration;

use crate::domain::Period;
use crate::pipeline::{Pipeline, RunReport};

/// Runs `work` holding the lease of `period`. Waits (saying so once) while another process holds
/// it, or fails at once with `no_wait`.
pub async fn with_period_lease<F, Fut, T, E>(
    p: &Pipeline,
    period: Period,
    no_wait: bool,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Pipeline) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let secs = p.config.schedule.lease_secs.max(1);
    let ttl = chrono::Duration::seconds(secs as i64);
    let mut said = false;
    while !p
        .store
        .try_acquire_period_lease(period, &p.owner, p.now(), ttl)
        .await?
    {
        if no_wait {
            anyhow::bail!(
                "period {period} is being billed or resynced by another process; try again later"
            );
        }
        if !said {
            eprintln!("waiting: period {period} is held by another process (a run or a resync)");
            said = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
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
    let result = work(p.clone()).await.map_err(Into::into);
    renew.abort();
    p.store.release_period_lease(period, &p.owner).await?;
    result
}

/// A billing run of `period` as the schedule or `rebilld run` does it: under the lease, recorded in
/// `billing_runs`. Running a period again only pushes what is still due (recording is idempotent).
pub async fn run_period(p: &Pipeline, period: Period, no_wait: bool) -> anyhow::Result<RunReport> {
    with_period_lease(p, period, no_wait, |p| async move {
        p.store.mark_period_running(period, p.now()).await?;
        match p.run_period(period).await {
            Ok(r) => {
                p.store.mark_period_done(period, p.now()).await?;
                Ok(r)
            }
            Err(e) => {
                p.store.mark_period_failed(period, &e.to_string()).await?;
                Err(anyhow::Error::from(e))
            }
        }
    })
    .await
}
