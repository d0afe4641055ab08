//! The tax Xero adds to an invoice sent with `LineAmountTypes` Exclusive: per line, the line amount
//! times its tax type's rate, rounded to cents (half away from zero), then summed. Knowing the
//! rates lets the ledger check Xero's Total to the cent, not only its SubTotal.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{DomainError, Money};

/// The rate, in percent, of each Xero tax type the invoices use (e.g. `OUTPUT` = 10 for GST).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, Decimal>",
    into = "BTreeMap<String, Decimal>"
)]
pub struct TaxRates(BTreeMap<String, Decimal>);

impl TryFrom<BTreeMap<String, Decimal>> for TaxRates {
    type Error = DomainError;

    fn try_from(rates: BTreeMap<String, Decimal>) -> Result<Self, DomainError> {
        for (tax_type, rate) in &rates {
            if *rate < Decimal::ZERO || *rate > Decimal::ONE_HUNDRED {
                return Err(DomainError::InvalidText {
                    what: "tax rate",
                    reason: format!("{tax_type} = {rate}: a rate is a percentage from 0 to 100"),
                });
            }
        }
        Ok(TaxRates(rates))
    }
}

impl From<TaxRates> for BTreeMap<String, Decimal> {
    fn from(r: TaxRates) -> Self {
        r.0
    }
}

impl TaxRates {
    /// Australian GST as Xero names it: 10 % on `OUTPUT`, none on GST-free and excluded income.
    pub fn australian_gst() -> TaxRates {
        TaxRates(BTreeMap::from([
            ("OUTPUT".to_string(), Decimal::TEN),
            ("EXEMPTOUTPUT".to_string(), Decimal::ZERO),
            ("BASEXCLUDED".to_string(), Decimal::ZERO),
        ]))
    }

    /// The tax of one line, as Xero rounds it; `None` when the tax type has no known rate.
    pub fn line_tax(&self, tax_type: &str, amount: Money) -> Option<Money> {
        let rate = self.0.get(tax_type)?;
        Some(Money::new(amount.amount() * rate / Decimal::ONE_HUNDRED).round_cents())
    }

    /// The tax of an invoice: the sum of its lines' taxes; `None` when any line's tax type (or a
    /// line without one, which takes its account's default in Xero) has no known rate.
    pub fn invoice_tax<'a>(
        &self,
        lines: impl IntoIterator<Item = (Option<&'a str>, Money)>,
    ) -> Option<Money> {
        lines
            .into_iter()
            .map(|(tax_type, amount)| self.line_tax(tax_type?, amount))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Money {
        Money::parse(s).unwrap()
    }

    #[test]
    fn each_line_is_rounded_before_the_sum() {
        let gst = TaxRates::australian_gst();
        // 0.05 × 10 % = 0.005 → 0.01 per line; rounding the sum instead would give 0.02, not 0.03.
        let lines = [(Some("OUTPUT"), m("0.05")); 3];
        assert_eq!(gst.invoice_tax(lines), Some(m("0.03")));
    }

    #[test]
    fn gst_free_lines_add_no_tax_and_credits_round_symmetrically() {
        let gst = TaxRates::australian_gst();
        assert_eq!(gst.line_tax("EXEMPTOUTPUT", m("99.99")), Some(Money::ZERO));
        assert_eq!(gst.line_tax("OUTPUT", m("-0.05")), Some(m("-0.01")));
        assert_eq!(gst.line_tax("OUTPUT", m("33.33")), Some(m("3.33")));
    }

    #[test]
    fn an_unknown_tax_type_leaves_the_tax_unknown() {
        let gst = TaxRates::australian_gst();
        assert_eq!(
            gst.invoice_tax([(Some("OUTPUT"), m("10")), (Some("OUTPUT2"), m("1"))]),
            None
        );
        assert_eq!(gst.invoice_tax([(None, m("10"))]), None);
        assert_eq!(gst.invoice_tax([]), Some(Money::ZERO));
    }

    #[test]
    fn a_rate_outside_0_to_100_percent_is_refused() {
        let bad = BTreeMap::from([("OUTPUT".to_string(), Decimal::from(110))]);
        let e = TaxRates::try_from(bad).unwrap_err().to_string();
        assert!(e.contains("OUTPUT = 110"), "{e}");
    }
}
