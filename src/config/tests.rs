//! The configuration's rules, each against `Config::from_sources` (the file and the environment
//! as the loader reads them) or the example file.

use std::path::{Path, PathBuf};

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_embedded_sqlite_setup() {
    let c = Config::from_sources("", "test", &[]).unwrap();
    assert_eq!(c.database.url, "sqlite://rebill.db");
    assert!(c.invoices.auto_send);
}

#[test]
fn environment_overrides_the_file_with_the_default_type() {
    let c = Config::from_sources(
        "[invoices]\nauto_send = true\n",
        "test",
        &env(&[
            ("REBILL_INVOICES__AUTO_SEND", "false"),
            ("REBILL_INVOICES__NUMBER_PREFIX", "123"),
        ]),
    )
    .unwrap();
    assert!(!c.invoices.auto_send);
    assert_eq!(c.invoices.number_prefix, "123");
}

#[test]
fn an_unknown_key_is_named() {
    let e = Config::from_sources("[invoices]\nauto_sned = true\n", "rebill.toml", &[]).unwrap_err();
    assert_eq!(e.key, "invoices.auto_sned");
    assert!(e.reason.contains("auto_sned"), "{e}");
    assert_eq!(e.source_name, "rebill.toml");
}

#[test]
fn a_wrong_type_names_the_key() {
    let e =
        Config::from_sources("[invoices]\npayment_terms_days = \"soon\"\n", "f", &[]).unwrap_err();
    assert_eq!(e.key, "invoices.payment_terms_days");
}

#[test]
fn a_bad_tax_rate_names_the_key_and_the_reason() {
    let e = Config::from_sources("[xero.tax_rates]\nOUTPUT = \"110\"\n", "f", &[]).unwrap_err();
    assert!(e.key.starts_with("xero.tax_rates"), "{e}");
    assert!(e.to_string().contains("0 to 100"), "{e}");
    let ok = Config::from_sources("[xero.tax_rates]\nOUTPUT2 = \"15\"\n", "f", &[]).unwrap();
    let nz = ok
        .xero
        .tax_rates
        .line_tax("OUTPUT2", crate::domain::Money::parse("10").unwrap());
    assert_eq!(nz, Some(crate::domain::Money::parse("1.5").unwrap()));
}

#[test]
fn a_bad_timezone_names_the_key() {
    let e =
        Config::from_sources("[business]\ntimezone = \"Mars/Olympus\"\n", "f", &[]).unwrap_err();
    assert_eq!(e.key, "business.timezone");
    assert!(e.to_string().contains("Mars/Olympus"));
}

fn error_of(toml: &str, vars: &[(&str, &str)]) -> ConfigError {
    Config::from_sources(toml, "rebill.toml", &env(vars)).unwrap_err()
}

#[test]
fn time_zones_are_parsed_at_load_and_the_schedule_defaults_to_the_business_zone() {
    let c =
        Config::from_sources("[business]\ntimezone = \"Pacific/Auckland\"\n", "f", &[]).unwrap();
    assert_eq!(c.business.tz(), chrono_tz::Pacific::Auckland);
    assert_eq!(c.schedule_tz(), chrono_tz::Pacific::Auckland);
    let c = Config::from_sources("[schedule]\ntimezone = \"UTC\"\n", "f", &[]).unwrap();
    assert_eq!(c.schedule_tz(), chrono_tz::UTC);
}

#[test]
fn a_bad_schedule_timezone_is_refused_naming_the_key_not_read_as_utc() {
    let e = error_of("[schedule]\ntimezone = \"Europe/Atlantis\"\n", &[]);
    assert_eq!(e.key, "schedule.timezone");
    assert!(e.reason.contains("Europe/Atlantis"), "{e}");
}

#[test]
fn log_format_grant_and_invoice_status_are_enums_refused_naming_the_key() {
    let c = Config::from_sources(
        "[log]\nformat = \"json\"\n[xero]\ngrant = \"authorization_code\"\ninvoice_status = \"DRAFT\"\n",
        "f",
        &[],
    )
    .unwrap();
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.xero.grant, XeroGrant::AuthorizationCode);
    assert_eq!(c.xero.invoice_status, InvoiceStatus::Draft);
    for (toml, key) in [
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[xero]\ngrant = \"password\"\n", "xero.grant"),
        ("[xero]\ninvoice_status = \"PAID\"\n", "xero.invoice_status"),
    ] {
        assert_eq!(error_of(toml, &[]).key, key, "{toml}");
    }
}

