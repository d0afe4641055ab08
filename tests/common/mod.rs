//! The one test harness: a fresh database (a SQLite file in a temp dir, or a fresh schema on the
//! PostgreSQL server named by `REBILL_TEST_POSTGRES_URL`) and the configuration that points at it.
//! Tests are written once as `async fn name(app: TestApp)` and listed in `backend_tests!`, which
//! runs each on both backends.
#![allow(dead_code)]

use rebill::config::Config;
use rebill::store::{Actor, Store};
use tempfile::TempDir;

pub struct TestApp {
    pub store: Store,
    pub config: Config,
    /// Holds the SQLite file and any files a test writes.
    pub dir: TempDir,
    pub database_url: String,
}

impl TestApp {
    pub async fn sqlite() -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("rebill.db").display());
        TestApp::with_url(dir, url).await
    }

    /// A fresh schema on the test server. Panics (fails the test) when the server is unreachable:
    /// a PostgreSQL test that cannot reach PostgreSQL must not pass.
    pub async fn postgres() -> TestApp {
        let base = std::env::var("REBILL_TEST_POSTGRES_URL")
            .expect("REBILL_TEST_POSTGRES_URL must be set for the PostgreSQL tests");
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {base}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        TestApp::with_url(tempfile::tempdir().expect("temp dir"), url).await
    }

    pub async fn with_url(dir: TempDir, url: String) -> TestApp {
        let mut config = Config::from_sources("", "test", &[]).expect("default config");
        config.database.url = url.clone();
        let store = Store::open(&config.database)
            .await
            .expect("open and migrate the test database");
        TestApp {
            store,
            config,
            dir,
            database_url: url,
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::new("test-user")
    }
}

/// Declares each listed `async fn NAME(app: TestApp)` as a test on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestApp::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(rebill_pg), ignore = "skipped: set REBILL_TEST_POSTGRES_URL to run on PostgreSQL")]
                async fn $name() {
                    super::$name($crate::common::TestApp::postgres().await).await
                }
            )*
        }
    };
}
