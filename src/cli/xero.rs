//! `rebilld xero connect|status`, and the Xero side of `customer link-xero`.

use clap::Subcommand;
use serde_json::json;

use super::Ctx;
use super::output::say;
use crate::domain::{CustomerId, XeroContactId};
use crate::xero::{ContactDraft, XeroClient};

#[derive(Debug, Subcommand)]
pub enum XeroCmd {
    /// Connect to Xero (OAuth2 consent, or check a custom connection) and store the tokens
    Connect,
    /// Show the stored connection (never the tokens themselves)
    Status,
}

pub async fn run(ctx: &Ctx, cmd: XeroCmd) -> anyhow::Result<()> {
    match cmd {
        XeroCmd::Connect => {
            let c =
                crate::xero::connect::connect(&ctx.config.xero, &ctx.store, |m| eprintln!("{m}"))
                    .await?;
            say(
                ctx,
                &format!(
                    "connected to Xero organisation {} ({})",
                    c.tenant_id, c.grant
                ),
                json!({"tenant_id": c.tenant_id, "grant": c.grant}),
            );
            Ok(())
        }
        XeroCmd::Status => {
            let t = ctx.store.xero_token().await?;
            let v = match &t {
                Some(t) => json!({
                    "grant": t.grant_type, "tenant_id": t.tenant_id, "access_token_expires_at": t.access_expires_at,
                    "has_refresh_token": t.refresh_token.is_some(), "refreshes": t.refresh_count,
                }),
                None => json!({"connected": false}),
            };
            let text = match &t {
                Some(t) => format!(
                    "Xero: {} grant, organisation {}, access token valid until {}, {} refresh(es)",
                    t.grant_type,
                    t.tenant_id.as_deref().unwrap_or("(not chosen yet)"),
                    t.access_expires_at
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "-".into()),
                    t.refresh_count
                ),
                None => "Xero: not connected; run `rebilld xero connect`".into(),
            };
            say(ctx, &text, v);
            Ok(())
        }
    }
}

/// Finds the contact by number, or creates it from the customer (an existing contact with the same
/// name or number is linked, not duplicated).
pub async fn resolve_contact(
    ctx: &Ctx,
    customer: CustomerId,
    number: Option<&str>,
    create: bool,
) -> anyhow::Result<XeroContactId> {
    let client = XeroClient::new(&ctx.config.xero, ctx.store.clone()).await?;
    if let Some(n) = number {
        return client.contact_by_number(n).await?.ok_or_else(|| {
            anyhow::anyhow!("Xero has no contact with ContactNumber {n:?}; nothing was linked")
        });
    }
    if !create {
        anyhow::bail!("give --contact-id, --contact-number or --create");
    }
    let c = ctx.store.customer(customer).await?;
    let (id, created) = client
        .find_or_create_contact(&ContactDraft {
            name: c.name.to_string(),
            contact_number: c.external_ref.clone(),
            email: c.email.as_ref().map(|e| e.to_string()),
        })
        .await?;
    if !created {
        eprintln!("an existing Xero contact with the same name or number was found: linking it");
    }
    Ok(id)
}