#[test]
fn a_log_level_that_is_no_level_is_refused_naming_log_level() {
    let e = error_of("[log]\nlevel = \"loud\"\n", &[]);
    assert_eq!(e.key, "log.level");
    assert!(e.reason.contains("loud"), "{e}");
    let c = Config::from_sources("[log]\nlevel = \"rebill=debug,sqlx=warn\"\n", "f", &[]);
    assert_eq!(c.unwrap().log.level.as_str(), "rebill=debug,sqlx=warn");
}

#[test]
fn a_cron_that_never_fires_is_refused() {
    let e = error_of("[schedule]\ncron = \"0 0 2 30 2 *\"\n", &[]);
    assert_eq!(e.key, "schedule.cron");
    assert!(e.reason.contains("never fires"), "{e}");
}

#[test]
fn a_cron_that_skips_a_month_is_refused_naming_the_month() {
    let e = error_of("[schedule]\ncron = \"0 0 2 31 * *\"\n", &[]);
    assert_eq!(e.key, "schedule.cron");
    assert!(e.reason.contains("2024-02"), "{e}");
    // The first Monday is in every month.
    Config::from_sources("[schedule]\ncron = \"0 0 2 1-7 * MON\"\n", "f", &[]).unwrap();
}

#[test]
fn timeouts_intervals_and_budgets_of_zero_are_refused_naming_the_key() {
    for key in [
        "database.busy_timeout_ms",
        "xero.timeout_secs",
        "autotask.timeout_secs",
        "autotask.hourly_budget",
        "autotask.budget_window_secs",
        "schedule.outbox_every_secs",
        "schedule.spool_every_secs",
        "schedule.shutdown_timeout_secs",
        "schedule.claim_secs",
        "schedule.lease_secs",
    ] {
        let (section, field) = key.split_once('.').unwrap();
        let e = error_of(&format!("[{section}]\n{field} = 0\n"), &[]);
        assert_eq!(e.key, key);
        assert!(e.reason.contains("at least 1"), "{e}");
    }
}

#[test]
fn one_tax_rate_from_the_environment_keeps_the_other_default_rates() {
    let c =
        Config::from_sources("", "f", &env(&[("REBILL_XERO__TAX_RATES__OUTPUT", "12.5")])).unwrap();
    let rate = |t: &str| {
        c.xero
            .tax_rates
            .line_tax(t, crate::domain::Money::parse("100").unwrap())
    };
    assert_eq!(
        rate("OUTPUT"),
        Some(crate::domain::Money::parse("12.5").unwrap())
    );
    assert_eq!(
        rate("EXEMPTOUTPUT"),
        Some(crate::domain::Money::parse("0").unwrap())
    );
    assert_eq!(
        rate("BASEXCLUDED"),
        Some(crate::domain::Money::parse("0").unwrap())
    );
    // A file that sets its own table is changed in the one rate too.
    let c = Config::from_sources(
        "[xero.tax_rates]\nOUTPUT2 = \"15\"\nZERORATED = \"0\"\n",
        "f",
        &env(&[("REBILL_XERO__TAX_RATES__OUTPUT2", "16")]),
    )
    .unwrap();
    let hundred = crate::domain::Money::parse("100").unwrap();
    assert_eq!(
        c.xero.tax_rates.line_tax("OUTPUT2", hundred),
        Some(crate::domain::Money::parse("16").unwrap())
    );
    assert!(c.xero.tax_rates.line_tax("ZERORATED", hundred).is_some());
    assert!(c.xero.tax_rates.line_tax("OUTPUT", hundred).is_none());
}

#[test]
fn an_environment_override_error_names_the_variable_not_the_file() {
    for (var, value, key) in [
        (
            "REBILL_INVOICES__PAYMENT_TERMS_DAYS",
            "soon",
            "invoices.payment_terms_days",
        ),
        ("REBILL_LOG__LEVEL", "loud", "log.level"),
        ("REBILL_XERO__TAX_RATES__OUTPUT", "110", "xero.tax_rates"),
        ("REBILL_SCHEDULE__LEASE_SECS", "0", "schedule.lease_secs"),
    ] {
        let e = error_of("[invoices]\ngrace_days = 1\n", &[(var, value)]);
        assert_eq!(e.source_name, var, "{e}");
        assert!(e.key.starts_with(key), "{e}");
    }
    // A bad value in the file still names the file.
    assert_eq!(
        error_of("[log]\nlevel = \"loud\"\n", &[]).source_name,
        "rebill.toml"
    );
}

