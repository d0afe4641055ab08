//! Call detail records: the CSV column mapping (`mapping.rs`), the streaming import (`import.rs`),
//! the spool directory the daemon watches, re-rating after a plan change, and the VoIP service
//! summary. Depends on `domain` and `store`.

mod config;
pub mod csv_out;
mod import;
mod mapping;
pub mod summary;

use std::path::Path;

pub use config::CdrConfig;
pub use import::{ImportError, ImportOptions, ImportReport, import_file};
pub use mapping::{Column, Mapping, parse_start, resolve_local};

use crate::domain::Period;
use crate::domain::rating::{CallForRating, Direction, rate_call};
use crate::store::{Store, StoreError};

/// Imports every settled file in the spool directory (oldest name first), moving each to `done/`
/// with its rejects beside it. A file refused whole, or one with too many rejected rows
/// (`cdr.max_reject_share`), moves to `failed/` (with its rejects), so that it is not retried
/// forever and a person sees it; its report says why in `failed`. A file is settled once unmodified for `cdr.spool_settle_secs`: one still being copied
/// in is left for a later pass, never imported half-written. Names starting with a dot are ignored
/// (write to `.name` and rename into place), and a name already in `done/` gets a numbered one.
/// `now` is the caller's clock (a file's age is `now` minus its modification time).
pub async fn import_spool_once(
    store: &Store,
    cfg: &CdrConfig,
    opts: &ImportOptions,
    now: std::time::SystemTime,
) -> Result<Vec<ImportReport>, ImportError> {
    let Some(dir) = &cfg.spool_dir else {
        return Ok(Vec::new());
    };
    let io = |e: std::io::Error| ImportError::Io {
        file: dir.display().to_string(),
        source: e,
    };
    let mapping = cfg.mapping().map_err(|reason| ImportError::Refused {
        file: "cdr.mapping_file".into(),
        reason,
    })?;
    let done = dir.join("done");
    let failed = dir.join("failed");
    std::fs::create_dir_all(&done).map_err(io)?;
    let settle = std::time::Duration::from_secs(cfg.spool_settle_secs);
    let settled = |p: &Path| {
        p.metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= settle))
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    let mut reports = Vec::new();
    for path in files {
        if !settled(&path) {
            tracing::debug!(file = %path.display(), "CDR file still being written; left for the next pass");
            continue;
        }
        // Its final name, free in done/, before the import names its rejects file after it.
        let free = dir.join(free_name(&done, &path));
        if free != path {
            std::fs::rename(&path, &free).map_err(io)?;
        }
        let path = free;
        let opts = ImportOptions {
            country: cfg.country,
            ..*opts
        };
        match import_file(store, &mapping, &path, Some(&done), &opts).await {
            Ok(mut r) => {
                r.judge(cfg.max_reject_share);
                let name = path.file_name().unwrap_or_default().to_owned();
                if let Some(reason) = &r.failed {
                    // Its good rows are in; the file and its rejects go to failed/ for a person.
                    std::fs::create_dir_all(&failed).map_err(io)?;
                    let to = failed.join(free_name(&failed, &path));
                    std::fs::rename(&path, &to).map_err(io)?;
                    if let Some(rejects) = &r.rejects_file {
                        let moved = format!("{}.rejects.csv", to.display());
                        std::fs::rename(rejects, &moved).map_err(io)?;
                        r.rejects_file = Some(moved);
                    }
                    tracing::warn!(file = %to.display(), imported = r.imported, rejected = r.rejected, %reason, "CDR file failed: too many rejected rows; moved to failed/");
                } else {
                    // Beside its rejects file, under the name chosen above.
                    std::fs::rename(&path, done.join(&name)).map_err(io)?;
                    tracing::info!(file = %path.display(), imported = r.imported, duplicates = r.duplicates, rejected = r.rejected, "CDR file imported");
                }
                reports.push(r);
            }
            Err(ImportError::Refused { file, reason }) => {
                std::fs::create_dir_all(&failed).map_err(io)?;
                move_into(&path, &failed).map_err(io)?;
                tracing::error!(%file, %reason, "CDR file refused; moved to failed/");
                reports.push(ImportReport {
                    file,
                    failed: Some(reason),
                    ..ImportReport::default()
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(reports)
}

/// Moves `path` into `dir` under a name free there.
fn move_into(path: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::rename(path, dir.join(free_name(dir, path)))
}

/// `path`'s name if it is free in `dir` (no file, no rejects file of that name), else the first
/// free `stem.N.ext`: a PBX may write `Master.csv` again every day, and the earlier one must not be
/// overwritten.
fn free_name(dir: &Path, path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let taken = |n: &str| dir.join(n).exists() || dir.join(format!("{n}.rejects.csv")).exists();
    if !taken(&name) {
        return name;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (name.clone(), String::new()),
    };
    (1..)
        .map(|n| format!("{stem}.{n}{ext}"))
        .find(|n| !taken(n))
        .unwrap_or(name)
}

/// What `cdr rerate` did to a month.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RerateReport {
    /// Unmatched calls whose user now belongs to a service (added since the import).
    pub matched: u64,
    /// Calls priced by their service's current plan.
    pub rated: u64,
    /// Calls of a service without a plan, or without a rate for their type.
    pub unrated: u64,
}

/// Re-prices a month's calls with each service's current plan (after a plan change); first, the
/// month's unmatched calls are matched to users added since they were imported. One transaction:
/// an interrupted re-rate leaves the month as it was.
pub async fn rerate(
    store: &Store,
    period: Period,
    tz: chrono_tz::Tz,
    country: crate::domain::text::Country,
) -> Result<RerateReport, StoreError> {
    let plans = store.rate_plans().await?;
    let (mut rated, mut unrated) = (0u64, 0u64);
    let done = store
        .rerate_month(period, tz, country, |row| {
            let c = &row.call;
            let priced = plans.get(&row.service_id).and_then(|(v, plan)| {
                let call = CallForRating {
                    duration_secs: c.duration_secs.max(0) as u32,
                    call_type: &c.call_type,
                    direction: if c.inbound {
                        Direction::Inbound
                    } else {
                        Direction::Outbound
                    },
                    user_ref: &c.user_ref,
                    cost: c.cost_micros.map(crate::domain::Money::from_micros),
                };
                rate_call(plan, &call)
                    .ok()
                    .and_then(|p| p.round_stored().to_micros().ok())
                    .map(|p| (p, *v))
            });
            match priced {
                Some((p, v)) => {
                    rated += 1;
                    (Some(p), Some(v))
                }
                None => {
                    unrated += 1;
                    (None, None)
                }
            }
        })
        .await?;
    Ok(RerateReport {
        matched: done.matched,
        rated,
        unrated,
    })
}
