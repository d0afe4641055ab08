//! `rebilld backup PATH`: a consistent, checked copy of the SQLite database while the daemon runs.

use std::path::Path;

use serde_json::json;

use super::Ctx;
use super::output::say;

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
