//! Opening the database, refusing files that are not ours, and running migrations.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{DatabaseConfig, Db, Store, StoreError};
use crate::settings::redact_url;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the database named by `database.url` without changing it.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        let shown = redact_url(&cfg.url);
        let open_err = |e: sqlx::Error| StoreError::Open {
            url: shown.clone(),
            reason: e.to_string(),
        };
        let store = if cfg.url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(&cfg.url).map_err(open_err)?;
            create_private(opts.get_filename()).map_err(|e| StoreError::Open {
                url: shown.clone(),
                reason: format!("cannot create the database file: {e}"),
            })?;
            let opts = opts
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_millis(cfg.busy_timeout_ms))
                // A page cache that holds the call indexes during imports; temporary b-trees in memory.
                .pragma("cache_size", "-32768")
                .pragma("temp_store", "MEMORY")
                .pragma("wal_autocheckpoint", "10000");
            let pool = SqlitePoolOptions::new()
                .max_connections(cfg.max_connections)
                .connect_with(opts)
                .await
                .map_err(|e| not_a_database(&shown, e))?;
            Store {
                db: Db::Sqlite(pool),
            }
        } else {
            let opts = PgConnectOptions::from_str(&cfg.url).map_err(open_err)?;
            let pool = PgPoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(open_err)?;
            Store {
                db: Db::Postgres(pool),
            }
        };
        store.check_ours(&shown).await?;
        Ok(store)
    }

    /// Opens and migrates: what every command does at start.
    pub async fn open(cfg: &DatabaseConfig) -> Result<Store, StoreError> {
        let store = Store::connect(cfg).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations under `migrations/<backend>/` that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.db {
            Db::Sqlite(p) => SQLITE_MIGRATIONS.run(p).await,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await,
        };
        result.map_err(|e| match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => StoreError::Migrate(format!(
                "the database was migrated by a newer rebilld (migration {v} is unknown to this version); \
                 run the newer version or restore a backup"
            )),
            other => StoreError::Migrate(other.to_string()),
        })
    }

    /// A database with tables but without our marker table belongs to something else: refuse it
    /// rather than add our tables beside another application's.
    async fn check_ours(&self, shown: &str) -> Result<(), StoreError> {
        let tables: Vec<String> = match &self.db {
            Db::Sqlite(p) => sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(p)
            .await
            .map_err(|e| not_a_database(shown, e))?,
            Db::Postgres(p) => sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
            )
            .fetch_all(p)
            .await?,
        };
        let ours = tables.iter().any(|t| t == "rebill_meta");
        let only_migrations = tables.iter().all(|t| t == "_sqlx_migrations");
        if !ours && !only_migrations {
            let mut names = tables.clone();
            names.sort();
            names.truncate(5);
            return Err(StoreError::Foreign {
                url: shown.to_string(),
                reason: format!(
                    "it holds other tables ({}) and no rebill_meta table; point database.url at a new file or database",
                    names.join(", ")
                ),
            });
        }
        Ok(())
    }
}

/// Creates a missing SQLite file empty and readable by its owner only (0600, whatever the umask):
/// it holds customers' details and the Xero connection. SQLite gives the `-wal` and `-shm` files
/// it makes beside it the same mode. An existing file is left as it is.
fn create_private(path: &Path) -> std::io::Result<()> {
    let name = path.as_os_str();
    if name.is_empty() || name == ":memory:" || path.exists() {
        return Ok(());
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        // Another process created it between our look and our create: theirs stands.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Why `rebilld backup` made no copy.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "{path} already exists: a backup never overwrites a file; give a new name or move the old file away"
    )]
    Exists { path: String },
    #[error("cannot create the backup {path}: {reason}")]
    Create { path: String, reason: String },
    #[error(
        "rebilld backup copies SQLite databases; for PostgreSQL use pg_dump, e.g. \
         `pg_dump --format=custom --file=rebill.dump \"$DATABASE_URL\"` (restore with pg_restore)"
    )]
    Postgres,
    #[error("the backup to {path} failed and nothing was kept: {reason}")]
    Copy { path: String, reason: String },
    #[error("the copy at {path} failed its check ({reason}) and was removed")]
    Check { path: String, reason: String },
}

