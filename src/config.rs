//! Layered configuration: the TOML file, then `REBILL_<SECTION>__<KEY>` environment overrides, then
//! secrets from `*_file` keys or systemd credentials (`$CREDENTIALS_DIRECTORY`). A bad value stops
//! the program at start (exit status 78, EX_CONFIG) with the key and the reason. Secret values are
//! `SecretString`s: they never reach `Debug`, a log line or an error message.

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Exit status for a configuration error (sysexits.h `EX_CONFIG`).
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, thiserror::Error)]
#[error("configuration error in {source_name}: `{key}`: {reason}")]
pub struct ConfigError {
    /// The file (or "environment") the bad value came from.
    pub source_name: String,
    /// The dotted key, e.g. `database.url`.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            source_name: "configuration".into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database: DatabaseConfig,
    pub business: BusinessConfig,
    pub invoices: InvoiceConfig,
    pub log: LogConfig,
    pub cdr: crate::cdr::CdrConfig,
    pub xero: crate::xero::XeroConfig,
    pub autotask: crate::autotask::AutotaskConfig,
    pub schedule: crate::daemon::ScheduleConfig,
    pub metrics: crate::daemon::MetricsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (default) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
    /// How long SQLite waits on a lock held by another connection.
    pub busy_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://rebill.db".into(),
            max_connections: 5,
            busy_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessConfig {
    /// IANA zone that defines calendar months, invoice dates and local CDR times.
    pub timezone: String,
    /// ISO 4217 code of the invoices' currency.
    pub currency: String,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            timezone: "Australia/Sydney".into(),
            currency: "AUD".into(),
        }
    }
}

impl BusinessConfig {
    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (journald-friendly lines) or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `rebill=debug,sqlx=warn`; `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Config {
    /// Finds and loads the configuration: `--config PATH`, else `./rebill.toml`, else
    /// `/etc/rebill/rebill.toml`, else the built-in defaults (the embedded SQLite set-up).
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => ["rebill.toml", "/etc/rebill/rebill.toml"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists()),
        };
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(&p).map_err(|e| ConfigError {
                    source_name: p.display().to_string(),
                    key: "--config".into(),
                    reason: format!("cannot read the file: {e}"),
                })?;
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
        let with_source = |mut e: ConfigError, name: &str| {
            e.source_name = name.to_string();
            e
        };
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
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix("REBILL_") else {
                continue;
            };
            if rest.starts_with("TEST_") {
                continue; // the test suite's own variables
            }
            let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            if path.len() < 2 || path.iter().any(|p| p.is_empty()) {
                continue;
            }
            let value = coerce_env(&defaults, &path, raw);
            set_path(&mut tree, &path, value)
                .map_err(|reason| with_source(ConfigError::new(path.join("."), reason), name))?;
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(tree))
            .map_err(|e| ConfigError {
                source_name: source_name.to_string(),
                key: e.path().to_string(),
                reason: e.inner().message().to_string(),
            })?;
        let secrets = SecretSource::from_env(env);
        config.validate(&secrets).map_err(|e| {
            if e.source_name == "configuration" {
                with_source(e, source_name)
            } else {
                e
            }
        })?;
        Ok(config)
    }

    fn validate(&mut self, secrets: &SecretSource) -> Result<(), ConfigError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "database.url",
                format!(
                    "{:?} is neither sqlite://PATH nor postgres://…",
                    redact_url(url)
                ),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        self.business.timezone.parse::<Tz>().map_err(|_| {
            ConfigError::new(
                "business.timezone",
                format!(
                    "{:?} is not an IANA time zone (e.g. Australia/Sydney)",
                    self.business.timezone
                ),
            )
        })?;
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
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::new(
                "log.format",
                format!("{:?}: expected \"text\" or \"json\"", self.log.format),
            ));
        }
        self.cdr.validate()?;
        self.xero.validate(secrets)?;
        self.autotask.validate(secrets)?;
        self.schedule.validate()?;
        self.metrics.validate()?;
        Ok(())
    }
}

/// The line number of a byte offset, for TOML syntax errors.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Shows a database URL without its password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Environment values are text; give them the type the key's default has, so that
/// `REBILL_INVOICES__AUTO_SEND=false` is a boolean and `REBILL_XERO__TENANT_ID=123` stays text.
fn coerce_env(defaults: &toml::Table, path: &[String], raw: &str) -> toml::Value {
    let mut node: Option<&toml::Value> = None;
    let mut table = Some(defaults);
    for key in path {
        node = table.and_then(|t| t.get(key));
        table = node.and_then(|v| v.as_table());
    }
    let parsed = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match node {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(_) => parsed().unwrap_or_else(|| toml::Value::String(raw.to_string())),
        None => match parsed() {
            Some(
                v @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
    }
}

fn set_path(tree: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = tree;
    for p in parents {
        t = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// Where secret values may come from besides the config file itself.
#[derive(Debug, Clone, Default)]
pub struct SecretSource {
    /// systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`).
    pub credentials_dir: Option<PathBuf>,
}

impl SecretSource {
    pub fn from_env(env: &[(String, String)]) -> Self {
        let credentials_dir = env
            .iter()
            .find(|(k, _)| k == "CREDENTIALS_DIRECTORY")
            .map(|(_, v)| PathBuf::from(v));
        SecretSource { credentials_dir }
    }

