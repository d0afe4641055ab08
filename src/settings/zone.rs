//! Time zones parsed at load: `#[serde(with = "crate::settings::zone")]` on a `Tz` field, or
//! `zone::optional` on an `Option<Tz>` one (an empty string is `None`). A name that is not an IANA
//! zone is refused naming the key, never read as UTC.

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

/// Parses an IANA zone name, with a message a user can act on.
pub fn parse(name: &str) -> Result<Tz, String> {
    name.parse()
        .map_err(|_| format!("{name:?} is not an IANA time zone (e.g. Australia/Sydney)"))
}

pub fn serialize<S: Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Tz, D::Error> {
    parse(&String::deserialize(d)?).map_err(D::Error::custom)
}

/// `Option<Tz>`: absent or `""` is `None`.
pub mod optional {
    use super::*;

    pub fn serialize<S: Serializer>(tz: &Option<Tz>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(tz.map(|t| t.name()).unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Tz>, D::Error> {
        let name = String::deserialize(d)?;
        if name.is_empty() {
            return Ok(None);
        }
        parse(&name).map(Some).map_err(D::Error::custom)
    }
}
