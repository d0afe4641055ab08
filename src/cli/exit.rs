//! The exit status contract every command follows (README "Exit status", `rebilld man`):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | a remote action failed, a difference was found, or the command could not do what it was asked |
//! | 2 | usage: the command line does not parse, or asks for something this set-up cannot do |
//! | 75 | `EX_TEMPFAIL`: work parked (a rate limit or budget) or the period held by another process; try later |
//! | 78 | `EX_CONFIG`: a configuration error (an invalid value, a secret missing when needed) |
//!
//! A command that finished its work and printed its report, but whose outcome is not "done",
//! returns an [`Unfinished`] naming the status; errors are mapped by their type, never by their
//! message.

use crate::config::ConfigError;
use crate::pipeline::{PipelineError, PushReport};

/// The exit statuses of `rebilld`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done.
    Done,
    /// A remote action failed, a difference was found, or the command failed.
    Failed,
    /// The command line does not parse or asks for what this set-up cannot do.
    Usage,
    /// Parked for a rate limit or budget, or the period is held by another process (`EX_TEMPFAIL`).
    TempFail,
    /// A configuration error (`EX_CONFIG`).
    Config,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Done => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::TempFail => 75,
            ExitStatus::Config => crate::config::EXIT_CONFIG as u8,
        }
    }
}

/// The help text of the contract, shown by `rebilld --help` and in the man page.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   done
  1   a remote action failed or was refused (run, push, --resync), an action stands failed
      (status), reconcile found a difference, or the command could not do what it was asked
      (e.g. no such customer)
  2   usage: the command line does not parse, or asks for what this set-up cannot do
  75  try again later (EX_TEMPFAIL): work parked for a rate limit or budget, or the period is
      held by another process (--resync --no-wait)
  78  configuration error (EX_CONFIG): an invalid value, or a secret missing when needed";

/// A command that did its work and reported it, but did not end "done".
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Unfinished {
    pub status: ExitStatus,
    pub message: String,
}

impl Unfinished {
    pub fn new(status: ExitStatus, message: impl Into<String>) -> Self {
        Unfinished {
            status,
            message: message.into(),
        }
    }
}

/// The outcome of a push (alone, or in a run or a resync): a failed or refused action is a
/// failure (1); otherwise work parked for later is "try again later" (75).
pub fn push_outcome(p: &PushReport) -> Result<(), Unfinished> {
    if !p.failed.is_empty() {
        return Err(Unfinished::new(
            ExitStatus::Failed,
            format!(
                "{} remote action(s) failed; see `rebilld outbox list --failed`",
                p.failed.len()
            ),
        ));
    }
    // A system whose push stopped early (its outage, a revoked grant): its actions wait.
    let stopped = p.stopped();
    if !stopped.is_empty() {
        return Err(Unfinished::new(
            ExitStatus::Failed,
            format!(
                "not everything was pushed ({}); the rest waits in the outbox",
                stopped.join("; ")
            ),
        ));
    }
    if !p.parked.is_empty() {
        return Err(Unfinished::new(
            ExitStatus::TempFail,
            format!(
                "{} remote action(s) parked for later (a rate limit or budget); the daemon or the next push sends them",
                p.parked.len()
            ),
        ));
    }
    Ok(())
}

/// The exit status for an error a command returned, by the error's type.
pub fn exit_status(e: &anyhow::Error) -> ExitStatus {
    for cause in e.chain() {
        if let Some(u) = cause.downcast_ref::<Unfinished>() {
            return u.status;
        }
        if cause.is::<ConfigError>()
            || matches!(
                cause.downcast_ref::<crate::xero::XeroError>(),
                Some(crate::xero::XeroError::NotConfigured(_))
            )
            || matches!(
                cause.downcast_ref::<crate::autotask::AutotaskError>(),
                Some(crate::autotask::AutotaskError::NotConfigured(_))
            )
        {
            return ExitStatus::Config;
        }
        if let Some(p) = cause.downcast_ref::<PipelineError>() {
            match p {
                PipelineError::PeriodHeld { .. } => return ExitStatus::TempFail,
                PipelineError::Xero(crate::xero::XeroError::NotConfigured(_))
                | PipelineError::Autotask(crate::autotask::AutotaskError::NotConfigured(_)) => {
                    return ExitStatus::Config;
                }
                _ => {}
            }
        }
        if matches!(
            cause.downcast_ref::<crate::store::BackupError>(),
            Some(crate::store::BackupError::Postgres)
        ) {
            return ExitStatus::Usage;
        }
    }
    ExitStatus::Failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_action_outranks_a_parked_one_and_a_clean_push_is_done() {
        let mut r = PushReport::default();
        assert!(push_outcome(&r).is_ok());
        r.parked.push("k1: rate limited".into());
        assert_eq!(push_outcome(&r).unwrap_err().status, ExitStatus::TempFail);
        r.failed.push("RB-1: refused".into());
        assert_eq!(push_outcome(&r).unwrap_err().status, ExitStatus::Failed);
    }

    #[test]
    fn errors_map_to_their_status_by_type_through_context() {
        let held = anyhow::Error::new(PipelineError::PeriodHeld {
            period: "2026-11".parse().unwrap(),
        })
        .context("resync");
        assert_eq!(exit_status(&held), ExitStatus::TempFail);
        let unfinished = anyhow::Error::new(Unfinished::new(ExitStatus::Failed, "1 difference"));
        assert_eq!(exit_status(&unfinished), ExitStatus::Failed);
        let other = anyhow::anyhow!("period held by another process");
        assert_eq!(exit_status(&other), ExitStatus::Failed, "never by message");
        let pg = anyhow::Error::new(crate::store::BackupError::Postgres);
        assert_eq!(exit_status(&pg), ExitStatus::Usage);
    }

    #[test]
    fn the_codes_are_the_documented_ones() {
        let codes: Vec<u8> = [
            ExitStatus::Done,
            ExitStatus::Failed,
            ExitStatus::Usage,
            ExitStatus::TempFail,
            ExitStatus::Config,
        ]
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(codes, [0, 1, 2, 75, 78]);
        for c in ["0 ", "1 ", "2 ", "75 ", "78 "] {
            assert!(EXIT_STATUS_HELP.contains(&format!("\n  {c}")), "{c}");
        }
    }
}
