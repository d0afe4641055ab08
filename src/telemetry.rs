//! Logging: journald-friendly text lines on stderr, or JSON with `--log-format json`; and `[log]`,
//! the section that chooses them, parsed at load.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// `text` (journald-friendly lines) or `json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A level, or comma-separated `target=level` directives (`info`, `rebill=debug,sqlx=warn`).
/// A word that is no level is refused: tracing would read it as a target to trace and silence
/// everything else, errors included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogLevel(String);

const LEVELS: &str = "off, error, warn, info, debug or trace";

impl TryFrom<String> for LogLevel {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let directives: Vec<&str> = text.split(',').map(str::trim).collect();
        if directives.iter().all(|d| d.is_empty()) {
            return Err(format!("is empty: give a level ({LEVELS})"));
        }
        for d in directives.iter().filter(|d| !d.is_empty()) {
            let level = match d.rsplit_once('=') {
                Some((target, level)) if !target.trim().is_empty() => level,
                Some(_) => return Err(format!("{d:?} names no target before `=`")),
                None => d,
            };
            if LevelFilter::from_str(level.trim()).is_err() {
                return Err(format!(
                    "{level:?} is not a level: expected {LEVELS}, or target=level"
                ));
            }
        }
        EnvFilter::try_new(&text).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(LogLevel(text))
    }
}

impl From<LogLevel> for String {
    fn from(l: LogLevel) -> String {
        l.0
    }
}

impl LogLevel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
    /// `RUST_LOG` wins when set.
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: LogLevel("info".into()),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG` wins over the configured level.
pub fn init(format: LogFormat, level: &LogLevel) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&level.0));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        // journald adds its own timestamps; keep lines short and free of colour codes.
        LogFormat::Text => builder.with_ansi(false).without_time().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(s: &str) -> Result<LogLevel, String> {
        LogLevel::try_from(s.to_string())
    }

    #[test]
    fn a_log_level_that_is_no_level_is_refused() {
        for bad in ["loud", "rebill=loud", "=info", "", " , "] {
            assert!(level(bad).is_err(), "{bad:?} is refused");
        }
        assert!(
            level("loud")
                .unwrap_err()
                .contains("\"loud\" is not a level")
        );
    }

    #[test]
    fn levels_and_target_directives_are_accepted() {
        for good in [
            "info",
            "WARN",
            "off",
            "rebill=debug,sqlx=warn",
            "info,rebill=trace",
        ] {
            assert_eq!(level(good).unwrap().as_str(), good);
        }
    }
}
