//! The unattended daemon: the schedule trigger and catch-up (`schedule.rs`), the period lease
//! (`lease.rs`), systemd notify and watchdog, signals, the metrics endpoint. Sits on top of
//! `pipeline`.

mod config;
mod lease;
pub mod metrics;
mod run;
pub mod schedule;

pub use config::{MetricsConfig, ScheduleConfig};
pub use lease::{run_period, with_period_lease};
pub use run::{run, tick};

use chrono::{DateTime, Utc};

use crate::config::Config;

/// The schedule of a configuration (its zone defaults to `business.timezone`).
pub fn schedule_of(config: &Config) -> Result<schedule::Schedule, String> {
    let tz = if config.schedule.timezone.is_empty() {
        config.business.tz()
    } else {
        config
            .schedule
            .timezone
            .parse()
            .map_err(|_| format!("schedule.timezone {:?}", config.schedule.timezone))?
    };
    schedule::Schedule::parse(&config.schedule.cron, tz)
}

/// "2026-12-01 02:00 AEDT (period 2026-12)".
pub fn next_run_description(config: &Config, now: DateTime<Utc>) -> String {
    match schedule_of(config) {
        Ok(s) => match s.next_after(now) {
            Some(t) => format!(
                "{} (period {})",
                s.describe(t),
                crate::domain::Period::containing(t, s.tz)
            ),
            None => "none in the next two years (check schedule.cron)".into(),
        },
        Err(e) => format!("unknown: {e}"),
    }
}
