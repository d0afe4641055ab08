//! `rebilld autotask …` (filled in by the Autotask issue).

use clap::Subcommand;

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum AutotaskCmd {
    /// Check the configuration and connection
    Check,
}

pub async fn run(_ctx: &Ctx, cmd: AutotaskCmd) -> anyhow::Result<()> {
    match cmd {
        AutotaskCmd::Check => anyhow::bail!("the Autotask integration is not built yet"),
    }
}
