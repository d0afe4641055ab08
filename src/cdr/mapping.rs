//! How a CDR file's columns map to a call: by header name, or by 1-based position for files
//! without a header row. Loaded from TOML (`config/cdr-mapping.example.toml` documents every key).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use crate::domain::text::{Country, national_form};

/// A column: its header name, or its 1-based position.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Column {
    Position(usize),
    Name(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The source's own call id; without it a key is derived from user, start, duration, destination.
    pub call_id: Option<Column>,
    pub user: Column,
    pub start: Column,
    pub duration: Column,
    pub destination: Column,
    pub call_type: Option<Column>,
    pub cost: Option<Column>,
    pub direction: Option<Column>,
    pub disposition: Option<Column>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// A name for the source: call ids are unique per source.
    #[serde(default = "default_source")]
    pub source: String,
    #[serde(default = "yes")]
    pub has_header: bool,
    #[serde(default = "comma")]
    pub delimiter: char,
    pub columns: Columns,
    #[serde(default)]
    pub time: TimeFormat,
    /// Values of the disposition column that drop a row on purpose (counted as skipped).
    #[serde(default)]
    pub skip_dispositions: Vec<String>,
    /// Values of the direction column that mean an inbound call.
    #[serde(default = "inbound_words")]
    pub inbound_values: Vec<String>,
    /// Destination prefix → call type, longest prefix wins; used when there is no call-type
    /// column, its field is empty, or `call_type_by = "prefix"`. Prefixes are written in national
    /// form (`04`, `0011`, `1300`): a destination written in E.164 (`+614…`) is read in national
    /// form (`04…`) with `cdr.country`'s trunk prefix to find its rule.
    #[serde(default)]
    pub call_type_prefixes: BTreeMap<String, String>,
    /// Where a call's type comes from: `column` (the call-type column when it has a value, else
    /// the prefixes) or `prefix` (always the prefixes: e.g. to tell local from national calls
    /// that a carrier labels alike).
    #[serde(default)]
    pub call_type_by: CallTypeBy,
    #[serde(default = "national")]
    pub default_call_type: String,
    /// True only for `Mapping::standard()`, used when none is configured: its optional columns
    /// may be missing from a file. A mapping someone wrote must name columns the file has.
    #[serde(skip)]
    pub standard: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallTypeBy {
    #[default]
    Column,
    Prefix,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeFormat {
    /// `rfc3339` (with offset), `epoch` (seconds), or a chrono format like `%Y-%m-%d %H:%M:%S` for
    /// local times in `timezone`.
    #[serde(default = "rfc3339")]
    pub format: String,
    /// The zone of local times (default: business.timezone).
    pub timezone: Option<String>,
}

impl Default for TimeFormat {
    fn default() -> Self {
        TimeFormat {
            format: rfc3339(),
            timezone: None,
        }
    }
}

fn default_source() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}
fn comma() -> char {
    ','
}
fn rfc3339() -> String {
    "rfc3339".into()
}
fn national() -> String {
    "national".into()
}
fn inbound_words() -> Vec<String> {
    ["in", "inbound", "incoming", "terminating"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Mapping {
    pub fn from_toml(text: &str) -> Result<Mapping, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The mapping of a typical PBX export with a header row (used when none is configured).
    pub fn standard() -> Mapping {
        Mapping::from_toml(
            "[columns]\ncall_id = \"call_id\"\nuser = \"user\"\nstart = \"start\"\nduration = \"duration\"\n\
             destination = \"destination\"\ncall_type = \"call_type\"\ncost = \"cost\"\ndirection = \"direction\"\n\
             disposition = \"disposition\"\n",
        )
        .map(|mut m| {
            m.skip_dispositions = vec!["NO ANSWER".into(), "BUSY".into(), "FAILED".into()];
            m.standard = true;
            m
        })
        .expect("the standard mapping parses")
    }

    /// The call type of a destination by the longest matching prefix (lowercased, as call types
    /// are), read in national form; the default type when no prefix matches.
    pub fn call_type_of(&self, destination: &str, country: Country) -> String {
        let destination = national_form(destination, country);
        self.call_type_prefixes
            .iter()
            .filter(|(p, _)| destination.starts_with(p.as_str()))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, t)| t.to_ascii_lowercase())
            .unwrap_or_else(|| self.default_call_type.to_ascii_lowercase())
    }
}

/// Reads a start time. Local times are resolved in `tz`: a time in a daylight-saving gap (which the
/// clock skipped) is moved forward by the gap, as the PBX's clock would have read had it not
/// jumped; a time in an overlap (which happened twice) is taken as the first, earlier instant.
pub fn parse_start(s: &str, format: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    let t = read_start(s, format, tz)?;
    // Calls are keyed and found by their start second; a year outside 2000–2099 is a broken field.
    // The year is the one the source wrote, read in the mapping's zone (a PBX's 2000-01-01 00:30
    // in Sydney is 1999 in UTC, and still a valid call).
    if !(2000..=2099).contains(&t.with_timezone(&tz).year()) {
        return Err(format!("start time {s:?} is outside the years 2000–2099"));
    }
    Ok(t)
}

fn read_start(s: &str, format: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    match format {
        "rfc3339" => DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| format!("start time {s:?} is not RFC 3339 with an offset: {e}")),
        "epoch" => s
            .parse::<i64>()
            .ok()
            .and_then(|n| DateTime::from_timestamp(n, 0))
            .ok_or_else(|| format!("start time {s:?} is not epoch seconds")),
        f => {
            let naive = NaiveDateTime::parse_from_str(s, f)
                .map_err(|e| format!("start time {s:?} does not match {f:?}: {e}"))?;
            Ok(resolve_local(naive, tz))
        }
    }
}

