//! The configuration, gathered: the TOML file, then `REBILL_<SECTION>__<KEY>` environment
//! overrides (`env.rs`), then secrets from `*_file` keys or systemd credentials
//! (`$CREDENTIALS_DIRECTORY`). Values are parsed into their types while they are read (time zones,
//! log format and level, Xero grant and invoice status), so a bad value stops the program at start
//! (exit status 78, EX_CONFIG) with its source, its key and the reason.
//!
//! Each module keeps its own section next to it (`store::DatabaseConfig`, `xero::XeroConfig`,
//! `autotask::AutotaskConfig`, `cdr::CdrConfig`, `telemetry::LogConfig`; the daemon's in
//! `daemon.rs` here, because the pipeline reads them too) and reports through the ground floor,
//! `settings`. This module sits above the sections and below the pipeline, the daemon and the CLI.
//!
//! A secret is read when the file is loaded if it can be; one that is missing or unreadable is an
//! error only when a command uses its integration (`XeroConfig::client_secret`,
//! `AutotaskConfig::secrets`), so that commands that call no remote API run without secrets.

mod daemon;
mod env;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use crate::autotask::AutotaskConfig;
pub use crate::cdr::CdrConfig;
pub use crate::settings::{ConfigError, EXIT_CONFIG, SecretSource, redact_url};
pub use crate::store::DatabaseConfig;
pub use crate::telemetry::{LogConfig, LogFormat, LogLevel};
pub use crate::xero::{InvoiceStatus, XeroConfig, XeroGrant};
pub use daemon::{MetricsConfig, ScheduleConfig};

use crate::settings::zone;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub business: BusinessConfig,
    pub invoices: InvoiceConfig,
    pub log: LogConfig,
    pub cdr: CdrConfig,
    pub xero: XeroConfig,
    pub autotask: AutotaskConfig,
    pub schedule: ScheduleConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessConfig {
    /// IANA zone that defines calendar months, invoice dates and local CDR times.
    #[serde(with = "zone")]
    pub timezone: Tz,
    /// ISO 4217 code of the invoices' currency.
    pub currency: String,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            timezone: chrono_tz::Australia::Sydney,
            currency: "AUD".into(),
        }
    }
}

