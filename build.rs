//! Compiles the PostgreSQL variants of the integration tests in when `REBILL_TEST_POSTGRES_URL` is
//! set; without it they are reported as ignored ("skipped"), never passed silently. The same for
//! the test that needs `systemd-analyze`.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(rebill_pg)");
    println!("cargo::rustc-check-cfg=cfg(rebill_systemd_analyze)");
    println!("cargo::rerun-if-env-changed=REBILL_TEST_POSTGRES_URL");
    println!("cargo::rerun-if-changed=migrations");
    if std::env::var_os("REBILL_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=rebill_pg");
    }
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    if analyze.is_ok_and(|o| o.status.success()) {
        println!("cargo::rustc-cfg=rebill_systemd_analyze");
    }
}
