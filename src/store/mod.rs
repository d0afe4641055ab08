//! The store: every table, on SQLite (the embedded default) or PostgreSQL (scale-out).
//!
//! One `Store` type with one set of methods; each method's SQL is written once (sqlx binds `$1`
//! placeholders on both backends) and compiled for each pool by the `on_db!` macro. Money is whole
//! micro-units (`BIGINT`), times are UTC. The database enforces the invariants that matter (one live
//! assignment per service, one invoice per customer and period); this module maps their violations
//! to refusals a user can act on.

pub mod adjustments;
mod assignments;
mod audit;
pub mod autotask;
mod autotask_cache;
pub mod billing;
pub mod budget;
pub mod calls;
mod catalogue;
mod config;
mod connect;
mod customers;
pub mod extensions;
mod installation;
mod items;
pub mod outbox;
mod outbox_control;
pub mod owed;
mod prices;
pub mod removals;
mod rerate;
pub mod runs;
pub mod void;
pub mod xero;

use sqlx::{PgPool, SqlitePool};

pub use assignments::{AssignmentView, NewAssignment};
pub use audit::{Actor, AuditRecord};
pub use catalogue::{ServiceImport, ServiceUserImport};
pub use config::DatabaseConfig;
pub use connect::{BackupError, BackupReport};
pub use customers::Upsert;
pub use items::NewItem;
pub use outbox_control::{ListedEntry, OUTBOX_STATES, OutboxHealth, SkippedAction};
pub use prices::PriceSet;
pub use rerate::Repriced;

use crate::domain::DomainError;

#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

/// Runs `$body` with `$pool` bound to the backend's pool: the same SQL, compiled once per backend.
#[macro_export]
macro_rules! on_db {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store.db() {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub use on_db;

/// How a write transaction begins. On SQLite, `BEGIN IMMEDIATE`: the write lock is taken at the
/// start, so a second process (two pushes, push and the daemon) waits its turn within
/// `busy_timeout` instead of failing with "database is locked" (`SQLITE_BUSY_SNAPSHOT`), which is
/// what a deferred transaction gets when it read before another process wrote. PostgreSQL's row
/// locks need nothing of the sort.
pub(crate) trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send
    + '_;
}

impl BeginWrite for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send
    + '_ {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for sqlx::PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = Result<sqlx::Transaction<'static, Self::Db>, sqlx::Error>>
    + Send
    + '_ {
        self.begin()
    }
}

impl Store {
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    pub async fn close(&self) {
        on_db!(self, p => p.close().await)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("{url} is not a rebill database: {reason}")]
    Foreign { url: String, reason: String },
    #[error("cannot migrate the database: {0}")]
    Migrate(String),
    /// An operation the rules forbid; nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// True when `e` is a unique-constraint violation (on either backend).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

pub(crate) fn money(micros: i64) -> crate::domain::Money {
    crate::domain::Money::from_micros(micros)
}

pub(crate) fn micros(m: crate::domain::Money) -> Result<i64, StoreError> {
    m.to_micros()
        .map_err(|e| StoreError::Refused(e.to_string()))
}

/// Parses every row, stopping at the first corrupt one.
pub(crate) fn parse_rows<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}