impl BusinessConfig {
    pub fn tz(&self) -> Tz {
        self.timezone
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InvoiceConfig {
    /// Local invoice numbers are `<prefix><number>`, numbers counting up from `start_number`.
    pub number_prefix: String,
    pub start_number: u64,
    /// Due date = the 1st of the period + this many days (a customer may override it).
    pub payment_terms_days: u32,
    /// Off: invoices are created (and Autotask gets its charges) but none is emailed.
    pub auto_send: bool,
    /// Days a run's invoices stay local drafts so that late CDRs land before they are pushed.
    pub grace_days: u32,
    /// How many months back an invoice looks for what earlier runs could not have seen (a start
    /// date or calls entered after their period's run), billed as lines of their own.
    pub catch_up_months: u32,
}

impl Default for InvoiceConfig {
    fn default() -> Self {
        InvoiceConfig {
            number_prefix: "RB-".into(),
            start_number: 1000,
            payment_terms_days: 14,
            auto_send: true,
            grace_days: 0,
            catch_up_months: 3,
        }
    }
}

/// Where the configuration file is looked for when `--config` names none.
const CANDIDATES: [&str; 2] = ["rebill.toml", "/etc/rebill/rebill.toml"];

impl Config {
    /// Finds and loads the configuration: `--config PATH`, else `./rebill.toml`, else
    /// `/etc/rebill/rebill.toml`, else the built-in defaults (the embedded SQLite set-up). A file
    /// that exists but cannot be read is an error naming it, never a reason to use the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let candidates: Vec<PathBuf> = CANDIDATES.iter().map(PathBuf::from).collect();
        match find_file(explicit, &candidates, Path::try_exists)? {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| unreadable(&p, &e))?;
                Config::from_sources(&text, &p.display().to_string(), &env)
            }
            None => Config::from_sources("", "built-in defaults", &env),
        }
    }

    /// Builds the configuration from TOML text and environment pairs (tests pass their own).
    pub fn from_sources(
        toml_text: &str,
        source_name: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut tree: toml::Table = toml::from_str(toml_text).map_err(|e| ConfigError {
            source_name: source_name.to_string(),
            key: e
                .span()
                .map(|s| format!("line {}", line_of(toml_text, s.start)))
                .unwrap_or_else(|| "(file)".into()),
            reason: e.message().to_string(),
        })?;
        let defaults = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::new("(defaults)", e.to_string()))?;
        let overrides = env::apply(&mut tree, &defaults, env)?;
        // An error is blamed on the variable that set its key, else on the file.
        let blame = |mut e: ConfigError| {
            e.source_name = match overrides.variable_for(&e.key) {
                Some(var) => var.to_string(),
                None if e.source_name == "configuration" => source_name.to_string(),
                None => e.source_name,
            };
            e
        };
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| {
                blame(ConfigError::new(
                    e.path().to_string(),
                    e.inner().message().to_string(),
                ))
            })?;
        let secrets = SecretSource::from_env(env);
        config.validate(&secrets).map_err(blame)?;
        Ok(config)
    }

    /// The zone `schedule.cron` is read in: `schedule.timezone`, else `business.timezone`.
    pub fn schedule_tz(&self) -> Tz {
        self.schedule.timezone.unwrap_or(self.business.timezone)
    }

    fn validate(&mut self, secrets: &SecretSource) -> Result<(), ConfigError> {
        self.database.validate()?;
        let cur = &self.business.currency;
        if cur.len() != 3 || !cur.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(ConfigError::new(
                "business.currency",
                format!("{cur:?} is not an ISO 4217 code like AUD"),
            ));
        }
        let prefix = &self.invoices.number_prefix;
        if prefix.len() > 20 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::new(
                "invoices.number_prefix",
                "must be at most 20 characters without spaces",
            ));
        }
        if self.invoices.payment_terms_days > 365 {
            return Err(ConfigError::new(
                "invoices.payment_terms_days",
                "must be 0–365 days",
            ));
        }
        if self.invoices.catch_up_months > 12 {
            return Err(ConfigError::new(
                "invoices.catch_up_months",
                "must be 0–12 months",
            ));
        }
        if self.invoices.grace_days > 27 {
            return Err(ConfigError::new(
                "invoices.grace_days",
                "must be 0–27 days (inside the month)",
            ));
        }
        self.cdr.validate()?;
        self.xero.validate(secrets)?;
        self.autotask.validate(secrets)?;
        self.schedule.validate(self.schedule_tz())?;
        self.metrics.validate()?;
        Ok(())
    }
}

/// The file to read: `explicit`, else the first candidate that exists. A candidate whose
/// existence cannot be checked (its directory is closed to this user) is passed over for the next
/// one, but it is never a reason to run on the built-in defaults: with no other file, it is the
/// error, naming it (the defaults would run on a fresh `./rebill.db` as if nothing was configured).
fn find_file(
    explicit: Option<&Path>,
    candidates: &[PathBuf],
    exists: impl Fn(&Path) -> std::io::Result<bool>,
) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(p) = explicit {
        return Ok(Some(p.to_path_buf()));
    }
    let mut closed = None;
    for p in candidates {
        match exists(p) {
            Ok(true) => return Ok(Some(p.clone())),
            Ok(false) => {}
            Err(e) => {
                closed.get_or_insert_with(|| unreadable(p, &e));
            }
        }
    }
    closed.map_or(Ok(None), Err)
}

fn unreadable(path: &Path, e: &std::io::Error) -> ConfigError {
    let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
        " (run as the service user, e.g. `sudo -u rebill rebilld …`, or as a member of its group)"
    } else {
        ""
    };
    ConfigError {
        source_name: path.display().to_string(),
        key: "--config".into(),
        reason: format!("cannot read the file: {e}{hint}"),
    }
}

/// The line number of a byte offset, for TOML syntax errors.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}
