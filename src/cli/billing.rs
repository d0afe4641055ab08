//! The resync flag and the billing-run commands (filled in by the billing-run issue).

use clap::Args;

#[derive(Debug, Args)]
pub struct ResyncArgs {
    /// Recompute a period and bring Autotask and Xero in line
    #[arg(long)]
    pub resync: bool,
}
