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

/// Finds (by number) or creates the Xero contact for a customer (the Xero issue wires this up).
pub async fn resolve_contact(
    _ctx: &Ctx,
    _customer: crate::domain::CustomerId,
    _number: Option<&str>,
    _create: bool,
) -> anyhow::Result<crate::domain::XeroContactId> {
    anyhow::bail!(
        "finding or creating Xero contacts needs the Xero connection, which is not built yet"
    )
}
