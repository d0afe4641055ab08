//! `rebilld service …`.

use clap::Subcommand;

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// List
    List,
}

pub async fn run(_ctx: &Ctx, _cmd: ServiceCmd) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
