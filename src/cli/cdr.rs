//! `rebilld cdr …`, `rebilld summary`, `rebilld bench …` (filled in by the calls issue).

use clap::{Args, Subcommand};

use super::Ctx;

#[derive(Debug, Subcommand)]
pub enum CdrCmd {
    /// Import CDR files
    Import { files: Vec<std::path::PathBuf> },
}

#[derive(Debug, Args)]
pub struct SummaryArgs {
    #[arg(long)]
    pub service: i64,
    #[arg(long)]
    pub period: String,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// CDR import, rating and summary throughput
    Cdr,
}

pub async fn run(_ctx: &Ctx, _cmd: CdrCmd) -> anyhow::Result<()> {
    anyhow::bail!("CDR import is not built yet")
}

pub async fn summary(_ctx: &Ctx, _a: SummaryArgs) -> anyhow::Result<()> {
    anyhow::bail!("the service summary is not built yet")
}

pub async fn bench(_ctx: &Ctx, _c: BenchCmd) -> anyhow::Result<()> {
    anyhow::bail!("benchmarks are not built yet")
}
