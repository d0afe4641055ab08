//! Call rating, pure. A service's rate plan prices each call at full precision; the price is kept
//! per call to 6 decimal places and the invoice line rounds the month's sum once, to cents, half
//! away from zero ("round once per line": rounding each call or each increment to cents is where
//! rating engines drift by cents over a month).
//!
//! Increments: a call of `d` seconds is billed for `first` seconds when `d <= first`, else for
//! `first + ceil((d - first) / next) × next` seconds. A call of 0 seconds (not connected) is free.
//! Price = max(flagfall + billed seconds × per-minute rate ÷ 60, minimum). Cost-plus plans price a
//! call at `cost × multiplier + add-on × started minutes`. Inbound calls to 13/1300/1800 numbers are
//! free unless the plan says `charge_inbound_13`.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Money;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RatePlan {
    /// Per call type: a per-minute rate with increments, minimum and flagfall.
    PerMinute {
        /// Keyed by call type, lowercased when read (call types are lowercased on import, so
        /// `[rates.Mobile]` prices `mobile` calls); two keys that differ only in case are refused.
        #[serde(deserialize_with = "lowercase_keys")]
        rates: BTreeMap<String, Rate>,
        /// Used for call types without their own rate; without it such calls stay unrated.
        #[serde(default)]
        default: Option<Rate>,
        #[serde(default)]
        charge_inbound_13: bool,
    },
    /// The wholesale cost times a multiplier (1.3 = +30 %), plus an add-on per started minute.
    CostPlus {
        multiplier: Decimal,
        #[serde(default)]
        addon_per_minute: Money,
        #[serde(default)]
        charge_inbound_13: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_minute: Decimal,
    #[serde(default = "sixty")]
    pub first_secs: u32,
    #[serde(default = "sixty")]
    pub next_secs: u32,
    #[serde(default)]
    pub minimum: Money,
    #[serde(default)]
    pub flagfall: Money,
}

fn sixty() -> u32 {
    60
}

