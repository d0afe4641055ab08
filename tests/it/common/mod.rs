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

/// A billing world on the stand-ins: the catalogue, one customer per rule, and a pipeline whose
/// clients talk to the local Xero and Autotask stand-ins.
pub mod world {
    use super::TestApp;
    use chrono::NaiveDate;
    use rebill::clock::TestClock;
    use rebill::domain::{
        AutotaskCoding, AutotaskCompanyId, BillingTarget, Customer, Email, ItemKind, Money,
        NewCustomer, NonEmpty, ServiceId, Transition, XeroContactId,
    };
    use rebill::pipeline::Pipeline;
    use rebill::sandbox::Sandboxes;
    use rebill::store::{NewItem, ServiceImport, ServiceUserImport};
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
        ServiceImport {
            external_ref: r.into(),
            parent_ref: parent.map(Into::into),
            name: NonEmpty::parse("n", &format!("Service {r}")).unwrap(),
            kind: "voip".into(),
            rebill_enabled: true,
            monthly_price: Money::parse(price).unwrap(),
            monthly_cost: Money::parse("10").unwrap(),
            xero_account_code: None,
            xero_tax_type: None,
            xero_item_code: None,
            users: users
                .iter()
                .map(|u| ServiceUserImport {
                    user_ref: u.to_string(),
                    label: None,
                })
                .collect(),
        }
    }

    fn customer(
        name: &str,
        enabled: bool,
        target: BillingTarget,
        email: Option<&str>,
    ) -> NewCustomer {
        NewCustomer {
            external_ref: Some(name.to_lowercase()),
            name: NonEmpty::parse("n", name).unwrap(),
            enabled,
            target,
            email: email.map(|e| Email::parse(e).unwrap()),
            details: Default::default(),
            payment_terms_days: None,
        }
    }

    pub fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// Builds the world. Services start on 2026-01-01; period under test is 2026-11.
    pub async fn build(app: &TestApp) -> World {
        let sandboxes = Sandboxes::start(0, 0).await.unwrap();
        let mut config = app.config.clone();
        sandboxes.configure(&mut config);
        config.business.timezone = "Australia/Sydney".into();
        let s = &app.store;
        let a = app.actor();
        s.import_service(&a, &service("prov", None, "0", &[]))
            .await
            .unwrap();
        let (sip, _) = s
            .import_service(
                &a,
                &service("sip", Some("prov"), "49.95", &["0299990001", "0299990002"]),
            )
            .await
            .unwrap();
        let (trunk, _) = s
            .import_service(
                &a,
                &service("trunk", Some("prov"), "30.00", &["0299990003"]),
            )
            .await
            .unwrap();
        let (excluded, _) = s
            .import_service(&a, &service("old", None, "99.00", &["0299990004"]))
            .await
            .unwrap();
        let (at_service, _) = s
            .import_service(&a, &service("at", None, "120.00", &["0299990005"]))
            .await
            .unwrap();

        let contact_enabled = sandboxes
            .xero
            .add_contact("Enabled Pty Ltd", Some("ops@enabled.example"));
        let contact_disabled = sandboxes
            .xero
            .add_contact("Disabled Pty Ltd", Some("ops@disabled.example"));
        let xero = |c: &str| BillingTarget::Xero {
            contact_id: Some(XeroContactId::parse(c).unwrap()),
        };
        let enabled = s
            .add_customer(
                &a,
                &customer(
                    "Enabled Pty Ltd",
                    true,
                    xero(&contact_enabled),
                    Some("ops@enabled.example"),
                ),
            )
            .await
            .unwrap();
        let disabled = s
            .add_customer(
                &a,
                &customer(
                    "Disabled Pty Ltd",
                    true,
                    xero(&contact_disabled),
                    Some("ops@disabled.example"),
                ),
            )
            .await
            .unwrap();
        let (contract, product, code) =
            sandboxes.autotask.seed_company(174, "Autotask Corporation");
        let coding = AutotaskCoding {
            contract_id: contract.try_into().unwrap(),
            product_id: product.try_into().unwrap(),
            material_code_id: code.try_into().unwrap(),
        };
        let company = AutotaskCompanyId::new(174).unwrap();
        let autotask = s
            .add_customer(
                &a,
                &customer(
                    "Autotask Corporation",
                    true,
                    BillingTarget::Autotask {
                        company_id: company,
                    },
                    None,
                ),
            )
            .await
            .unwrap();
        let idle = s
            .add_customer(
                &a,
                &customer(
                    "Idle Co",
                    true,
                    BillingTarget::Xero { contact_id: None },
                    Some("a@idle.example"),
                ),
            )
            .await
            .unwrap();

        let jan = day("2026-01-01");
        s.assign(&a, sip, enabled.id, jan, None).await.unwrap();
        s.assign(&a, excluded, enabled.id, jan, None).await.unwrap();
        s.transition(&a, excluded, Transition::Exclude, day("2026-11-20"))
            .await
            .unwrap();
        s.assign(&a, trunk, disabled.id, jan, None).await.unwrap();
        s.assign(&a, at_service, autotask.id, jan, Some(coding))
            .await
            .unwrap();
        s.add_item(
            &a,
            &NewItem {
                customer_id: enabled.id,
                kind: ItemKind::Once,
                description: NonEmpty::parse("d", "Handset install").unwrap(),
                amount: Money::parse("150").unwrap(),
                starts_on: None,
                autotask: None,
            },
        )
        .await
        .unwrap();
        s.add_item(
            &a,
            &NewItem {
                customer_id: autotask.id,
                kind: ItemKind::Recurring,
                description: NonEmpty::parse("d", "Support block").unwrap(),
                amount: Money::parse("30").unwrap(),
                starts_on: Some(day("2026-11-16")),
                autotask: Some(coding),
            },
        )
        .await
        .unwrap();
        s.set_customer_enabled(&a, disabled.id, false)
            .await
            .unwrap();
        let disabled = s.customer(disabled.id).await.unwrap();

        let clock = Arc::new(TestClock::at("2026-12-01T13:30:00Z".parse().unwrap()));
        let pipeline = Pipeline::from_config(s.clone(), config)
            .await
            .unwrap()
            .with_clock(clock.clone());
        World {
            sandboxes,
            clock,
            pipeline,
            enabled,
            disabled,
            autotask,
            idle,
            sip,
            trunk,
            excluded,
            at_service,
            coding,
        }
    }
}
