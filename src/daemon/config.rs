use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[schedule]`: when the monthly run is due.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Six-field cron (seconds first) in `timezone`: 02:00 on the 1st by default.
    pub cron: String,
    /// Defaults to `business.timezone` when empty.
    pub timezone: String,
    /// How often the daemon pushes what is due in the outbox.
    pub outbox_every_secs: u64,
    /// How often the daemon looks in `cdr.spool_dir`.
    pub spool_every_secs: u64,
    /// How long SIGTERM waits for the remote action in flight.
    pub shutdown_timeout_secs: u64,
    /// How long a claimed remote action is reserved for its worker; after that (its worker died)
    /// another worker, or this one restarted, takes it over and first looks for what it created.
    pub claim_secs: u64,
    /// How long a period lease lasts without renewal (renewed every third of it while running).
    pub lease_secs: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            cron: "0 0 2 1 * *".into(),
            timezone: String::new(),
            outbox_every_secs: 30,
            spool_every_secs: 60,
            shutdown_timeout_secs: 30,
            claim_secs: 300,
            lease_secs: 120,
        }
    }
}

impl ScheduleConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.outbox_every_secs == 0 || self.spool_every_secs == 0 {
            return Err(ConfigError::new(
                "schedule.outbox_every_secs",
                "intervals must be at least 1 second",
            ));
        }
        if self.cron.split_whitespace().count() != 6 || self.cron.parse::<croner::Cron>().is_err() {
            return Err(ConfigError::new(
                "schedule.cron",
                format!(
                    "{:?} must have six fields, seconds first (e.g. \"0 0 2 1 * *\")",
                    self.cron
                ),
            ));
        }
        if self.outbox_every_secs == 0 || self.spool_every_secs == 0 {
            return Err(ConfigError::new(
                "schedule.outbox_every_secs",
                "intervals must be at least 1 second",
            ));
        }
        if !self.timezone.is_empty() && self.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ConfigError::new(
                "schedule.timezone",
                format!("{:?} is not an IANA time zone", self.timezone),
            ));
        }
        Ok(())
    }
}

/// `[metrics]`: the loopback health and Prometheus endpoint (off unless `listen` is set).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// e.g. "127.0.0.1:9187"; empty or absent: off.
    pub listen: Option<String>,
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(l) = self.listen.as_deref().filter(|l| !l.is_empty()) {
            l.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::new("metrics.listen", format!("{l:?} is not an address:port"))
            })?;
        }
        Ok(())
    }
}
