use serde::{Deserialize, Serialize};

use crate::settings::ConfigError;

/// `[cdr]`: where call records come from and how they are read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdrConfig {
    /// A directory the daemon watches for CDR files; processed files move to `done/`, their bad rows
    /// to `done/<file>.rejects.csv`.
    pub spool_dir: Option<std::path::PathBuf>,
    /// A spool file is imported once unmodified for this long (one still being copied in waits).
    pub spool_settle_secs: u64,
    /// The column mapping (see config/cdr-mapping.example.toml); without it, a header row named
    /// call_id,user,start,duration,destination,call_type,cost,direction,disposition.
    pub mapping_file: Option<std::path::PathBuf>,
    /// Rows per transaction: larger batches import faster (each commit writes the pages it
    /// dirtied once) at about 1 MB of memory per 4,000 rows in flight.
    pub batch_rows: usize,
    /// A file with more than this share of its rows rejected (0.05 = 5 %), or one whose every
    /// row was rejected, counts as failed: `cdr import` exits non-zero and the spool moves it to
    /// `failed/`. Its good rows are imported all the same.
    pub max_reject_share: f64,
    /// The country whose dialling rules turn national numbers into E.164 before a CDR's user is
    /// matched to the catalogue (`02 9000 1000` and `+61 2 9000 1000` are the same user).
    pub country: crate::domain::text::Country,
}

impl Default for CdrConfig {
    fn default() -> Self {
        CdrConfig {
            spool_dir: None,
            spool_settle_secs: 30,
            mapping_file: None,
            batch_rows: 50_000,
            max_reject_share: 0.05,
            country: crate::domain::text::Country::AU,
        }
    }
}

impl CdrConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(100..=1_000_000).contains(&self.batch_rows) {
            return Err(ConfigError::new("cdr.batch_rows", "must be 100–1,000,000"));
        }
        if !(0.0..=1.0).contains(&self.max_reject_share) {
            return Err(ConfigError::new(
                "cdr.max_reject_share",
                "must be a share from 0 to 1 (0.05 = 5 %)",
            ));
        }
        if let Some(p) = &self.mapping_file {
            let text = std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(
                    "cdr.mapping_file",
                    format!("cannot read {}: {e}", p.display()),
                )
            })?;
            super::Mapping::from_toml(&text).map_err(|e| {
                ConfigError::new("cdr.mapping_file", format!("{}: {e}", p.display()))
            })?;
        }
        Ok(())
    }

    /// The configured mapping, or the standard one.
    pub fn mapping(&self) -> Result<super::Mapping, String> {
        match &self.mapping_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                super::Mapping::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))
            }
            None => Ok(super::Mapping::standard()),
        }
    }
}
