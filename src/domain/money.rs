//! Money: a `Decimal`, never a float. Stored as whole micro-units (1/1,000,000 of the currency unit)
//! so that both databases can sum it exactly; invoice amounts are whole cents, call prices carry
//! the extra digits until the invoice line rounds them once.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Neg, Sub};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::DomainError;

/// Digits kept in storage.
pub const STORED_SCALE: u32 = 6;
const MICROS_PER_UNIT: i64 = 1_000_000;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Money(#[serde(with = "rust_decimal::serde::str")] Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    pub fn new(value: Decimal) -> Self {
        Money(value.normalize())
    }

    /// Parses a user-entered amount ("12.50", "-3", "1,234.00" is refused: no separators).
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let t = s.trim().trim_start_matches('$');
        let d = Decimal::from_str(t).map_err(|_| DomainError::InvalidMoney {
            value: s.to_string(),
            reason: "not a decimal number",
        })?;
        if d.scale() > STORED_SCALE {
            return Err(DomainError::InvalidMoney {
                value: s.to_string(),
                reason: "more than 6 decimal places",
            });
        }
        Ok(Money::new(d))
    }

    pub fn amount(self) -> Decimal {
        self.0
    }

    /// Rounds to cents, half away from zero (the usual commercial rule, and Xero's).
    pub fn round_cents(self) -> Money {
        Money(
            self.0
                .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero),
        )
    }

    /// Rounds to the stored precision; used before persisting a computed (unrounded) amount.
    pub fn round_stored(self) -> Money {
        Money(
            self.0
                .round_dp_with_strategy(STORED_SCALE, RoundingStrategy::MidpointAwayFromZero),
        )
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn is_positive(self) -> bool {
        self.0.is_sign_positive() && !self.0.is_zero()
    }

    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// Whole micro-units for storage. Refuses values that would lose digits or overflow.
    pub fn to_micros(self) -> Result<i64, DomainError> {
        let scaled = self.0 * Decimal::from(MICROS_PER_UNIT);
        if scaled.fract() != Decimal::ZERO {
            return Err(DomainError::InvalidMoney {
                value: self.0.to_string(),
                reason: "more than 6 decimal places",
            });
        }
        i64::try_from(scaled).map_err(|_| DomainError::InvalidMoney {
            value: self.0.to_string(),
            reason: "too large to store",
        })
    }

    pub fn from_micros(micros: i64) -> Money {
        Money::new(Decimal::new(micros, STORED_SCALE))
    }
}

impl fmt::Display for Money {
    /// Shows at least two decimals ("12.50", "0.061667").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.0.normalize();
        if d.scale() < 2 {
            d.rescale(2);
        }
        write!(f, "{d}")
    }
}

impl FromStr for Money {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Money::parse(s)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, rhs: Money) -> Money {
        Money(self.0 + rhs.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, rhs: Money) {
        self.0 += rhs.0;
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, rhs: Money) -> Money {
        Money(self.0 - rhs.0)
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Mul<Decimal> for Money {
    type Output = Money;
    fn mul(self, rhs: Decimal) -> Money {
        Money(self.0 * rhs)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros_free::dec;

    mod rust_decimal_macros_free {
        macro_rules! dec {
            ($s:literal) => {
                rust_decimal::Decimal::from_str_exact(stringify!($s)).unwrap()
            };
        }
        pub(crate) use dec;
    }

    #[test]
    fn parses_and_refuses() {
        assert_eq!(Money::parse("12.5").unwrap().to_string(), "12.50");
        assert_eq!(Money::parse("$3").unwrap().to_string(), "3.00");
        assert!(Money::parse("1,234.00").is_err());
        assert!(Money::parse("abc").is_err());
        assert!(Money::parse("0.0000001").is_err());
    }

    #[test]
    fn micros_round_trip_exactly() {
        for s in ["0", "12.34", "-0.01", "0.061667", "99999999.999999"] {
            let m = Money::parse(s).unwrap();
            assert_eq!(Money::from_micros(m.to_micros().unwrap()), m, "{s}");
        }
        assert!(Money::new(dec!(0.0000001)).to_micros().is_err());
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(
            Money::new(dec!(2.345)).round_cents(),
            Money::new(dec!(2.35))
        );
        assert_eq!(
            Money::new(dec!(-2.345)).round_cents(),
            Money::new(dec!(-2.35))
        );
        assert_eq!(
            Money::new(dec!(2.344999)).round_cents(),
            Money::new(dec!(2.34))
        );
    }
}
