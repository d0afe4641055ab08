//! The unattended daemon: schedule trigger, catch-up, systemd notify and watchdog, signals, the
//! metrics endpoint. (Issue: daemon.) Sits on top of `pipeline`.

mod config;

pub use config::{MetricsConfig, ScheduleConfig};
