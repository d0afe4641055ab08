//! Identifiers. Local ids are positive database keys; remote ids keep the remote system's shape
//! (Autotask: int64; Xero: GUID text). Each is its own type so that a contract id can never be
//! passed where a product id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::DomainError;

macro_rules! positive_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "i64", into = "i64")]
        pub struct $name(i64);

        impl $name {
            pub const WHAT: &'static str = $what;

            pub fn new(value: i64) -> Result<Self, DomainError> {
                if value > 0 {
                    Ok(Self(value))
                } else {
                    Err(DomainError::InvalidId { what: $what, value: value.to_string() })
                }
            }

            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl TryFrom<i64> for $name {
            type Error = DomainError;
            fn try_from(value: i64) -> Result<Self, DomainError> {
                Self::new(value)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, DomainError> {
                let value: i64 = s.trim().parse().map_err(|_| DomainError::InvalidId {
                    what: $what,
                    value: s.to_string(),
                })?;
                Self::new(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

positive_id!(
    /// A customer of the reseller (local key).
    CustomerId, "customer id"
);
positive_id!(
    /// A local invoice (local key; its number, e.g. RB-1000, is what people read).
    InvoiceId, "invoice id"
);
positive_id!(
    /// One line of a local invoice (local key).
    LineId, "invoice line id"
);
positive_id!(
    /// One remote action in the outbox (local key).
    OutboxId, "outbox entry id"
);
positive_id!(
    /// A purchased service in the catalogue (local key).
    ServiceId, "service id"
);
positive_id!(
    /// One assignment of a service to a customer (local key; history is kept).
    AssignmentId, "assignment id"
);
positive_id!(
    /// A once-off or recurring item (local key).
    ItemId, "item id"
);
positive_id!(
    /// An Autotask company (`Companies.id`).
    AutotaskCompanyId, "Autotask company id"
);
positive_id!(
    /// An Autotask contract (`Contracts.id`).
    ContractId, "Autotask contract id"
);
positive_id!(
    /// An Autotask product (`Products.id`).
    ProductId, "Autotask product id"
);
positive_id!(
    /// An Autotask billing code of use type "Material Cost Code" (`BillingCodes.id`).
    MaterialCodeId, "Autotask material code id"
);

/// A Xero contact, by its `ContactID` GUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct XeroContactId(String);

impl XeroContactId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        let ok = s.len() == 36
            && s.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if ok {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(DomainError::InvalidId {
                what: "Xero contact id",
                value: s.to_string(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for XeroContactId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(&s)
    }
}

impl From<XeroContactId> for String {
    fn from(id: XeroContactId) -> String {
        id.0
    }
}

impl fmt::Display for XeroContactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert!(CustomerId::new(0).is_err());
        assert!(CustomerId::new(-3).is_err());
        assert_eq!(CustomerId::new(7).unwrap().get(), 7);
        assert!("abc".parse::<ServiceId>().is_err());
        assert_eq!(" 42 ".parse::<ContractId>().unwrap().get(), 42);
    }

    #[test]
    fn xero_contact_id_is_a_guid() {
        let id = XeroContactId::parse("BD42F3A9-1C4F-4B8A-9E3E-0C8B1D6B7A11").unwrap();
        assert_eq!(id.as_str(), "bd42f3a9-1c4f-4b8a-9e3e-0c8b1d6b7a11");
        assert!(XeroContactId::parse("not-a-guid").is_err());
        assert!(XeroContactId::parse("bd42f3a9x1c4f-4b8a-9e3e-0c8b1d6b7a11").is_err());
    }
}
