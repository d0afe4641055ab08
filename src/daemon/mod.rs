//! The unattended daemon: the schedule trigger and catch-up (`schedule.rs`), systemd notify and
//! watchdog, signals, the metrics endpoint. Sits on top of `pipeline` (which owns the period
//! lease).

pub mod metrics;
mod run;
pub mod schedule;

pub use run::{next_run_description, next_run_skipping, run, schedule_of, stop_on_signals, tick};
