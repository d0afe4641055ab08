use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, SecretSource, at_least_one};

/// `[autotask]`: the API user, and how hard rebilld (every process on the database together) may
/// use the tenant's shared budget.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutotaskConfig {
    /// The API user's user name (an email address).
    pub username: Option<String>,
    /// Secret: prefer `secret_file` or the systemd credential `autotask.secret`.
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    pub secret_file: Option<std::path::PathBuf>,
    /// Secret: prefer `integration_code_file` or the credential `autotask.integration_code`.
    #[serde(skip_serializing)]
    pub integration_code: Option<SecretString>,
    pub integration_code_file: Option<std::path::PathBuf>,
    /// Why `secret` or `integration_code` is absent though a source was named (a file this user
    /// cannot read): kept until a command needs Autotask, so that commands that call no API never
    /// ask for it.
    #[serde(skip)]
    pub secret_errors: Vec<ConfigError>,
    /// Where the user's zone (its API base URL) is looked up; the zone itself is never configured.
    pub zone_lookup_url: String,
    /// Concurrent requests per endpoint for the whole tenant (Autotask allows 3): shared by every
    /// process on the database through its thread slots.
    pub max_concurrent: u32,
    /// Share of the tenant's hourly request budget every process on the database together may use
    /// (`store::budget`; the rest is the other integrations').
    pub budget_share: f64,
    /// The tenant's budget when ThresholdInformation cannot be read.
    pub hourly_budget: u32,
    /// The rolling window the budget applies to.
    pub budget_window_secs: u64,
    /// The longest a request waits for budget before its work is parked for the next window.
    pub max_budget_wait_secs: u64,
    pub timeout_secs: u64,
    pub max_retries: usize,
    pub retry_base_ms: u64,
    /// How long after a charge create whose outcome is unknown (a timeout, a dropped connection, a
    /// 5xx) the client waits before it looks for the charge's marker and, finding none, creates it
    /// again. Autotask has no idempotency key, and a request that timed out on our side can still be
    /// in its queue and land later: the look-up must come after any such request has landed or been
    /// dropped. Default 60 s: twice the request timeout, so that a request still held by Autotask
    /// when the client gave up has been applied (or abandoned) by then.
    pub settle_secs: u64,
    /// How long Autotask's field definitions and picklists (the BillingCodes `useType` values every
    /// `service assign` and `item add` checks against) are kept in the database before they are
    /// read again, on the client's clock. They change when an administrator edits a picklist:
    /// a day by default; 0 reads them every time.
    pub field_cache_secs: u64,
}

impl Default for AutotaskConfig {
    fn default() -> Self {
        AutotaskConfig {
            username: None,
            secret: None,
            secret_file: None,
            integration_code: None,
            integration_code_file: None,
            secret_errors: Vec::new(),
            zone_lookup_url: "https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation"
                .into(),
            max_concurrent: 2,
            budget_share: 0.5,
            hourly_budget: 10_000,
            budget_window_secs: 3_600,
            max_budget_wait_secs: 30,
            timeout_secs: 30,
            max_retries: 4,
            retry_base_ms: 500,
            settle_secs: 60,
            field_cache_secs: 86_400,
        }
    }
}

impl AutotaskConfig {
    pub fn is_configured(&self) -> bool {
        self.username.is_some()
    }

    /// The API user's two secrets, when a command needs Autotask: absent or unreadable is a
    /// configuration error naming the key (and the file), never the secret.
    pub fn secrets(&self) -> Result<(&SecretString, &SecretString), ConfigError> {
        if let Some(e) = self.secret_errors.first() {
            return Err(e.clone());
        }
        let secret = self.secret.as_ref().ok_or_else(|| {
            ConfigError::new(
                "autotask.secret",
                "autotask.username is set but no secret was given (secret_file or the credential autotask.secret)",
            )
        })?;
        let code = self.integration_code.as_ref().ok_or_else(|| {
            ConfigError::new(
                "autotask.integration_code",
                "autotask.username is set but no API integration code was given (integration_code_file or the credential autotask.integration_code)",
            )
        })?;
        Ok((secret, code))
    }

    /// Reads the secrets if it can; a secret that cannot be read is an error only once Autotask
    /// is used (`secrets`), so that commands that call no API run without it.
    pub fn validate(&mut self, secrets: &SecretSource) -> Result<(), ConfigError> {
        self.secret_errors.clear();
        match secrets.resolve(
            "autotask.secret",
            self.secret.take(),
            self.secret_file.as_deref(),
        ) {
            Ok(s) => self.secret = s,
            Err(e) => self.secret_errors.push(e),
        }
        match secrets.resolve(
            "autotask.integration_code",
            self.integration_code.take(),
            self.integration_code_file.as_deref(),
        ) {
            Ok(s) => self.integration_code = s,
            Err(e) => self.secret_errors.push(e),
        }
        if !(1..=3).contains(&self.max_concurrent) {
            return Err(ConfigError::new(
                "autotask.max_concurrent",
                "must be 1–3 (Autotask allows 3 per endpoint)",
            ));
        }
        if !(self.budget_share > 0.0 && self.budget_share <= 1.0) {
            return Err(ConfigError::new(
                "autotask.budget_share",
                "must be more than 0 and at most 1",
            ));
        }
        at_least_one("autotask.hourly_budget", u64::from(self.hourly_budget))?;
        at_least_one("autotask.budget_window_secs", self.budget_window_secs)?;
        at_least_one("autotask.timeout_secs", self.timeout_secs)?;
        at_least_one("autotask.retry_base_ms", self.retry_base_ms)?;
        url::Url::parse(&self.zone_lookup_url)
            .map_err(|e| ConfigError::new("autotask.zone_lookup_url", format!("not a URL: {e}")))?;
        Ok(())
    }
}
