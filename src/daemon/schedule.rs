//! When a period's run is due: the first occurrence of `schedule.cron` inside the month, in
//! `schedule.timezone`, computed with chrono-tz on every check (tokio-cron-scheduler's zoned jobs
//! keep the offset they were created with and fire an hour off after a daylight-saving change, so
//! the scheduler here is only a trigger). Pure functions over an injectable clock.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::domain::Period;

pub use crate::clock::{Clock, SystemClock, TestClock};

#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    pub tz: Tz,
    pub expression: String,
}

impl Schedule {
    pub fn parse(expression: &str, tz: Tz) -> Result<Self, String> {
        let cron: Cron = expression
            .parse()
            .map_err(|e| format!("{expression:?}: {e}"))?;
        Ok(Schedule {
            cron,
            tz,
            expression: expression.to_string(),
        })
    }

    /// The moment period `p`'s run is due: the schedule's first occurrence within the month.
    pub fn due_at(&self, p: Period) -> Option<DateTime<Utc>> {
        let (start, end) = p.bounds(self.tz);
        let local = start.with_timezone(&self.tz);
        let next = self
            .cron
            .find_next_occurrence(&local, true)
            .ok()?
            .with_timezone(&Utc);
        (next < end).then_some(next)
    }

    /// The next due moment after `now` (for status lines).
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut p = Period::containing(now, self.tz);
        for _ in 0..24 {
            if let Some(t) = self.due_at(p)
                && t > now
            {
                return Some(t);
            }
            p = p.next();
        }
        None
    }

    /// The next run the daemon makes, skipping periods already billed (`is_done`): the current
    /// period while it is not done (its time may have passed: then the daemon's next tick runs
    /// it), else the first later period's due moment.
    pub fn next_run(
        &self,
        now: DateTime<Utc>,
        is_done: impl Fn(Period) -> bool,
    ) -> Option<(DateTime<Utc>, Period)> {
        let mut p = Period::containing(now, self.tz);
        for _ in 0..24 {
            if !is_done(p)
                && let Some(t) = self.due_at(p)
            {
                return Some((t, p));
            }
            p = p.next();
        }
        None
    }

    /// The periods due at `now` and not yet done, oldest first. Catch-up starts after the newest
    /// done period (or at the current one on a fresh database): each missed month is billed
    /// exactly once, in order.
    pub fn due_periods(
        &self,
        now: DateTime<Utc>,
        last_done: Option<Period>,
        is_done: impl Fn(Period) -> bool,
    ) -> Vec<Period> {
        let current = Period::containing(now, self.tz);
        let mut p = last_done.map(|d| d.next()).unwrap_or(current);
        let mut out = Vec::new();
        while p <= current {
            if !is_done(p) && self.due_at(p).is_some_and(|t| t <= now) {
                out.push(p);
            }
            p = p.next();
        }
        out
    }

    /// "2026-12-01 02:00 AEDT".
    pub fn describe(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%Y-%m-%d %H:%M %Z")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn sydney() -> Schedule {
        Schedule::parse("0 0 2 1 * *", "Australia/Sydney".parse().unwrap()).unwrap()
    }

    #[test]
    fn the_next_run_skips_a_period_already_billed() {
        let s = sydney();
        // 1 December, 01:00 in Sydney: December's run is at 02:00 today…
        let now = at("2026-11-30T14:00:00Z");
        let dec = Period::parse("2026-12").unwrap();
        assert_eq!(s.next_run(now, |_| false).map(|(_, p)| p), Some(dec));
        // …unless December was billed already (a manual `rebilld run`): then January's.
        let (t, p) = s.next_run(now, |p| p == dec).unwrap();
        assert_eq!(p, dec.next());
        assert_eq!(s.describe(t), "2027-01-01 02:00 AEDT");
        // After 02:00 and not done yet (the daemon was down): still December, overdue.
        let late = at("2026-12-01T10:00:00Z");
        let (t, p) = s.next_run(late, |_| false).unwrap();
        assert_eq!(p, dec);
        assert!(t < late);
    }

    #[test]
    fn due_at_two_in_the_morning_local_on_the_first_across_dst() {
        let s = sydney();
        // December: AEDT (+11) → 2026-11-30T15:00Z. July: AEST (+10) → 2026-06-30T16:00Z.
        assert_eq!(
            s.due_at(Period::parse("2026-12").unwrap()),
            Some(at("2026-11-30T15:00:00Z"))
        );
        assert_eq!(
            s.due_at(Period::parse("2026-07").unwrap()),
            Some(at("2026-06-30T16:00:00Z"))
        );
        // October 1st is still AEST (DST starts on the first Sunday): +10.
        assert_eq!(
            s.due_at(Period::parse("2026-10").unwrap()),
            Some(at("2026-09-30T16:00:00Z"))
        );
        assert_eq!(
            s.describe(at("2026-11-30T15:00:00Z")),
            "2026-12-01 02:00 AEDT"
        );
    }

    #[test]
    fn nothing_is_due_before_the_time_and_the_month_is_due_after_it() {
        let s = sydney();
        let dec = Period::parse("2026-12").unwrap();
        assert!(
            s.due_periods(
                at("2026-11-30T14:59:59Z"),
                Some(Period::parse("2026-11").unwrap()),
                |_| false
            )
            .is_empty()
        );
        assert_eq!(
            s.due_periods(
                at("2026-11-30T15:00:00Z"),
                Some(Period::parse("2026-11").unwrap()),
                |_| false
            ),
            vec![dec]
        );
    }

    #[test]
    fn missed_months_are_caught_up_oldest_first_once() {
        let s = sydney();
        let done = Period::parse("2026-08").unwrap();
        let due = s.due_periods(at("2026-11-10T00:00:00Z"), Some(done), |p| {
            p == Period::parse("2026-10").unwrap()
        });
        assert_eq!(
            due,
            vec![
                Period::parse("2026-09").unwrap(),
                Period::parse("2026-11").unwrap()
            ]
        );
    }

    #[test]
    fn a_fresh_database_bills_only_the_current_month() {
        let s = sydney();
        assert_eq!(
            s.due_periods(at("2026-11-10T00:00:00Z"), None, |_| false),
            vec![Period::parse("2026-11").unwrap()]
        );
    }
}
