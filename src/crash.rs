//! Fault injection for the crash tests: with `REBILL_CRASH_AT=<point>` the process aborts at that
//! point, as a SIGKILL would stop it. The points are the step boundaries where a crash could lose
//! or duplicate work: the billing pipeline's, and a CDR import's around each batch's commit.

pub fn crash_point(point: &str) {
    if std::env::var("REBILL_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("rebilld: aborting at crash point {point} (REBILL_CRASH_AT)");
        std::process::abort();
    }
}
