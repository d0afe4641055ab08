use serde::{Deserialize, Serialize};

use crate::settings::{ConfigError, at_least_one, redact_url};

/// `[database]`: where the store lives.
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

impl DatabaseConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.url;
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
        at_least_one("database.max_connections", u64::from(self.max_connections))?;
        at_least_one("database.busy_timeout_ms", self.busy_timeout_ms)
    }
}
