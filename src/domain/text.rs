//! Checked text values.

use std::fmt;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::DomainError;

/// A trimmed, non-empty string of bounded length (names, descriptions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NonEmpty(String);

impl NonEmpty {
    pub const MAX_LEN: usize = 255;

    pub fn parse(what: &'static str, s: &str) -> Result<Self, DomainError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DomainError::InvalidText {
                what,
                reason: "it is empty".into(),
            });
        }
        if t.chars().count() > Self::MAX_LEN {
            return Err(DomainError::InvalidText {
                what,
                reason: format!("it is longer than {} characters", Self::MAX_LEN),
            });
        }
        if t.chars().any(|c| c.is_control()) {
            return Err(DomainError::InvalidText {
                what,
                reason: "it contains control characters".into(),
            });
        }
        Ok(NonEmpty(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NonEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address: one `@`, a dot in the domain, no spaces. (Deliverability is Xero's business.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim();
        let bad = |reason: &str| DomainError::InvalidText {
            what: "email address",
            reason: format!("{t:?} {reason}"),
        };
        let (local, domain) = t.split_once('@').ok_or_else(|| bad("has no @"))?;
        if local.is_empty() || domain.contains('@') {
            return Err(bad("is not of the form name@domain"));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(bad("has no valid domain"));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) || t.len() > 254 {
            return Err(bad("contains spaces or is too long"));
        }
        Ok(Email(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_empty_trims_and_refuses_blank() {
        assert_eq!(NonEmpty::parse("name", "  Acme ").unwrap().as_str(), "Acme");
        assert!(NonEmpty::parse("name", "   ").is_err());
        assert!(NonEmpty::parse("name", "a\u{7}b").is_err());
        assert!(NonEmpty::parse("name", &"x".repeat(256)).is_err());
    }

    #[test]
    fn email_needs_at_and_domain() {
        assert!(Email::parse("ops@example.com").is_ok());
        for bad in [
            "ops",
            "@example.com",
            "ops@example",
            "o ps@example.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}

/// A cell as a spreadsheet may safely open it (OWASP's CSV-injection rule): text that begins with
/// `=`, `+`, `-`, `@`, a tab or a carriage return is run as a formula by Excel, LibreOffice and
/// Google Sheets, so it is prefixed with `'`, which they show as text. A plain number (`-12.50`,
/// `+3`) stays a number: a credit line's negative amount must still add up in the sheet.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell
        .chars()
        .next()
        .is_some_and(|c| matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r'));
    if risky && !is_plain_number(cell) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// `-12`, `+3.5`, `-0.000001`: an optional sign, digits, an optional fraction. Nothing else.
fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, frac) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

/// The country whose dialling rules turn a national number into E.164 (`cdr.country`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Country {
    #[default]
    AU,
    NZ,
    GB,
    IE,
    US,
    CA,
}

impl Country {
    /// (country calling code, international access prefix, trunk prefix, how many digits follow
    /// the trunk prefix in a full national number).
    fn plan(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        RangeInclusive<usize>,
    ) {
        match self {
            Country::AU => ("61", "0011", "0", 9..=9),
            Country::NZ => ("64", "00", "0", 8..=10),
            Country::GB => ("44", "00", "0", 9..=10),
            Country::IE => ("353", "00", "0", 7..=9),
            Country::US | Country::CA => ("1", "011", "1", 10..=10),
        }
    }
}

/// A number or extension in one form, so that a CDR's caller matches the catalogue's user however
/// either was written: punctuation (spaces, dashes, dots, brackets) goes; a number dialled
/// internationally (`0011 61 2 …` in Australia) or nationally with the trunk prefix
/// (`02 9000 1000`) becomes E.164 (`+61290001000`); anything else (extensions such as `201`,
/// 13/1300/1800 numbers, numbers of another shape) is kept as written, without punctuation.
pub fn e164(s: &str, country: Country) -> String {
    let bare: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
        .collect();
    let (cc, intl, trunk, national_len) = country.plan();
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = bare.strip_prefix('+') {
        // "+61 (0)2 …": a trunk prefix written after the country code is dropped.
        if let Some(national) = rest.strip_prefix(cc).and_then(|n| n.strip_prefix(trunk))
            && national_len.contains(&national.len())
            && all_digits(national)
        {
            return format!("+{cc}{national}");
        }
        return bare;
    }
    if let Some(rest) = bare.strip_prefix(intl)
        && all_digits(rest)
        && rest.len() >= 7
    {
        return format!("+{rest}");
    }
    if let Some(national) = bare.strip_prefix(trunk)
        && national_len.contains(&national.len())
        && all_digits(national)
    {
        return format!("+{cc}{national}");
    }
    bare
}

/// A number in national form, as destination prefix rules are written: `+61 4…` becomes `04…`
/// in Australia; any other number keeps its digits (punctuation aside).
pub fn national_form(s: &str, country: Country) -> String {
    let bare: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
        .collect();
    let (cc, _, trunk, _) = country.plan();
    match bare.strip_prefix('+').and_then(|r| r.strip_prefix(cc)) {
        Some(national) if !national.is_empty() => format!("{trunk}{national}"),
        _ => bare,
    }
}

#[cfg(test)]
mod number_tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_plain_numbers_kept() {
        for (cell, safe) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+61 2 9000", "'+61 2 9000"),
            ("-1+2", "'-1+2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tcmd", "'\tcmd"),
            ("\rcmd", "'\rcmd"),
            ("-12.50", "-12.50"),
            ("+3", "+3"),
            ("Acme", "Acme"),
            ("", ""),
            ("-", "'-"),
            ("-1.", "'-1."),
        ] {
            assert_eq!(spreadsheet_safe(cell), safe, "{cell:?}");
        }
    }

    #[test]
    fn numbers_are_normalised_to_e164_and_extensions_kept() {
        let au = Country::AU;
        for (written, e) in [
            ("+61 2 9000 1000", "+61290001000"),
            ("0290001000", "+61290001000"),
            ("(02) 9000-1000", "+61290001000"),
            ("0011 44 20 7946 0000", "+442079460000"),
            ("+61 (0)2 9000 1000", "+61290001000"),
            ("0412 345 678", "+61412345678"),
            ("201", "201"),
            ("1300123456", "1300123456"),
            ("131313", "131313"),
            ("029000", "029000"),
        ] {
            assert_eq!(e164(written, au), e, "{written}");
        }
        assert_eq!(e164("021 123 4567", Country::NZ), "+64211234567");
        assert_eq!(e164("1 212 555 0100", Country::US), "+12125550100");
        assert_eq!(e164("011 61 2 9000 1000", Country::US), "+61290001000");
    }
}
