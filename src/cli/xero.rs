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
            let state = t
                .as_ref()
                .map(|t| token_state(t, ctx.clock.now(), ctx.config.business.tz()));
            let v = match &t {
                Some(t) => json!({
                    "grant": t.grant_type, "tenant_id": t.tenant_id, "access_token_expires_at": t.access_expires_at,
                    "has_refresh_token": t.refresh_token.is_some(), "refreshes": t.refresh_count,
                    "state": state,
                }),
                None => json!({"connected": false}),
            };
            let text = match (&t, &state) {
                (Some(t), Some(state)) => format!(
                    "Xero: {} grant, organisation {}, {state}, {} refresh(es)",
                    t.grant_type,
                    t.tenant_id.as_deref().unwrap_or("(not chosen yet)"),
                    t.refresh_count
                ),
                _ => "Xero: not connected; run `rebilld xero connect`".into(),
            };
            say(ctx, &text, v);
            Ok(())
        }
    }
}

/// What the stored grant is good for, in words: a revoked authorization-code grant (its tokens
/// forgotten when Xero refused the refresh token) says so, instead of an expiry in 1970.
pub fn token_state(
    t: &crate::store::xero::XeroTokenRow,
    now: chrono::DateTime<chrono::Utc>,
    tz: chrono_tz::Tz,
) -> String {
    let valid = t
        .access_expires_at
        .filter(|e| *e > now && t.access_token.is_some());
    match (t.grant_type.as_str(), valid, t.refresh_token.is_some()) {
        (_, Some(e), _) => format!(
            "access token valid until {}",
            super::output::local_time(e, tz)
        ),
        ("authorization_code", None, false) => "revoked: run `rebilld xero connect`".to_string(),
        ("authorization_code", None, true) => {
            "access token expired; it is refreshed on next use".to_string()
        }
        _ => "no current access token; a new one is fetched on next use".to_string(),
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
    let installation = ctx.store.installation_id().await?;
    let client = XeroClient::new(&ctx.config.xero, ctx.store.clone())
        .await?
        .with_installation(&installation);
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(grant: &str, expires: Option<i64>, refresh: bool) -> crate::store::xero::XeroTokenRow {
        crate::store::xero::XeroTokenRow {
            grant_type: grant.into(),
            access_token: expires.map(|_| "sealed".into()),
            access_expires_at: expires.map(|s| chrono::Utc.timestamp_opt(s, 0).unwrap()),
            refresh_token: refresh.then(|| "sealed".into()),
            tenant_id: None,
            refresh_count: 3,
        }
    }

    #[test]
    fn xero_status_says_revoked_instead_of_an_expiry_in_1970() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap();
        let tz = chrono_tz::Australia::Sydney;
        let revoked = row("authorization_code", None, false);
        assert_eq!(
            token_state(&revoked, now, tz),
            "revoked: run `rebilld xero connect`"
        );
        // Refused by the server (expiry set to the epoch) but still refreshable.
        let refused = row("authorization_code", Some(0), true);
        assert!(token_state(&refused, now, tz).contains("refreshed on next use"));
        assert!(!token_state(&refused, now, tz).contains("1970"));
        let valid = row("custom_connection", Some(now.timestamp() + 600), false);
        assert_eq!(
            token_state(&valid, now, tz),
            "access token valid until 2026-11-28 11:10 AEDT"
        );
    }
}
