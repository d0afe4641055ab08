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

/// `customer import --from autotask` (the Autotask issue wires this up).
pub async fn import_customers(
    _ctx: &Ctx,
    _companies: &[crate::domain::AutotaskCompanyId],
    _all_active: bool,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "importing customers from Autotask needs the Autotask client, which is not built yet"
    )
}

/// Checks contract, product and material code against Autotask before an assignment is saved
/// (the Autotask issue wires this up).
pub async fn validate_coding(
    _ctx: &Ctx,
    _customer: &crate::domain::Customer,
    _coding: &crate::domain::AutotaskCoding,
    _period: crate::domain::Period,
) -> anyhow::Result<()> {
    anyhow::bail!("validating Autotask contracts needs the Autotask client, which is not built yet")
}