/// What a checked backup holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    pub path: String,
    pub bytes: u64,
    /// Migrations recorded in the copy (the same as in the database it came from).
    pub migrations: i64,
    pub latest_migration: i64,
}

impl Store {
    /// Writes a consistent copy of the SQLite database to `path` (a new file, 0600) while other
    /// connections keep writing: `VACUUM INTO` reads one snapshot, so the copy holds every
    /// transaction committed before it began and none half. The copy is then opened on its own and
    /// checked (`PRAGMA integrity_check`, the migrations table as in the source); a copy that fails
    /// is removed. PostgreSQL is refused: `pg_dump` does this for it.
    pub async fn backup_to(&self, path: &Path) -> Result<BackupReport, BackupError> {
        let Db::Sqlite(pool) = &self.db else {
            return Err(BackupError::Postgres);
        };
        let shown = path.display().to_string();
        let Some(target) = path.to_str() else {
            return Err(BackupError::Create {
                path: shown,
                reason: "the path is not valid UTF-8".into(),
            });
        };
        // Reserve the name atomically: an existing file is never overwritten, and the copy is
        // private from its first byte (VACUUM INTO accepts an empty file).
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        if let Err(e) = o.open(path) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Exists { path: shown }
            } else {
                BackupError::Create {
                    path: shown,
                    reason: e.to_string(),
                }
            });
        }
        let source: (i64, i64) = match sqlx::query_as(
            "SELECT COUNT(*), COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(pool)
        .await
        {
            Ok(v) => v,
            Err(e) => return Err(discard(path, &shown, e.to_string(), false)),
        };
        if let Err(e) = sqlx::query("VACUUM INTO $1")
            .bind(target)
            .execute(pool)
            .await
        {
            return Err(discard(path, &shown, e.to_string(), false));
        }
        if let Err(e) = std::fs::File::open(path).and_then(|f| f.sync_all()) {
            return Err(discard(path, &shown, e.to_string(), false));
        }
        let copied = match check_copy(path).await {
            Ok(v) => v,
            Err(reason) => return Err(discard(path, &shown, reason, true)),
        };
        if copied != source {
            return Err(discard(
                path,
                &shown,
                format!(
                    "it records {} migrations up to {}, the database {} up to {}",
                    copied.0, copied.1, source.0, source.1
                ),
                true,
            ));
        }
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(BackupReport {
            path: shown,
            bytes,
            migrations: copied.0,
            latest_migration: copied.1,
        })
    }
}

/// Removes a failed copy and says why.
fn discard(path: &Path, shown: &str, reason: String, checked: bool) -> BackupError {
    let _ = std::fs::remove_file(path);
    if checked {
        BackupError::Check {
            path: shown.to_string(),
            reason,
        }
    } else {
        BackupError::Copy {
            path: shown.to_string(),
            reason,
        }
    }
}

/// Opens the copy read-only on its own and checks it: integrity, our marker table, and the
/// migrations it records (count, latest version).
async fn check_copy(path: &Path) -> Result<(i64, i64), String> {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .map_err(|e| format!("it does not open: {e}"))?;
    let result = async {
        let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&pool)
            .await
            .map_err(|e| format!("integrity_check: {e}"))?;
        if integrity != ["ok"] {
            return Err(format!("integrity_check: {}", integrity.join("; ")));
        }
        let marker: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'rebill_meta'",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;
        if marker != 1 {
            return Err("it has no rebill_meta table".into());
        }
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT COUNT(*), COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&pool)
        .await
        .map_err(|e| format!("the migrations table: {e}"))
    }
    .await;
    pool.close().await;
    result
}

fn not_a_database(shown: &str, e: sqlx::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("file is not a database")
        || text.contains("malformed")
        || text.contains("code: 26")
    {
        StoreError::Foreign {
            url: shown.to_string(),
            reason: "the file is not a SQLite database, or it is corrupt".into(),
        }
    } else {
        StoreError::Open {
            url: shown.to_string(),
            reason: text,
        }
    }
}
