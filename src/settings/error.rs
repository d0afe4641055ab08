/// Exit status for a configuration error (sysexits.h `EX_CONFIG`); the systemd unit does not
/// restart on it (`RestartPreventExitStatus=78`).
pub const EXIT_CONFIG: i32 = 78;

/// A bad value in the configuration: where it came from, its key and why. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error in {source_name}: `{key}`: {reason}")]
pub struct ConfigError {
    /// The file, or the environment variable, the bad value came from.
    pub source_name: String,
    /// The dotted key, e.g. `database.url`.
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    /// An error whose source the loader fills in (the file, or the variable that set the key).
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            source_name: "configuration".into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}
