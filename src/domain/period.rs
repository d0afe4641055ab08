//! A billing period: one calendar month in the business time zone. Its instants are computed once,
//! half-open `[start, end)`, so a call at 23:59:59.999 on the last day and one at 00:00 on the 1st
//! can never both belong to the same month or to neither.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    pub fn new(year: i32, month: u32) -> Result<Self, DomainError> {
        if !(2000..=2999).contains(&year) || !(1..=12).contains(&month) {
            return Err(DomainError::InvalidPeriod {
                value: format!("{year:04}-{month:02}"),
            });
        }
        Ok(Period { year, month })
    }

    /// `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::InvalidPeriod {
            value: s.to_string(),
        };
        let (y, m) = s.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year = y.parse().map_err(|_| bad())?;
        let month = m.parse().map_err(|_| bad())?;
        Period::new(year, month).map_err(|_| bad())
    }

    /// The period that contains `instant` in the business time zone.
    pub fn containing(instant: DateTime<Utc>, tz: Tz) -> Self {
        let local = instant.with_timezone(&tz);
        Period {
            year: local.year(),
            month: local.month(),
        }
    }

    /// The period that contains `date`.
    pub fn of_date(date: NaiveDate) -> Self {
        Period {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("validated month")
    }

    pub fn last_day(self) -> NaiveDate {
        self.next().first_day() - Duration::days(1)
    }

    pub fn days(self) -> u32 {
        self.last_day().day()
    }

    pub fn next(self) -> Period {
        if self.month == 12 {
            Period {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Period {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    pub fn previous(self) -> Period {
        if self.month == 1 {
            Period {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Period {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The instants `[start, end)` of this month in `tz`.
    pub fn bounds(self, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            start_of_day(self.first_day(), tz),
            start_of_day(self.next().first_day(), tz),
        )
    }
}

/// The first instant of a local date. Where midnight falls in a daylight-saving gap (some zones
/// switch at 00:00), the day starts at the first local time that exists.
pub fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let mut t = date.and_hms_opt(0, 0, 0).expect("midnight");
    for _ in 0..=180 {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(dt) => return dt.with_timezone(&Utc),
            LocalResult::Ambiguous(earliest, _) => return earliest.with_timezone(&Utc),
            LocalResult::None => t += Duration::minutes(1),
        }
    }
    // No zone has a gap longer than a few hours; fall back to UTC midnight rather than panic.
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).expect("midnight"))
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Period::parse(s)
    }
}

impl TryFrom<String> for Period {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Period::parse(&s)
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_yyyy_mm() {
        assert_eq!(Period::parse("2026-02").unwrap().to_string(), "2026-02");
        for bad in ["2026-13", "2026-2", "26-02", "2026/02", "", "2026-00"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn months_roll_over_years() {
        let dec = Period::parse("2026-12").unwrap();
        assert_eq!(dec.next().to_string(), "2027-01");
        assert_eq!(dec.next().previous(), dec);
        assert_eq!(Period::parse("2028-02").unwrap().days(), 29);
        assert_eq!(Period::parse("2026-02").unwrap().days(), 28);
    }

    #[test]
    fn bounds_follow_daylight_saving_in_sydney() {
        // Sydney: AEDT (+11) from the first Sunday of October to the first Sunday of April.
        let tz: Tz = "Australia/Sydney".parse().unwrap();
        let (start, end) = Period::parse("2026-04").unwrap().bounds(tz);
        assert_eq!(start.to_rfc3339(), "2026-03-31T13:00:00+00:00"); // 00:00 AEDT
        assert_eq!(end.to_rfc3339(), "2026-04-30T14:00:00+00:00"); // 00:00 AEST
        let (_, oct_end) = Period::parse("2026-10").unwrap().bounds(tz);
        assert_eq!(oct_end.to_rfc3339(), "2026-10-31T13:00:00+00:00");
    }

    #[test]
    fn containing_uses_the_business_zone() {
        let tz: Tz = "Australia/Sydney".parse().unwrap();
        let instant = "2026-10-31T13:30:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(Period::containing(instant, tz).to_string(), "2026-11");
        assert_eq!(
            Period::containing(instant, chrono_tz::UTC).to_string(),
            "2026-10"
        );
    }

    #[test]
    fn a_midnight_gap_starts_the_day_at_the_first_real_minute() {
        // Chile springs forward at 00:00 → 01:00 (e.g. 2026-09-06).
        let tz: Tz = "America/Santiago".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 9, 6).unwrap();
        let s = start_of_day(d, tz).with_timezone(&tz);
        assert_eq!(s.date_naive(), d);
    }
}
