//! `rebilld backup PATH`: a consistent, checked copy of the SQLite database while the daemon runs.

use std::path::Path;

use serde_json::json;

use super::Ctx;
use super::output::say;
use crate::store::BackupError;

/// The exit status when there is nothing this command can do as asked (PostgreSQL: use pg_dump).
pub const EXIT_USAGE: u8 = 2;

pub async fn backup(ctx: &Ctx, path: &Path) -> anyhow::Result<()> {
    let r = ctx.store.backup_to(path).await?;
    say(
        ctx,
        &format!(
            "backup written to {} ({} bytes): integrity ok, {} migrations up to {}; \
             restore by stopping rebilld and putting it in place of the database file",
            r.path, r.bytes, r.migrations, r.latest_migration
        ),
        json!(r),
    );
    Ok(())
}

/// The exit status for an error of this command, when it is not the usual 1.
pub fn exit_code(e: &anyhow::Error) -> Option<u8> {
    match e.downcast_ref::<BackupError>() {
        Some(BackupError::Postgres) => Some(EXIT_USAGE),
        _ => None,
    }
}
