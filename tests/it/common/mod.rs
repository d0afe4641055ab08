//! The one test harness: a fresh database (a SQLite file in a temp dir, or a fresh schema on the
//! PostgreSQL server named by `REBILL_TEST_POSTGRES_URL`) and the configuration that points at it.
//! Tests are written once as `async fn name(app: TestApp)` and listed in `backend_tests!`, which
//! runs each on both backends.
#![allow(dead_code)]

pub mod fixtures;

use rebill::config::Config;
use rebill::store::{Actor, Store};
use tempfile::TempDir;

pub struct TestApp {
    pub store: Store,
    /// The PostgreSQL schema this test owns (dropped when the test ends, pass or fail).
    pub pg_schema: Option<String>,
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
        let mut app = TestApp::with_url(tempfile::tempdir().expect("temp dir"), url).await;
        app.pg_schema = Some(schema);
        app
    }

    /// Runs a test body on a fresh PostgreSQL schema and drops the schema afterwards, also when
    /// the body panicked (the panic is then resumed, so the test still fails).
    pub async fn run_on_postgres<F, Fut>(test: F)
    where
        F: FnOnce(TestApp) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        use futures::FutureExt;
        let app = TestApp::postgres().await;
        let schema = app
            .pg_schema
            .clone()
            .expect("a PostgreSQL app has a schema");
        let outcome = std::panic::AssertUnwindSafe(test(app)).catch_unwind().await;
        let base = std::env::var("REBILL_TEST_POSTGRES_URL").expect("checked by postgres()");
        if let Ok(admin) = sqlx::PgPool::connect(&base).await {
            let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await {
                eprintln!("could not drop test schema {schema}: {e}");
            }
            admin.close().await;
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    pub async fn with_url(dir: TempDir, url: String) -> TestApp {
        let mut config = Config::from_sources("", "test", &[]).expect("default config");
        config.database.url = url.clone();
        let store = Store::open(&config.database)
            .await
            .expect("open and migrate the test database");
        TestApp {
            store,
            pg_schema: None,
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
                    $crate::common::TestApp::run_on_postgres(super::$name).await
                }
            )*
        }
    };
}

/// A billing world on the stand-ins: the library's sample world `SAMPLE` (the catalogue, one
/// customer per rule), and a pipeline whose clients talk to the local Xero and Autotask stand-ins.
pub mod world {
    use super::TestApp;
    use chrono::NaiveDate;
    use rebill::clock::TestClock;
    use rebill::domain::Period;
    use rebill::domain::{
        AutotaskCoding, BillingTarget, Customer, Email, NewCustomer, NonEmpty, ServiceId,
        XeroContactId,
    };
    use rebill::pipeline::{Pipeline, ResyncOutcome, ResyncRequest, resync};
    use rebill::sandbox::Sandboxes;
    use rebill::sandbox::world::{Sample, SampleDates, SampleService, SampleUser};
    use rebill::store::ServiceImport;
    use rust_decimal::Decimal;
    use std::sync::Arc;

    pub struct World {
        pub sandboxes: Sandboxes,
        /// The pipeline's clock: 00:30 on 2 December 2026 in Sydney, after November's run time.
        pub clock: Arc<TestClock>,
        pub pipeline: Pipeline,
        pub enabled: Customer,
        pub disabled: Customer,
        pub autotask: Customer,
        pub idle: Customer,
        pub sip: ServiceId,
        pub trunk: ServiceId,
        pub excluded: ServiceId,
        pub at_service: ServiceId,
        pub coding: AutotaskCoding,
    }

    /// A VoIP service import: `price` a month, cost 10, with these users.
    pub fn service(r: &str, parent: Option<&str>, price: &str, users: &[&str]) -> ServiceImport {
        let name = format!("Service {r}");
        let users: Vec<SampleUser> = users
            .iter()
            .map(|number| SampleUser {
                number,
                label: None,
            })
            .collect();
        SampleService {
            external_ref: r,
            parent,
            name: &name,
            price,
            cost: "10",
            rebill_enabled: true,
            users: &users,
        }
        .service_import()
        .unwrap()
    }

    pub fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// The period the world is built to bill: November 2026.
    pub fn nov() -> Period {
        Period::parse("2026-11").unwrap()
    }

    /// A JSON number or string as a decimal, so that 30, 30.0 and "30" compare equal.
    pub fn dec(v: &serde_json::Value) -> Decimal {
        match v {
            serde_json::Value::String(s) => s.parse().unwrap(),
            other => other.to_string().parse().unwrap(),
        }
    }

    impl World {
        /// A second Xero customer, "Newco Pty Ltd", linked to its own contact on the stand-in.
        pub async fn newco(&self, app: &TestApp) -> Customer {
            let contact = self
                .sandboxes
                .xero
                .add_contact("Newco Pty Ltd", Some("ops@newco.example"));
            app.store
                .add_customer(
                    &app.actor(),
                    &NewCustomer {
                        external_ref: Some("newco".into()),
                        name: NonEmpty::parse("n", "Newco Pty Ltd").unwrap(),
                        enabled: true,
                        target: BillingTarget::Xero {
                            contact_id: Some(XeroContactId::parse(&contact).unwrap()),
                        },
                        email: Some(Email::parse("ops@newco.example").unwrap()),
                        details: Default::default(),
                        payment_terms_days: None,
                    },
                )
                .await
                .unwrap()
        }

        /// Resyncs `period` for every customer (not a dry run), as `rebilld --resync` does.
        pub async fn resync(&self, period: Period) -> ResyncOutcome {
            resync(
                &self.pipeline,
                &ResyncRequest {
                    period,
                    customer: None,
                    dry_run: false,
                },
            )
            .await
            .unwrap()
        }
    }

    /// Builds the world. Services start on 2026-01-01, part-month ones on 2026-11-16; the period
    /// under test is 2026-11, in Sydney.
    pub async fn build(app: &TestApp) -> World {
        let sandboxes = Sandboxes::start(0, 0).await.unwrap();
        let mut config = app.config.clone();
        sandboxes.configure(&mut config);
        config.business.timezone = chrono_tz::Australia::Sydney;
        let dates = SampleDates {
            since: day("2026-01-01"),
            mid: day("2026-11-16"),
        };
        let w = Sample::seed(
            &app.store,
            &app.actor(),
            dates,
            &sandboxes.xero,
            &sandboxes.autotask,
        )
        .await
        .unwrap();
        let clock = Arc::new(TestClock::at("2026-12-01T13:30:00Z".parse().unwrap()));
        let pipeline = Pipeline::from_config(app.store.clone(), config)
            .await
            .unwrap()
            .with_clock(clock.clone());
        World {
            sandboxes,
            clock,
            pipeline,
            enabled: w.enabled,
            disabled: w.disabled,
            autotask: w.autotask,
            idle: w.idle,
            sip: w.sip,
            trunk: w.trunk,
            excluded: w.excluded,
            at_service: w.at_service,
            coding: w.coding,
        }
    }
}