    /// Resolves the secret `key` (e.g. `xero.client_secret`): the inline value, else the file named
    /// by `<key>_file`, else the systemd credential named `<key>` (e.g. `xero.client_secret`).
    /// File contents are trimmed of a trailing newline.
    pub fn resolve(
        &self,
        key: &str,
        inline: Option<SecretString>,
        file: Option<&Path>,
    ) -> Result<Option<SecretString>, ConfigError> {
        if let Some(s) = inline {
            return Ok(Some(s));
        }
        let read = |p: &Path, what: &str| -> Result<SecretString, ConfigError> {
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(
                    what.to_string(),
                    format!("cannot read secret file {}: {}", p.display(), e.kind()),
                )
            })?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(ConfigError::new(
                    what.to_string(),
                    format!("secret file {} is empty", p.display()),
                ));
            }
            Ok(SecretString::from(value))
        };
        if let Some(p) = file {
            return read(p, &format!("{key}_file")).map(Some);
        }
        if let Some(dir) = &self.credentials_dir {
            let p = dir.join(key);
            if p.exists() {
                return read(&p, &format!("$CREDENTIALS_DIRECTORY/{key}")).map(Some);
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_sqlite_setup() {
        let c = Config::from_sources("", "test", &[]).unwrap();
        assert_eq!(c.database.url, "sqlite://rebill.db");
        assert!(c.invoices.auto_send);
    }

    #[test]
    fn environment_overrides_the_file_with_the_default_type() {
        let c = Config::from_sources(
            "[invoices]\nauto_send = true\n",
            "test",
            &env(&[
                ("REBILL_INVOICES__AUTO_SEND", "false"),
                ("REBILL_INVOICES__NUMBER_PREFIX", "123"),
            ]),
        )
        .unwrap();
        assert!(!c.invoices.auto_send);
        assert_eq!(c.invoices.number_prefix, "123");
    }

    #[test]
    fn an_unknown_key_is_named() {
        let e =
            Config::from_sources("[invoices]\nauto_sned = true\n", "rebill.toml", &[]).unwrap_err();
        assert_eq!(e.key, "invoices.auto_sned");
        assert!(e.reason.contains("auto_sned"), "{e}");
        assert_eq!(e.source_name, "rebill.toml");
    }

    #[test]
    fn a_wrong_type_names_the_key() {
        let e = Config::from_sources("[invoices]\npayment_terms_days = \"soon\"\n", "f", &[])
            .unwrap_err();
        assert_eq!(e.key, "invoices.payment_terms_days");
    }

    #[test]
    fn a_bad_tax_rate_names_the_key_and_the_reason() {
        let e = Config::from_sources("[xero.tax_rates]\nOUTPUT = \"110\"\n", "f", &[]).unwrap_err();
        assert!(e.key.starts_with("xero.tax_rates"), "{e}");
        assert!(e.to_string().contains("0 to 100"), "{e}");
        let ok = Config::from_sources("[xero.tax_rates]\nOUTPUT2 = \"15\"\n", "f", &[]).unwrap();
        let nz = ok
            .xero
            .tax_rates
            .line_tax("OUTPUT2", crate::domain::Money::parse("10").unwrap());
        assert_eq!(nz, Some(crate::domain::Money::parse("1.5").unwrap()));
    }

    #[test]
    fn a_bad_timezone_names_the_key() {
        let e = Config::from_sources("[business]\ntimezone = \"Mars/Olympus\"\n", "f", &[])
            .unwrap_err();
        assert_eq!(e.key, "business.timezone");
        assert!(e.to_string().contains("Mars/Olympus"));
    }

    #[test]
    fn database_password_is_redacted_in_errors() {
        assert_eq!(
            redact_url("postgres://u:hunter2@db/x"),
            "postgres://u:REDACTED@db/x"
        );
    }

    #[test]
    fn secrets_come_from_files_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("xero.client_secret"), "s3cret\n").unwrap();
        let src = SecretSource {
            credentials_dir: Some(dir.path().to_path_buf()),
        };
        let s = src
            .resolve("xero.client_secret", None, None)
            .unwrap()
            .unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&s), "s3cret");
        let missing = src
            .resolve("x.y", None, Some(Path::new("/nonexistent/secret")))
            .unwrap_err();
        assert_eq!(missing.key, "x.y_file");
        assert!(
            src.resolve("autotask.secret", None, None)
                .unwrap()
                .is_none()
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// Every key of the configuration appears in config/rebill.example.toml, which parses.
    #[test]
    fn the_example_config_documents_every_key() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/rebill.example.toml"
        ))
        .unwrap();
        let c = Config::from_sources(&text, "example", &[]).unwrap();
        assert_eq!(c.metrics.listen.as_deref(), Some("127.0.0.1:9187"));
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, v) in &defaults {
            assert!(
                text.contains(&format!("[{section}]")),
                "[{section}] is documented"
            );
            for (key, value) in v.as_table().unwrap() {
                let documented = if value.is_table() {
                    text.contains(&format!("[{section}.{key}]"))
                } else {
                    text.contains(&format!("\n{key} =")) || text.contains(&format!("# {key} ="))
                };
                assert!(documented, "{section}.{key} is documented");
            }
        }
        for secret in [
            "client_id",
            "client_secret_file",
            "tenant_id",
            "username",
            "secret_file",
            "integration_code_file",
            "spool_dir",
            "mapping_file",
        ] {
            assert!(
                text.contains(&format!("# {secret} =")),
                "{secret} is documented"
            );
        }
    }

    #[test]
    fn the_example_mapping_and_rate_plan_parse() {
        let m = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/cdr-mapping.example.toml"
        ))
        .unwrap();
        crate::cdr::Mapping::from_toml(&m).unwrap();
        let p = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/rate-plan.example.toml"
        ))
        .unwrap();
        toml::from_str::<crate::domain::rating::RatePlan>(&p).unwrap();
    }
}
