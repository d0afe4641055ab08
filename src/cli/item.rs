//! `rebilld item …`.

use clap::Subcommand;

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum ItemCmd {
    /// List
    List,
}

pub async fn run(_ctx: &Ctx, _cmd: ItemCmd) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this kind of record (customer, service, assignment, item)
    #[arg(long)]
    pub entity: Option<String>,
}

pub async fn audit(_ctx: &Ctx, _a: AuditArgs) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