fn lowercase_keys<'de, D>(d: D) -> Result<BTreeMap<String, Rate>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = BTreeMap::<String, Rate>::deserialize(d)?;
    let mut out = BTreeMap::new();
    for (k, v) in raw {
        let key = k.trim().to_ascii_lowercase();
        if out.insert(key.clone(), v).is_some() {
            return Err(serde::de::Error::custom(format!(
                "rates: two call types read as {key:?} (call types are matched without regard to case)"
            )));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Outbound,
    Inbound,
}

/// What rating needs of a call.
#[derive(Debug, Clone, Copy)]
pub struct CallForRating<'a> {
    pub duration_secs: u32,
    pub call_type: &'a str,
    pub direction: Direction,
    /// The service's own number for inbound calls (13/1300/1800 detection).
    pub user_ref: &'a str,
    pub cost: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatingError {
    #[error("the rate plan has no rate for call type {0:?}")]
    NoRate(String),
    #[error("the call has no wholesale cost and the plan is cost-plus")]
    NoCost,
}

/// Billed seconds under `first`/`next` increments.
pub fn billed_seconds(duration: u32, first: u32, next: u32) -> u32 {
    if duration == 0 {
        return 0;
    }
    if duration <= first {
        return first;
    }
    let next = next.max(1);
    let rest = duration - first;
    first + rest.div_ceil(next) * next
}

fn is_13_number(n: &str) -> bool {
    let n = n.trim_start_matches('+');
    let n = n.strip_prefix("61").unwrap_or(n);
    n.starts_with("1300") || n.starts_with("1800") || (n.starts_with("13") && n.len() == 6)
}

/// The call's price at full precision.
pub fn rate_call(plan: &RatePlan, call: &CallForRating<'_>) -> Result<Money, RatingError> {
    let charge_13 = match plan {
        RatePlan::PerMinute {
            charge_inbound_13, ..
        }
        | RatePlan::CostPlus {
            charge_inbound_13, ..
        } => *charge_inbound_13,
    };
    if call.direction == Direction::Inbound && is_13_number(call.user_ref) && !charge_13 {
        return Ok(Money::ZERO);
    }
    if call.duration_secs == 0 {
        return Ok(Money::ZERO);
    }
    match plan {
        RatePlan::PerMinute { rates, default, .. } => {
            let rate = rates
                .get(call.call_type)
                .or(default.as_ref())
                .ok_or_else(|| RatingError::NoRate(call.call_type.to_string()))?;
            let secs = billed_seconds(call.duration_secs, rate.first_secs, rate.next_secs);
            let price =
                rate.flagfall.amount() + Decimal::from(secs) * rate.per_minute / Decimal::from(60);
            Ok(Money::new(price.max(rate.minimum.amount())))
        }
        RatePlan::CostPlus {
            multiplier,
            addon_per_minute,
            ..
        } => {
            let cost = call.cost.ok_or(RatingError::NoCost)?;
            let minutes = call.duration_secs.div_ceil(60);
            Ok(Money::new(
                cost.amount() * *multiplier + addon_per_minute.amount() * Decimal::from(minutes),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn per_minute(rate: &str, first: u32, next: u32, minimum: &str, flagfall: &str) -> RatePlan {
        let mut rates = BTreeMap::new();
        rates.insert(
            "national".to_string(),
            Rate {
                per_minute: dec(rate),
                first_secs: first,
                next_secs: next,
                minimum: Money::parse(minimum).unwrap(),
                flagfall: Money::parse(flagfall).unwrap(),
            },
        );
        RatePlan::PerMinute {
            rates,
            default: None,
            charge_inbound_13: false,
        }
    }

    fn call(secs: u32) -> CallForRating<'static> {
        CallForRating {
            duration_secs: secs,
            call_type: "national",
            direction: Direction::Outbound,
            user_ref: "0299990000",
            cost: None,
        }
    }

    #[test]
    fn increments_at_the_edges() {
        // (duration, first, next, billed seconds)
        let cases = [
            (0, 60, 60, 0),
            (1, 60, 60, 60),
            (60, 60, 60, 60),
            (61, 60, 60, 120),
            (0, 30, 1, 0),
            (1, 30, 1, 30),
            (30, 30, 1, 30),
            (31, 30, 1, 31),
            (89, 30, 30, 90),
            (90, 30, 30, 90),
            (91, 30, 30, 120),
        ];
        for (d, f, n, want) in cases {
            assert_eq!(billed_seconds(d, f, n), want, "{d}s at {f}/{n}");
        }
    }

    #[test]
    fn per_minute_price_keeps_full_precision() {
        let plan = per_minute("0.10", 30, 1, "0", "0");
        // 37 s at 30/1 → 37 s × 0.10/60 = 0.061666…
        let p = rate_call(&plan, &call(37)).unwrap();
        assert_eq!(p.round_stored(), Money::parse("0.061667").unwrap());
        assert!(p.amount().scale() > 6, "not rounded per call: {p}");
    }

    #[test]
    fn flagfall_and_minimum() {
        let plan = per_minute("0.12", 60, 60, "0.25", "0.10");
        assert_eq!(
            rate_call(&plan, &call(1)).unwrap(),
            Money::parse("0.25").unwrap()
        ); // 0.10 + 0.12 < 0.25
        assert_eq!(
            rate_call(&plan, &call(121)).unwrap(),
            Money::parse("0.46").unwrap()
        ); // 0.10 + 3 × 0.12
        assert_eq!(rate_call(&plan, &call(0)).unwrap(), Money::ZERO);
    }

    #[test]
    fn summing_then_rounding_once_does_not_drift() {
        let plan = per_minute("0.10", 30, 1, "0", "0");
        let total: Money = (0..1000)
            .map(|_| rate_call(&plan, &call(37)).unwrap().round_stored())
            .sum();
        // 1000 × 0.0616666… = 61.67 once rounded; rounding each call to cents would give 60.00.
        assert_eq!(total.round_cents(), Money::parse("61.67").unwrap());
    }

    #[test]
    fn cost_plus_with_add_on_per_started_minute() {
        let plan = RatePlan::CostPlus {
            multiplier: dec("1.3"),
            addon_per_minute: Money::parse("0.01").unwrap(),
            charge_inbound_13: false,
        };
        let c = CallForRating {
            cost: Some(Money::parse("0.20").unwrap()),
            ..call(61)
        };
        assert_eq!(rate_call(&plan, &c).unwrap(), Money::parse("0.28").unwrap()); // 0.26 + 2 × 0.01
        assert_eq!(rate_call(&plan, &call(61)), Err(RatingError::NoCost));
    }

    #[test]
    fn inbound_to_13_numbers_is_free_unless_the_plan_charges_it() {
        let mut plan = per_minute("0.10", 60, 60, "0", "0");
        let inbound = CallForRating {
            direction: Direction::Inbound,
            user_ref: "1300123456",
            ..call(120)
        };
        assert_eq!(rate_call(&plan, &inbound).unwrap(), Money::ZERO);
        assert_eq!(
            rate_call(
                &plan,
                &CallForRating {
                    user_ref: "131313",
                    ..inbound
                }
            )
            .unwrap(),
            Money::ZERO
        );
        if let RatePlan::PerMinute {
            charge_inbound_13, ..
        } = &mut plan
        {
            *charge_inbound_13 = true;
        }
        assert_eq!(
            rate_call(&plan, &inbound).unwrap(),
            Money::parse("0.20").unwrap()
        );
    }

    #[test]
    fn unknown_call_type_without_default_is_unrated() {
        let plan = per_minute("0.10", 60, 60, "0", "0");
        let c = CallForRating {
            call_type: "satellite",
            ..call(10)
        };
        assert_eq!(
            rate_call(&plan, &c),
            Err(RatingError::NoRate("satellite".into()))
        );
    }

    #[test]
    fn plans_read_from_toml() {
        let plan: RatePlan = toml::from_str(
            "kind = \"per_minute\"\n[rates.mobile]\nper_minute = \"0.15\"\nfirst_secs = 30\nnext_secs = 1\n",
        )
        .unwrap();
        assert!(matches!(plan, RatePlan::PerMinute { .. }));
    }
}

#[cfg(test)]
mod strict_tests {
    use super::*;

    #[test]
    fn call_types_match_plan_keys_whatever_their_case() {
        let plan: RatePlan =
            toml::from_str("kind = \"per_minute\"\n[rates.Mobile]\nper_minute = \"0.60\"\n")
                .unwrap();
        let call = CallForRating {
            duration_secs: 60,
            call_type: "mobile",
            direction: Direction::Outbound,
            user_ref: "0299990000",
            cost: None,
        };
        assert_eq!(
            rate_call(&plan, &call).unwrap(),
            Money::parse("0.60").unwrap()
        );
        let e = toml::from_str::<RatePlan>(
            "kind = \"per_minute\"\n[rates.Mobile]\nper_minute = \"0.60\"\n[rates.mobile]\nper_minute = \"0.50\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"mobile\""), "{e}");
    }

    #[test]
    fn an_unknown_key_in_a_rate_plan_is_refused_naming_it() {
        let e = toml::from_str::<RatePlan>(
            "kind = \"per_minute\"\ncharge_inbound13 = true\n[rates.mobile]\nper_minute = \"0.15\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("charge_inbound13"), "{e}");
        let e = toml::from_str::<RatePlan>(
            "kind = \"per_minute\"\n[rates.mobile]\nper_minute = \"0.15\"\nfirst_sec = 30\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("first_sec"), "{e}");
    }
}
