//! The ground floor of configuration: what every module's section uses to report a bad value
//! (`ConfigError`, naming its key), to read a secret (`SecretSource`), and to parse a value into
//! its type while the file is read (`zone`). It imports nothing of the project: each section
//! (`xero::XeroConfig`, `store::DatabaseConfig`, …) stands next to its module and uses this floor,
//! and `config::Config` gathers the sections.

mod error;
mod secret;
pub mod zone;

pub use error::{ConfigError, EXIT_CONFIG};
pub use secret::{SecretSource, redact_url};

/// Refuses 0 for a count, a timeout or an interval: 0 would turn the thing off or spin.
pub fn at_least_one(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::new(key, "must be at least 1"));
    }
    Ok(())
}
