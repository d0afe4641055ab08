//! `rebilld extension list [--service N] | set USER --kind KIND | import FILE`: the kind of each
//! service user (extension), which a plan can price per month (`[extensions]` in a plan file,
//! `domain::extensions`). A user without a kind is `standard`.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use serde_json::json;

use super::Ctx;
use super::import::{Fields, read_records};
use super::output::{say, table};
use crate::domain::ServiceId;
use crate::domain::extensions::ExtensionKind;
use crate::domain::service::normalise_user_ref;

#[derive(Debug, Subcommand)]
pub enum ExtensionCmd {
    /// Every extension (service user) with its kind
    List {
        #[arg(long)]
        service: Option<ServiceId>,
    },
    /// Set one extension's kind (standard or advanced); audited
    Set {
        /// The user reference, as the service lists it
        user: String,
        #[arg(long)]
        kind: ExtensionKind,
    },
    /// Set kinds from a file: CSV with the columns user_ref,kind (or a JSON array of objects
    /// with those keys). Every row is checked first: one bad row imports nothing
    Import { file: PathBuf },
}

pub async fn run(ctx: &Ctx, cmd: ExtensionCmd) -> anyhow::Result<()> {
    match cmd {
        ExtensionCmd::List { service } => {
            let rows = ctx.store.extensions(service).await?;
            if ctx.json {
                println!("{}", json!(rows));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = rows
                .into_iter()
                .map(|r| {
                    vec![
                        r.service_id.to_string(),
                        r.user_ref,
                        r.label.unwrap_or_default(),
                        r.kind,
                    ]
                })
                .collect();
            table(&["service", "user", "label", "kind"], &rows);
            Ok(())
        }
        ExtensionCmd::Set { user, kind } => {
            let r = ctx
                .store
                .set_extension_kind(&ctx.actor, &user, kind)
                .await?;
            say(
                ctx,
                &format!(
                    "extension {} of service {} is now {}",
                    r.user_ref, r.service_id, r.kind
                ),
                json!(r),
            );
            Ok(())
        }
        ExtensionCmd::Import { file } => import(ctx, file).await,
    }
}

async fn import(ctx: &Ctx, file: PathBuf) -> anyhow::Result<()> {
    let records = read_records(&file, &["user_ref", "kind"], false)?;
    let known: std::collections::BTreeSet<String> = ctx
        .store
        .extensions(None)
        .await?
        .into_iter()
        .map(|r| r.user_ref)
        .collect();
    let mut wanted = Vec::new();
    let mut errors = Vec::new();
    for r in &records {
        let f = Fields(&r.fields);
        let row = f.required("user_ref").and_then(|u| {
            let kind = f
                .required("kind")?
                .parse::<ExtensionKind>()
                .map_err(|e| format!("`kind`: {e}"))?;
            let user = normalise_user_ref(&u);
            if !known.contains(&user) {
                return Err(format!("no service has the user {u:?}"));
            }
            Ok((user, kind))
        });
        match row {
            Ok(x) => wanted.push(x),
            Err(e) => errors.push(format!("{}:{}: {e}", file.display(), r.line)),
        }
    }
    if !errors.is_empty() {
        bail!("{}\nnothing was imported", errors.join("\n"));
    }
    for (user, kind) in &wanted {
        ctx.store
            .set_extension_kind(&ctx.actor, user, *kind)
            .await?;
    }
    say(
        ctx,
        &format!(
            "{} extension kind(s) set from {}",
            wanted.len(),
            file.display()
        ),
        json!({"set": wanted.len()}),
    );
    Ok(())
}