#[test]
fn metrics_on_a_non_loopback_address_are_refused_unless_allowed() {
    let e = error_of("[metrics]\nlisten = \"0.0.0.0:9187\"\n", &[]);
    assert_eq!(e.key, "metrics.listen");
    assert!(e.reason.contains("allow_remote"), "{e}");
    for ok in [
        "[metrics]\nlisten = \"127.0.0.1:9187\"\n",
        "[metrics]\nlisten = \"[::1]:9187\"\n",
        "[metrics]\nlisten = \"0.0.0.0:9187\"\nallow_remote = true\n",
    ] {
        Config::from_sources(ok, "f", &[]).unwrap();
    }
}

#[test]
fn a_secret_that_cannot_be_read_is_an_error_only_when_its_integration_is_used() {
    let c = Config::from_sources(
        "[xero]\nclient_id = \"app\"\nclient_secret_file = \"/nonexistent/xero\"\n\
         [autotask]\nusername = \"api@example.com\"\n",
        "f",
        &[],
    )
    .unwrap();
    let e = c.xero.client_secret().unwrap_err();
    assert_eq!(e.key, "xero.client_secret_file");
    assert!(e.reason.contains("/nonexistent/xero"), "{e}");
    assert_eq!(c.autotask.secrets().unwrap_err().key, "autotask.secret");
}

#[test]
fn an_unreadable_config_file_is_an_error_naming_it_never_the_defaults() {
    let denied = |p: &Path| -> std::io::Result<bool> {
        if p == Path::new("/etc/rebill/rebill.toml") {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        } else {
            Ok(false)
        }
    };
    let candidates: Vec<PathBuf> = CANDIDATES.iter().map(PathBuf::from).collect();
    let e = find_file(None, &candidates, denied).unwrap_err();
    assert_eq!(e.source_name, "/etc/rebill/rebill.toml");
    assert!(e.reason.contains("sudo -u rebill"), "{e}");
    assert_eq!(find_file(None, &candidates, |_| Ok(false)).unwrap(), None);
    // A working directory closed to the service user passes over to /etc/rebill/rebill.toml.
    let cwd_closed = |p: &Path| -> std::io::Result<bool> {
        if p == Path::new("rebill.toml") {
            Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
        } else {
            Ok(true)
        }
    };
    assert_eq!(
        find_file(None, &candidates, cwd_closed).unwrap(),
        Some(PathBuf::from("/etc/rebill/rebill.toml"))
    );
}

/// Every key of the configuration appears in config/rebill.example.toml, which parses.
#[test]
fn the_example_config_documents_every_key() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/rebill.example.toml"
    ))
    .unwrap();
    let c = Config::from_sources(&text, "example", &[]).unwrap();
    // Metrics are off by default, and the example says so and leaves them off.
    assert_eq!(c.metrics.listen, None);
    assert!(text.contains("# listen = \"127.0.0.1:9187\""));
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    for (section, v) in &defaults {
        assert!(
            text.contains(&format!("[{section}]")),
            "[{section}] is documented"
        );
        for (key, value) in v.as_table().unwrap() {
            let documented = if value.is_table() {
                text.contains(&format!("[{section}.{key}]"))
            } else {
                text.contains(&format!("\n{key} =")) || text.contains(&format!("# {key} ="))
            };
            assert!(documented, "{section}.{key} is documented");
        }
    }
    for secret in [
        "client_id",
        "client_secret_file",
        "tenant_id",
        "username",
        "secret_file",
        "integration_code_file",
        "spool_dir",
        "mapping_file",
        "listen",
    ] {
        assert!(
            text.contains(&format!("# {secret} =")),
            "{secret} is documented"
        );
    }
}

#[test]
fn the_example_mapping_and_rate_plan_parse() {
    let m = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/cdr-mapping.example.toml"
    ))
    .unwrap();
    crate::cdr::Mapping::from_toml(&m).unwrap();
    let p = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/rate-plan.example.toml"
    ))
    .unwrap();
    toml::from_str::<crate::domain::rating::RatePlan>(&p).unwrap();
}
