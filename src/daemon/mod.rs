//! The unattended daemon: the schedule trigger and catch-up (`schedule.rs`), the period lease
//! (`lease.rs`), systemd notify and watchdog, signals, the metrics endpoint. Sits on top of
//! `pipeline`.

mod lease;
pub mod metrics;
mod run;
pub mod schedule;

pub use lease::{run_period, with_period_lease};
pub use run::{next_run_description, run, schedule_of, tick};
