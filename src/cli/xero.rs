//! `rebilld xero …` (filled in by the Xero issue).

use clap::Subcommand;

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum XeroCmd {
    /// Check the configuration and connection
    Check,
}

pub async fn run(_ctx: &Ctx, cmd: XeroCmd) -> anyhow::Result<()> {
    match cmd {
        XeroCmd::Check => anyhow::bail!("the Xero integration is not built yet"),
    }
}
