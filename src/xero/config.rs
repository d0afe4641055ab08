use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, SecretSource};
use crate::domain::TaxRates;

/// `[xero]`: the Xero app, the organisation and how invoices are sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XeroConfig {
    /// `custom_connection` (client-credentials grant, one organisation) or `authorization_code`
    /// (`rebilld xero connect`, refresh tokens rotate).
    pub grant: String,
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
    /// The organisation when the grant reaches several (else the only one from /connections).
    pub tenant_id: Option<String>,
    /// Loopback port for the authorization-code redirect (http://localhost:PORT/callback).
    pub redirect_port: u16,
    pub scopes: String,
    pub api_url: String,
    pub identity_url: String,
    pub token_url: String,
    pub authorize_url: String,
    /// Concurrent requests to the tenant (Xero allows 5).
    pub max_concurrent: u32,
    /// Invoices per create request.
    pub batch_size: u32,
    /// AUTHORISED (default) or DRAFT.
    pub invoice_status: String,
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
            grant: "custom_connection".into(),
            client_id: None,
            client_secret: None,
            client_secret_file: None,
            token_key: None,
            token_key_file: None,
            tenant_id: None,
            redirect_port: 8765,
            scopes: "offline_access accounting.transactions accounting.contacts".into(),
            api_url: "https://api.xero.com/api.xro/2.0".into(),
            identity_url: "https://api.xero.com".into(),
            token_url: "https://identity.xero.com/connect/token".into(),
            authorize_url: "https://login.xero.com/identity/connect/authorize".into(),
            max_concurrent: 3,
            batch_size: 50,
            invoice_status: "AUTHORISED".into(),
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

    pub fn validate(&mut self, secrets: &SecretSource) -> Result<(), ConfigError> {
        self.client_secret = secrets.resolve(
            "xero.client_secret",
            self.client_secret.take(),
            self.client_secret_file.as_deref(),
        )?;
        self.token_key = secrets.resolve(
            "xero.token_key",
            self.token_key.take(),
            self.token_key_file.as_deref(),
        )?;
        if let Some(k) = &self.token_key {
            super::auth::TokenKey::parse(k)
                .map_err(|e| ConfigError::new("xero.token_key", e.to_string()))?;
        }
        if !matches!(
            self.grant.as_str(),
            "custom_connection" | "authorization_code"
        ) {
            return Err(ConfigError::new(
                "xero.grant",
                format!(
                    "{:?}: expected \"custom_connection\" or \"authorization_code\"",
                    self.grant
                ),
            ));
        }
        if self.client_id.is_some() && self.client_secret.is_none() {
            return Err(ConfigError::new(
                "xero.client_secret",
                "xero.client_id is set but no secret was given (client_secret_file or the credential xero.client_secret)",
            ));
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
        if !matches!(self.invoice_status.as_str(), "AUTHORISED" | "DRAFT") {
            return Err(ConfigError::new(
                "xero.invoice_status",
                "must be AUTHORISED or DRAFT",
            ));
        }
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
