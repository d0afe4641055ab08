//! The daemon's sections, `[schedule]` and `[metrics]`. They stand here rather than in `daemon/`
//! because the pipeline, below the daemon, reads `schedule.claim_secs` and `schedule.lease_secs`
//! too: `Config` gathers them, and nothing below the daemon may import it.

use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::domain::Period;
use crate::settings::{ConfigError, at_least_one, zone};

/// `[schedule]`: when the monthly run is due.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Six-field cron (seconds first) in `timezone`: 02:00 on the 1st by default. It must fire in
    /// every month: a month without a time would never be billed.
    pub cron: String,
    /// `business.timezone` when absent or empty (see `Config::schedule_tz`).
    #[serde(with = "zone::optional")]
    pub timezone: Option<Tz>,
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
            timezone: None,
            outbox_every_secs: 30,
            spool_every_secs: 60,
            shutdown_timeout_secs: 30,
            claim_secs: 300,
            lease_secs: 120,
        }
    }
}

/// The months a cron must fire in: four years from a leap year, so the 29th of February counts
/// for what it is. A fixed range, not "from now": loading never reads the clock.
const CRON_CHECK_FROM: i32 = 2024;
const CRON_CHECK_YEARS: i32 = 4;

impl ScheduleConfig {
    /// `tz` is the zone the cron is read in (`Config::schedule_tz`).
    pub fn validate(&self, tz: Tz) -> Result<(), ConfigError> {
        for (key, value) in [
            ("schedule.outbox_every_secs", self.outbox_every_secs),
            ("schedule.spool_every_secs", self.spool_every_secs),
            ("schedule.shutdown_timeout_secs", self.shutdown_timeout_secs),
            ("schedule.claim_secs", self.claim_secs),
            ("schedule.lease_secs", self.lease_secs),
        ] {
            at_least_one(key, value)?;
        }
        let cron = match self.cron.parse::<Cron>() {
            Ok(c) if self.cron.split_whitespace().count() == 6 => c,
            _ => {
                return Err(ConfigError::new(
                    "schedule.cron",
                    format!(
                        "{:?} must have six fields, seconds first (e.g. \"0 0 2 1 * *\")",
                        self.cron
                    ),
                ));
            }
        };
        if let Some(month) = first_month_without(&cron, tz) {
            let (start, _) = month.bounds(tz);
            let reason = if cron
                .find_next_occurrence(&start.with_timezone(&tz), true)
                .is_err()
            {
                format!("{:?} never fires", self.cron)
            } else {
                format!(
                    "{:?} does not fire in every month (none in {month}), and a month without a run is never billed; use a day from 1 to 28",
                    self.cron
                )
            };
            return Err(ConfigError::new("schedule.cron", reason));
        }
        Ok(())
    }
}

/// The first month of the check range in which `cron` has no time, in `tz`.
fn first_month_without(cron: &Cron, tz: Tz) -> Option<Period> {
    let mut p = Period::new(CRON_CHECK_FROM, 1).ok()?;
    for _ in 0..CRON_CHECK_YEARS * 12 {
        let (start, end) = p.bounds(tz);
        let fires = cron
            .find_next_occurrence(&start.with_timezone(&tz), true)
            .is_ok_and(|t| t.with_timezone(&chrono::Utc) < end);
        if !fires {
            return Some(p);
        }
        p = p.next();
    }
    None
}

/// `[metrics]`: the health and Prometheus endpoint (off unless `listen` is set). It answers
/// without authentication, so it listens on loopback unless `allow_remote` says otherwise.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// e.g. "127.0.0.1:9187"; empty or absent: off.
    pub listen: Option<String>,
    /// Allow a `listen` address that is not loopback (e.g. "0.0.0.0:9187").
    pub allow_remote: bool,
    /// `/healthz` answers 503 once a remote action has stood failed for longer than this.
    pub failed_action_alert_secs: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            allow_remote: false,
            failed_action_alert_secs: 3600,
        }
    }
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.failed_action_alert_secs == 0 {
            return Err(ConfigError::new(
                "metrics.failed_action_alert_secs",
                "must be at least 1",
            ));
        }
        if let Some(l) = self.listen.as_deref().filter(|l| !l.is_empty()) {
            let addr = l.parse::<std::net::SocketAddr>().map_err(|_| {
                ConfigError::new("metrics.listen", format!("{l:?} is not an address:port"))
            })?;
            if !addr.ip().is_loopback() && !self.allow_remote {
                return Err(ConfigError::new(
                    "metrics.listen",
                    format!(
                        "{l:?} is not a loopback address, and /metrics and /healthz answer anyone who reaches them; use 127.0.0.1 or [::1], or set metrics.allow_remote = true"
                    ),
                ));
            }
        }
        Ok(())
    }
}
