//! Opening the database, refusing files that are not ours, and running migrations.

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
            let opts = SqliteConnectOptions::from_str(&cfg.url)
                .map_err(open_err)?
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
