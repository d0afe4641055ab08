//! Call detail records: the CSV column mapping, the streaming import and the spool directory.
//! (Issue: calls.) Depends on `domain` and `store`.

mod config;

pub use config::CdrConfig;
