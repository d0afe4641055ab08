//! `rebilld customer …`.

use clap::Subcommand;

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum CustomerCmd {
    /// List
    List,
}

pub async fn run(_ctx: &Ctx, _cmd: CustomerCmd) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
