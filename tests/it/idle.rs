//! An idle outbox tick asks nothing of the remotes: the daemon drains the outbox every tick, and
//! a tick with no work must not spend the Autotask tenant's hourly budget (shared with every other
//! integration on it) reading its thresholds.

use chrono::Duration;
use rebill::clock::Clock;

use crate::common::TestApp;
use crate::common::world::{build, nov};

async fn an_idle_outbox_tick_sends_no_request(app: TestApp) {
    let w = build(&app).await;
    w.pipeline.run_period(nov()).await.unwrap();
    assert!(app.store.outbox(None).await.unwrap().is_empty());
    let (autotask, xero) = (w.sandboxes.autotask.requests(), w.sandboxes.xero.requests());
    for _ in 0..3 {
        w.clock.advance(Duration::minutes(1));
        w.pipeline.drain(w.clock.now()).await.unwrap();
    }
    assert_eq!(
        w.sandboxes.autotask.requests(),
        autotask,
        "no Autotask request (thresholds included) without Autotask work"
    );
    assert_eq!(w.sandboxes.xero.requests(), xero, "no Xero request either");
}

backend_tests!(an_idle_outbox_tick_sends_no_request,);
