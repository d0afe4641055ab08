use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::domain::TaxRates;
use crate::settings::{ConfigError, SecretSource, at_least_one};

/// How rebilld gets its Xero tokens (`xero.grant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XeroGrant {
    /// Client credentials: a custom connection to one organisation.
    CustomConnection,
    /// `rebilld xero connect`; refresh tokens rotate and are stored in the database.
    AuthorizationCode,
}

impl XeroGrant {
    pub fn as_str(self) -> &'static str {
        match self {
            XeroGrant::CustomConnection => "custom_connection",
            XeroGrant::AuthorizationCode => "authorization_code",
        }
    }
}

impl std::fmt::Display for XeroGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for XeroGrant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "custom_connection" => Ok(XeroGrant::CustomConnection),
            "authorization_code" => Ok(XeroGrant::AuthorizationCode),
            _ => Err(format!(
                "{s:?}: expected \"custom_connection\" or \"authorization_code\""
            )),
        }
    }
}

/// The status new invoices are created with in Xero (`xero.invoice_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InvoiceStatus {
    Authorised,
    Draft,
}

impl InvoiceStatus {
    /// Xero's own word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Authorised => "AUTHORISED",
            InvoiceStatus::Draft => "DRAFT",
        }
    }
}

impl std::fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[xero]`: the Xero app, the organisation and how invoices are sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XeroConfig {
    /// `custom_connection` (client-credentials grant, one organisation) or `authorization_code`
    /// (`rebilld xero connect`, refresh tokens rotate).
    pub grant: XeroGrant,
    pub client_id: Option<String>,
    /// Secret: prefer `client_secret_file` or the systemd credential `xero.client_secret`.
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Secret: the key (32 bytes, base64) that seals the stored Xero tokens; prefer
    /// `token_key_file` or the systemd credential `xero.token_key`.
    #[serde(skip_serializing)]
    pub token_key: Option<SecretString>,
    pub token_key_file: Option<std::path::PathBuf>,
    /// Why `client_secret` is absent though a source was named (a file this user cannot read):
    /// kept until a command needs Xero, so that commands that call no API never ask for it.
    #[serde(skip)]
    pub client_secret_error: Option<ConfigError>,
    /// The organisation when the grant reaches several (else the only one from /connections).
    pub tenant_id: Option<String>,
    /// Loopback port for the authorization-code redirect (http://localhost:PORT/callback).
    pub redirect_port: u16,
    pub scopes: String,
    pub api_url: String,
    pub identity_url: String,
    pub token_url: String,
    pub authorize_url: String,
    /// Requests in flight at once to the organisation (Xero allows 5), by every process on the
    /// database together (`store::budget`), as are `requests_per_minute` and `requests_per_day`.
    pub max_concurrent: u32,
    /// Invoices per create request.
    pub batch_size: u32,
    /// The requests this client sends in any minute and in any day (Xero allows an organisation
    /// 60 and 5,000, emails included): it paces itself instead of learning the limits from 429s.
    pub requests_per_minute: u32,
    pub requests_per_day: u32,
    /// AUTHORISED (default) or DRAFT.
    pub invoice_status: InvoiceStatus,
    /// Also send the local number as Xero's InvoiceNumber (it must not clash with Xero's numbering).
    pub send_invoice_number: bool,
    /// Defaults for lines whose service names none.
    pub account_code: String,
    pub tax_type: String,
    /// The rate, in percent, of each tax type the invoices use: the ledger checks Xero's Total
    /// (with tax) against the local lines taxed at these rates, as Xero taxes them.
    pub tax_rates: TaxRates,
    pub timeout_secs: u64,
    /// Retries of a failed idempotent request (429, 5xx, timeouts), with exponential back-off.
    pub max_retries: usize,
    pub retry_base_ms: u64,
}

impl Default for XeroConfig {
    fn default() -> Self {
        XeroConfig {
            grant: XeroGrant::CustomConnection,
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            token_key: None,
            token_key_file: None,
            client_secret_error: None,
            tenant_id: None,
            redirect_port: 8765,
            scopes: "offline_access accounting.transactions accounting.contacts".into(),
            api_url: "https://api.xero.com/api.xro/2.0".into(),
            identity_url: "https://api.xero.com".into(),
            token_url: "https://identity.xero.com/connect/token".into(),
            authorize_url: "https://login.xero.com/identity/connect/authorize".into(),
            max_concurrent: 3,
            batch_size: 50,
            requests_per_minute: 60,
            requests_per_day: 5_000,
            invoice_status: InvoiceStatus::Authorised,
            send_invoice_number: false,
            account_code: "200".into(),
            tax_type: "OUTPUT".into(),
            tax_rates: TaxRates::australian_gst(),
            timeout_secs: 30,
            max_retries: 4,
            retry_base_ms: 500,
        }
    }
}

impl XeroConfig {
    pub fn is_configured(&self) -> bool {
        self.client_id.is_some()
    }

    /// The client secret, when a command needs Xero: absent or unreadable is a configuration
    /// error naming the key (and the file), never the secret.
    pub fn client_secret(&self) -> Result<&SecretString, ConfigError> {
        match (&self.client_secret, &self.client_secret_error) {
            (Some(s), _) => Ok(s),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(ConfigError::new(
                "xero.client_secret",
                "xero.client_id is set but no secret was given (client_secret_file or the credential xero.client_secret)",
            )),
        }
    }

    /// Reads the secret if it can; a secret that cannot be read is an error only once Xero is
    /// used (`client_secret`), so that commands that call no API run without it.
    pub fn validate(&mut self, secrets: &SecretSource) -> Result<(), ConfigError> {
        match secrets.resolve(
            "xero.client_secret",
            self.client_secret.take(),
            self.client_secret_file.as_deref(),
        ) {
            Ok(s) => self.client_secret = s,
            Err(e) => self.client_secret_error = Some(e),
        }
        // The token key, like the client secret, is needed only once Xero is used: one that
        // cannot be read leaves it absent (storing tokens then says how to give one); one that is
        // given must be a key.
        self.token_key = secrets
            .resolve(
                "xero.token_key",
                self.token_key.take(),
                self.token_key_file.as_deref(),
            )
            .unwrap_or(None);
        if let Some(k) = &self.token_key {
            super::auth::TokenKey::parse(k)
                .map_err(|e| ConfigError::new("xero.token_key", e.to_string()))?;
        }
        if !(1..=5).contains(&self.max_concurrent) {
            return Err(ConfigError::new(
                "xero.max_concurrent",
                "must be 1–5 (Xero allows 5 concurrent calls)",
            ));
        }
        if !(1..=100).contains(&self.batch_size) {
            return Err(ConfigError::new(
                "xero.batch_size",
                "must be 1–100 invoices per request",
            ));
        }
        at_least_one(
            "xero.requests_per_minute",
            u64::from(self.requests_per_minute),
        )?;
        at_least_one("xero.requests_per_day", u64::from(self.requests_per_day))?;
        at_least_one("xero.timeout_secs", self.timeout_secs)?;
        at_least_one("xero.retry_base_ms", self.retry_base_ms)?;
        for (key, url) in [
            ("xero.api_url", &self.api_url),
            ("xero.identity_url", &self.identity_url),
            ("xero.token_url", &self.token_url),
            ("xero.authorize_url", &self.authorize_url),
        ] {
            url::Url::parse(url)
                .map_err(|e| ConfigError::new(key, format!("{url:?} is not a URL: {e}")))?;
        }
        Ok(())
    }
}