/// Reads a call's duration: whole seconds ("65"), seconds with a fraction ("64.2", a started second
/// counts whole: 65), or a clock reading ("1:05", "0:01:05") as carriers often write it.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("duration {s:?} is not seconds (65, 64.2) nor [h:]mm:ss");
    if s.starts_with('-') {
        return Err(format!("duration {s:?} is negative"));
    }
    let secs = if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() > 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad());
        }
        let n: Vec<i64> = parts
            .iter()
            .map(|p| p.parse().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        if n[1..].iter().any(|&x| x >= 60) {
            return Err(bad());
        }
        n.iter().fold(0, |acc, x| acc * 60 + x)
    } else if let Some((whole, frac)) = s.split_once('.') {
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        whole + i64::from(frac.bytes().any(|b| b != b'0') && whole >= 0)
    } else {
        s.parse().map_err(|_| bad())?
    };
    if !(0..=86_400 * 2).contains(&secs) {
        return Err(format!(
            "duration {s:?} is negative or longer than two days"
        ));
    }
    Ok(secs)
}

pub fn resolve_local(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(d) => d.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the offset in force before the gap, applied to the wall-clock reading.
            let before = tz
                .from_local_datetime(&(naive - Duration::hours(3)))
                .earliest()
                .map(|d| chrono::Offset::fix(d.offset()).local_minus_utc())
                .unwrap_or(0);
            (naive - Duration::seconds(i64::from(before))).and_utc()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syd() -> Tz {
        "Australia/Sydney".parse().unwrap()
    }

    #[test]
    fn local_times_in_the_business_zone() {
        let t = parse_start("2026-11-03 09:30:00", "%Y-%m-%d %H:%M:%S", syd()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-02T22:30:00+00:00");
        let t = parse_start("2026-11-03T09:30:00+11:00", "rfc3339", syd()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-02T22:30:00+00:00");
        assert!(parse_start("03/11/2026", "rfc3339", syd()).is_err());
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_moves_forward_by_the_gap() {
        // Sydney, 2026-10-04: 02:00 AEST → 03:00 AEDT. 02:30 does not exist; it reads as 03:30 AEDT.
        let t = parse_start("2026-10-04 02:30:00", "%Y-%m-%d %H:%M:%S", syd()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-10-03T16:30:00+00:00");
    }

    #[test]
    fn a_time_in_the_autumn_overlap_is_the_first_occurrence() {
        // Sydney, 2026-04-05: 03:00 AEDT → 02:00 AEST. 02:30 happens twice; the first is AEDT (+11).
        let t = parse_start("2026-04-05 02:30:00", "%Y-%m-%d %H:%M:%S", syd()).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-04-04T15:30:00+00:00");
    }

    #[test]
    fn a_start_outside_2000_to_2099_is_refused() {
        assert!(
            parse_start("0", "epoch", syd())
                .unwrap_err()
                .contains("2000–2099")
        );
        assert!(parse_start("1969-12-31T00:00:00Z", "rfc3339", syd()).is_err());
        assert!(parse_start("2100-01-01T00:00:00Z", "rfc3339", syd()).is_err());
        assert!(parse_start("2026-10-01T00:00:00+10:00", "rfc3339", syd()).is_ok());
    }

    #[test]
    fn the_year_check_is_made_in_the_mappings_zone() {
        // 00:30 on 1 January 2000 in Sydney is 1999 in UTC: a valid local start.
        let f = "%Y-%m-%d %H:%M:%S";
        assert!(parse_start("2000-01-01 00:30:00", f, syd()).is_ok());
        // 23:30 on 31 December 2099 in Sydney is 2099 in UTC too, but 2100-01-01 00:30 local is not.
        assert!(parse_start("2099-12-31 23:30:00", f, syd()).is_ok());
        assert!(parse_start("2100-01-01 00:30:00", f, syd()).is_err());
        assert!(parse_start("1999-12-31 23:30:00", f, syd()).is_err());
    }

    #[test]
    fn durations_in_seconds_fractions_and_clock_readings() {
        for (text, secs) in [
            ("0", 0),
            ("65", 65),
            ("65.0", 65),
            ("64.2", 65),
            ("1:05", 65),
            ("0:01:05", 65),
            ("1:00:00", 3600),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for bad in [
            "-5", "1:75", "abc", "1::5", "65.", "1:2:3:4", "200000", "-0.5",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn call_type_by_longest_prefix() {
        let mut m = Mapping::standard();
        m.call_type_prefixes.insert("04".into(), "mobile".into());
        m.call_type_prefixes
            .insert("0011".into(), "international".into());
        m.call_type_prefixes.insert("00".into(), "other".into());
        m.call_type_prefixes.insert("02".into(), "Local".into());
        m.call_type_prefixes.insert("190".into(), "premium".into());
        let au = Country::AU;
        assert_eq!(m.call_type_of("0412345678", au), "mobile");
        assert_eq!(
            m.call_type_of("+61412345678", au),
            "mobile",
            "E.164 read in national form"
        );
        assert_eq!(m.call_type_of("001144123", au), "international");
        assert_eq!(m.call_type_of("0299990000", au), "local", "lowercased");
        assert_eq!(m.call_type_of("0399990000", au), "national");
        assert_eq!(m.call_type_of("1900123456", au), "premium");
    }
}
