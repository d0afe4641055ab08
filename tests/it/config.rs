//! Configuration as an operator meets it, driven through the real binary: which commands need
//! secrets, what an unreadable file or a bad value does, and what leaves a database behind.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;

/// `rebilld` in `dir`, with nothing of this machine's environment that the configuration reads.
fn rebilld(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("rebilld").unwrap();
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .arg("--actor")
        .arg("ops-anna");
    c
}

/// The documented install: both integrations configured, their secrets only as systemd
/// credentials of the unit, so an admin's shell has none.
fn installed_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rebill.toml");
    std::fs::write(
        &path,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n\
             [xero]\nclient_id = \"APP-ID\"\n\
             [autotask]\nusername = \"api@example.com\"\n",
            dir.join("rebill.db").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn admin_commands_that_call_no_remote_api_run_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = installed_config(dir.path());
    for args in [
        &["status"][..],
        &["customer", "list"],
        &["service", "list"],
        &["invoice", "list", "--period", "2026-11"],
        &["audit"],
        &["xero", "status"],
        &["migrate"],
        &["completions", "bash"],
        &["man"],
    ] {
        rebilld(dir.path())
            .arg("--config")
            .arg(&config)
            .args(args)
            .assert()
            .success();
    }
}

#[test]
fn a_command_that_calls_an_api_without_its_secret_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = installed_config(dir.path());
    rebilld(dir.path())
        .arg("--config")
        .arg(&config)
        .arg("push")
        .assert()
        .code(78)
        .stderr(contains("xero.client_secret"));
    // Autotask alone, with its secret given and its integration code missing.
    let secret = dir.path().join("autotask.secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let only_autotask = dir.path().join("autotask.toml");
    std::fs::write(
        &only_autotask,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n\
             [autotask]\nusername = \"api@example.com\"\nsecret_file = \"{}\"\n",
            dir.path().join("rebill.db").display(),
            secret.display()
        ),
    )
    .unwrap();
    rebilld(dir.path())
        .arg("--config")
        .arg(&only_autotask)
        .args(["autotask", "products"])
        .assert()
        .code(78)
        .stderr(contains("autotask.integration_code"))
        .stderr(contains("s3cret").not());
}

#[test]
fn the_daemon_without_a_secret_of_a_configured_integration_exits_78_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = installed_config(dir.path());
    rebilld(dir.path())
        .arg("--config")
        .arg(&config)
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(78)
        .stderr(contains("xero.client_secret"));
}

#[test]
fn a_bad_log_level_or_format_is_refused_not_turned_into_silence() {
    let dir = tempfile::tempdir().unwrap();
    let config = installed_config(dir.path());
    rebilld(dir.path())
        .arg("--config")
        .arg(&config)
        .env("REBILL_LOG__LEVEL", "loud")
        .args(["customer", "list"])
        .assert()
        .code(78)
        .stderr(contains("REBILL_LOG__LEVEL"))
        .stderr(contains("log.level"));
    rebilld(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "xml", "customer", "list"])
        .assert()
        .code(2)
        .stderr(contains("xml"));
}

/// An admin outside the service's group: the file's directory cannot even be looked into. As
/// root (who may look anywhere) the binary runs as `nobody` through `setpriv`.
#[test]
fn an_unreadable_config_file_is_an_error_naming_it_and_creates_no_database() {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o777)).unwrap();
    let locked = root.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("rebill.toml"), "[invoices]\ngrace_days = 1\n").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    symlink("locked/rebill.toml", root.join("rebill.toml")).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("rebilld");
    let as_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    cmd.current_dir(root)
        .env_remove("RUST_LOG")
        .env_remove("CREDENTIALS_DIRECTORY")
        .args(["customer", "list"])
        .assert()
        .code(78)
        .stderr(contains("rebill.toml"))
        .stderr(contains("ermission denied"));
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(!root.join("rebill.db").exists(), "no database was created");
}

#[test]
fn rebilld_sandbox_leaves_no_database_behind() {
    let dir = tempfile::tempdir().unwrap();
    // Two free ports, both held until both are known so that they differ.
    let listeners: Vec<_> = (0..2)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port().to_string())
        .collect();
    drop(listeners);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("rebilld"))
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .args(["sandbox", "--xero-port", &ports[0]])
        .args(["--autotask-port", &ports[1]])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let serving = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("Autotask stand-in"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(serving, "the sandbox served");
    assert!(!dir.path().join("rebill.db").exists(), "no ./rebill.db");
}

#[test]
fn a_config_error_is_not_restarted_for_ever_by_the_unit() {
    assert_eq!(rebill::config::EXIT_CONFIG, 78);
    let unit = std::fs::read_to_string("config/rebilld.service").unwrap();
    assert!(
        unit.lines()
            .any(|l| l.trim() == "RestartPreventExitStatus=78"),
        "the unit does not restart after exit status 78"
    );
}
