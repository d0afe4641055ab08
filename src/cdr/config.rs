use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

/// `[cdr]`: where call records come from.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdrConfig {
    /// A directory the daemon watches for CDR files; processed files move to `done/`.
    pub spool_dir: Option<std::path::PathBuf>,
}

impl CdrConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
