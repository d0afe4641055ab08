//! Decimals as JSON numbers, exactly. Xero and Autotask want amounts as JSON numbers, and an `f64`
//! cannot hold most of them (12345678901234567.89 comes back as 12345678901234568). serde_json's
//! `arbitrary_precision` (turned on through rust_decimal's `serde-with-arbitrary-precision`) keeps a
//! number's text, so a `Decimal` goes out and comes back digit for digit. This is the one place
//! that converts; the wire modules and the stand-ins call it.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

/// `d` as a JSON number, without trailing zeros (49.9500 → 49.95).
pub fn number(d: Decimal) -> Value {
    // A normalized Decimal prints as plain digits, which is always a valid JSON number.
    Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// The exact value of a JSON number (`1.5e3` included).
pub fn decimal(n: &Number) -> Result<Decimal, rust_decimal::Error> {
    let text = n.as_str();
    Decimal::from_str(text).or_else(|_| Decimal::from_scientific(text))
}

/// `#[serde(with = "crate::http::json::exact")]`: a `Decimal` field as a JSON number.
pub mod exact {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        number(*d).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        decimal(&Number::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    /// An optional `Decimal` read from a JSON number or null.
    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            Option::<Number>::deserialize(d)?
                .map(|n| decimal(&n).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values an f64 cannot carry: more significant digits than it holds, and sums of tenths.
    const EXACT: [&str; 5] = [
        "12345678901234567.89",
        "1234567890123456.78",
        "0.3000000000000000000000000001",
        "-98765432109876.5432",
        "0.000001",
    ];

    #[test]
    fn a_decimal_goes_out_as_a_json_number_digit_for_digit() {
        for s in EXACT {
            let d = Decimal::from_str(s).unwrap();
            let text = serde_json::to_string(&number(d)).unwrap();
            assert_eq!(text, s, "no f64 in between");
        }
        let tenths = Decimal::from_str("0.1").unwrap() + Decimal::from_str("0.2").unwrap();
        assert_eq!(serde_json::to_string(&number(tenths)).unwrap(), "0.3");
        assert_eq!(
            serde_json::to_string(&number(Decimal::from_str("49.9500").unwrap())).unwrap(),
            "49.95"
        );
    }

    #[test]
    fn a_json_number_comes_back_as_the_same_decimal() {
        #[derive(Serialize, Deserialize)]
        struct Line {
            #[serde(with = "exact")]
            amount: Decimal,
            #[serde(
                skip_serializing,
                default,
                deserialize_with = "exact::option::deserialize"
            )]
            total: Option<Decimal>,
        }
        for s in EXACT {
            let json = format!(r#"{{"amount": {s}, "total": {s}}}"#);
            let line: Line = serde_json::from_str(&json).unwrap();
            assert_eq!(line.amount.to_string(), s);
            assert_eq!(line.total.map(|t| t.to_string()).as_deref(), Some(s));
            let again: Line = serde_json::from_str(&serde_json::to_string(&line).unwrap()).unwrap();
            assert_eq!(again.amount, line.amount);
            // Through a `Value` too, as the Autotask wire reads it.
            let v: Value = serde_json::from_str(&json).unwrap();
            let Value::Number(n) = &v["amount"] else {
                panic!("a number")
            };
            assert_eq!(decimal(n).unwrap().to_string(), s);
        }
        let line: Line = serde_json::from_str(r#"{"amount": 1.5e3, "total": null}"#).unwrap();
        assert_eq!(line.amount, Decimal::from(1500));
        assert_eq!(line.total, None);
    }

    /// arbitrary_precision is known to trouble numbers inside internally tagged enums (serde
    /// buffers them); a rate plan is one, read from a JSON file and from the database.
    #[test]
    fn numbers_inside_a_tagged_rate_plan_still_read() {
        use crate::domain::rating::RatePlan;
        let plan: RatePlan = serde_json::from_str(
            r#"{"kind": "per_minute", "rates": {"local": {"per_minute": 0.1, "first_secs": 30}}}"#,
        )
        .unwrap();
        let RatePlan::PerMinute { rates, .. } = &plan else {
            panic!("{plan:?}")
        };
        assert_eq!(rates["local"].per_minute, Decimal::from_str("0.1").unwrap());
        assert_eq!(rates["local"].first_secs, 30);
        let again: RatePlan = serde_json::from_str(&serde_json::to_string(&plan).unwrap()).unwrap();
        assert_eq!(again, plan);
        let plan: RatePlan =
            serde_json::from_str(r#"{"kind": "cost_plus", "multiplier": 1.3}"#).unwrap();
        assert!(
            matches!(plan, RatePlan::CostPlus { multiplier, .. } if multiplier == Decimal::from_str("1.3").unwrap())
        );
    }
}
