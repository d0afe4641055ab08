//! Output: readable tables by default, JSON with `--json`.

use super::Ctx;

/// Prints a one-line message, or the JSON value with `--json`.
pub fn say(ctx: &Ctx, text: &str, json: serde_json::Value) {
    if ctx.json {
        println!("{json}");
    } else {
        println!("{text}");
    }
}

/// Prints `rows` under `headers` as an aligned table ("No Records Found" when empty).
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(headers, rows));
}

pub use crate::table::{natural_cmp, render_table, sort_rows_naturally};

/// The calendar date of an instant in the business zone: what people mean by "emailed on". (An
/// invoice emailed at 02:00 on 1 January in Sydney was emailed on 2027-01-01, though it was still
/// 31 December in UTC.)
pub fn local_date(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d").to_string()
}

/// An instant to the minute in the business zone, with the zone's abbreviation (AEDT, AEST).
pub fn local_time(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

/// An instant to the second in the business zone, with the zone's abbreviation.
pub fn local_time_secs(t: chrono::DateTime<chrono::Utc>, tz: chrono_tz::Tz) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// What a push did, per system: one system's outage never hides what the other sent.
pub fn print_push(p: &crate::pipeline::PushReport) {
    for line in p.summary() {
        println!("  pushed to {line}");
    }
    if p.duplicates_removed > 0 {
        println!(
            "  removed {} duplicate(s) (voided or deleted; see the audit log)",
            p.duplicates_removed
        );
    }
    for f in &p.failed {
        println!("  failed: {f}");
    }
    for f in &p.parked {
        println!("  parked: {f}");
    }
    if p.waiting_for_config > 0 {
        println!(
            "  {} action(s) wait for an integration that is not configured",
            p.waiting_for_config
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tables_say_no_records_found() {
        assert_eq!(render_table(&["a"], &[]), "No Records Found\n");
    }

    #[test]
    fn dates_print_in_the_business_zone_not_utc() {
        use chrono::TimeZone;
        // 02:00 on 1 January in Sydney (AEDT, +11) is 15:00 on 31 December in UTC.
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 31, 15, 0, 0)
            .unwrap();
        let tz = chrono_tz::Australia::Sydney;
        assert_eq!(local_date(t, tz), "2027-01-01");
        assert_eq!(local_time(t, tz), "2027-01-01 02:00 AEDT");
        assert_eq!(local_time_secs(t, tz), "2027-01-01 02:00:00 AEDT");
    }

    #[test]
    fn columns_align() {
        let t = render_table(
            &["id", "name"],
            &[
                vec!["1".into(), "Acme".into()],
                vec!["22".into(), "B".into()],
            ],
        );
        assert_eq!(t, "id  name\n--  ----\n1   Acme\n22  B\n");
    }
}
