use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, SecretSource};

/// `[xero]`: the Xero organisation and app credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XeroConfig {
    pub client_id: Option<String>,
    /// Secret: prefer `client_secret_file` or the systemd credential `xero.client_secret`.
    #[serde(skip_serializing)]
    pub client_secret: Option<SecretString>,
    pub client_secret_file: Option<std::path::PathBuf>,
}

impl XeroConfig {
    pub fn validate(&mut self, secrets: &SecretSource) -> Result<(), ConfigError> {
        self.client_secret = secrets.resolve(
            "xero.client_secret",
            self.client_secret.take(),
            self.client_secret_file.as_deref(),
        )?;
        Ok(())
    }
}
