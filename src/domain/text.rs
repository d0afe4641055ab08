//! Checked text values.

use std::fmt;

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
