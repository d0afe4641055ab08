use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, SecretSource};

/// `[autotask]`: the API user and integration code.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
}

impl AutotaskConfig {
    pub fn validate(&mut self, secrets: &SecretSource) -> Result<(), ConfigError> {
        self.secret = secrets.resolve(
            "autotask.secret",
            self.secret.take(),
            self.secret_file.as_deref(),
        )?;
        self.integration_code = secrets.resolve(
            "autotask.integration_code",
            self.integration_code.take(),
            self.integration_code_file.as_deref(),
        )?;
        Ok(())
    }
}
