//! Contract charges that are never created twice. Autotask has no idempotency key, so each charge
//! carries a marker in `purchaseOrderNumber`, and the client queries for it before any create it
//! might already have made: after a timeout, a dropped response or a 500 (Autotask reports
//! validation errors as 500), it looks before it creates again. It never sends a create twice
//! itself: a create with no known outcome is the caller's to settle (`autotask.settle_secs`).

use chrono::NaiveDate;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::json;

use super::client::{AutotaskClient, Repeat, decode};
use super::query::Filter;
use super::wire::{ContractCharge, CreateResult};
use super::{AutotaskError, ChargeChange, ChargeDraft, RemoteCharge};
use crate::domain::{ContractId, Money};
// Autotask's fields are numbers, not strings: exact ones.
use crate::http::json::number;

fn body(d: &ChargeDraft) -> serde_json::Value {
    json!({
        "contractID": d.contract_id.get(),
        "productID": d.product_id.get(),
        "billingCodeID": d.material_code_id.get(),
        "name": d.name,
        "description": d.description,
        "unitQuantity": number(d.unit_quantity),
        "unitPrice": number(d.unit_price.amount()),
        "unitCost": number(d.unit_cost.amount()),
        "datePurchased": format!("{}T00:00:00Z", d.date_purchased),
        "isBillableToCompany": d.billable,
        "purchaseOrderNumber": d.marker,
        "status": 1,
    })
}

impl AutotaskClient {
    pub async fn find_charge_by_marker(
        &self,
        contract: ContractId,
        marker: &str,
    ) -> Result<Option<RemoteCharge>, AutotaskError> {
        let f =
            Filter::eq("contractID", contract.get()).and(Filter::eq("purchaseOrderNumber", marker));
        let found: Vec<ContractCharge> = self.query("ContractCharges", &f).await?;
        Ok(found
            .into_iter()
            .find(|c| c.purchase_order_number.as_deref() == Some(marker))
            .map(RemoteCharge::from))
    }

    /// Creates the charge unless one with its marker exists, with one POST and never a blind
    /// second one. When the POST's outcome is unknown (a timeout, a dropped connection, a 5xx
    /// without Autotask's words) the marker is looked for once at once (a dropped response after
    /// the insert); found nothing, the error is returned: the request may still land later, so the
    /// caller keeps the action uncertain and looks again only after `autotask.settle_secs`.
    pub async fn push_charge(&self, d: &ChargeDraft) -> Result<RemoteCharge, AutotaskError> {
        check_marker(d)?;
        let existing = self.find_charge_by_marker(d.contract_id, &d.marker).await?;
        self.create_charge_unless(d, existing).await
    }

    /// Creates the charge unless `existing` (what a read of its marker made after any earlier
    /// create of it had settled) found it: the same rules as [`Self::push_charge`], without a
    /// look-up of its own before the create. The push reads each contract's charges once
    /// (`charges_by_marker_prefix`) and decides all of that contract's charges from that read.
    pub async fn create_charge_unless(
        &self,
        d: &ChargeDraft,
        existing: Option<RemoteCharge>,
    ) -> Result<RemoteCharge, AutotaskError> {
        check_marker(d)?;
        if let Some(existing) = existing {
            return Ok(existing);
        }
        let path = format!("V1.0/Contracts/{}/Charges", d.contract_id);
        let outcome = self
            .request(Method::POST, &path, Some(&body(d)), Repeat::Never)
            .await
            .and_then(Self::check);
        match outcome {
            Ok(text) => {
                let created: CreateResult = decode(&text)?;
                tracing::info!(charge = created.item_id, contract = %d.contract_id, marker = %d.marker, "Autotask charge created");
                Ok(RemoteCharge {
                    id: created.item_id,
                    contract_id: d.contract_id.get(),
                    marker: Some(d.marker.clone()),
                    unit_quantity: d.unit_quantity,
                    unit_price: d.unit_price,
                    unit_cost: d.unit_cost,
                    is_billed: false,
                })
            }
            Err(
                e @ (AutotaskError::Refused(_)
                | AutotaskError::Http { .. }
                | AutotaskError::Transport(_)),
            ) => {
                // The create may have happened (a dropped response, or a 500 after the insert):
                // look before deciding.
                if let Some(existing) = self.find_charge_by_marker(d.contract_id, &d.marker).await?
                {
                    tracing::warn!(charge = existing.id, marker = %d.marker, "found the charge a failed create had made");
                    return Ok(existing);
                }
                if !matches!(e, AutotaskError::Refused(_)) {
                    tracing::warn!(error = %e, marker = %d.marker, "charge create has no known outcome and its marker is not there yet; not sending again before the settle time");
                }
                Err(e)
            }
            Err(other) => Err(other),
        }
    }

    /// Deletes a charge Autotask has not billed (a duplicate that resync removes). Gone already
    /// counts as deleted; a billed charge is refused by Autotask and never touched.
    pub async fn delete_unbilled_charge(&self, charge: &RemoteCharge) -> Result<(), AutotaskError> {
        if charge.is_billed {
            return Err(AutotaskError::Local(format!(
                "charge {} is billed: Autotask does not let it be deleted",
                charge.id
            )));
        }
        let path = format!(
            "V1.0/Contracts/{}/Charges/{}",
            charge.contract_id, charge.id
        );
        let reply = self
            .request(Method::DELETE, &path, None, Repeat::Safe)
            .await?;
        match Self::check(reply) {
            Ok(_) | Err(AutotaskError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Brings a charge in line with `wanted`: PATCH while not billed (DELETE when the quantity is
    /// zero); once billed it is never touched, a correcting charge for the difference is added.
    pub async fn update_or_correct_charge(
        &self,
        existing: &RemoteCharge,
        wanted: &ChargeDraft,
    ) -> Result<ChargeChange, AutotaskError> {
        let same = existing.unit_quantity == wanted.unit_quantity
            && existing.unit_price == wanted.unit_price
            && existing.unit_cost == wanted.unit_cost;
        if same {
            return Ok(ChargeChange::Unchanged { id: existing.id });
        }
        let path = format!("V1.0/Contracts/{}/Charges", wanted.contract_id);
        if !existing.is_billed {
            if wanted.unit_quantity.is_zero() {
                let reply = self
                    .request(
                        Method::DELETE,
                        &format!("{path}/{}", existing.id),
                        None,
                        Repeat::Safe,
                    )
                    .await?;
                match Self::check(reply) {
                    Ok(_) | Err(AutotaskError::NotFound(_)) => {
                        return Ok(ChargeChange::Deleted { id: existing.id });
                    }
                    Err(e) => return Err(e),
                }
            }
            let patch = json!({
                "id": existing.id,
                "unitQuantity": number(wanted.unit_quantity),
                "unitPrice": number(wanted.unit_price.amount()),
                "unitCost": number(wanted.unit_cost.amount()),
                "name": wanted.name,
                "description": wanted.description,
            });
            // A PATCH sets absolute values: repeating it is harmless.
            let reply = self
                .request(Method::PATCH, &path, Some(&patch), Repeat::Safe)
                .await?;
            Self::check(reply)?;
            return Ok(ChargeChange::Updated { id: existing.id });
        }
        self.correct_billed_charge(existing, std::slice::from_ref(existing), wanted)
            .await
    }

    /// Adds a correcting charge to a billed charge for the difference between what the line is
    /// owed now and what it has billed so far: the original plus every earlier correction
    /// (`billed`, the original included), so that two changes of +10.00 make two corrections of
    /// +10.00, never one of +20.00 on top of the first. Each correction's marker carries its
    /// sequence number, so a second correction of the same amount is not mistaken for the first.
    pub async fn correct_billed_charge(
        &self,
        existing: &RemoteCharge,
        billed: &[RemoteCharge],
        wanted: &ChargeDraft,
    ) -> Result<ChargeChange, AutotaskError> {
        let was: Money = billed
            .iter()
            .map(|c| Money::new(c.unit_price.amount() * c.unit_quantity).round_cents())
            .sum();
        let now = Money::new(wanted.unit_price.amount() * wanted.unit_quantity).round_cents();
        let difference = now - was;
        if difference.is_zero() {
            return Ok(ChargeChange::Unchanged { id: existing.id });
        }
        let sequence = billed.len(); // the original is 0; corrections count from 1
        let correction = ChargeDraft {
            name: format!("Correction: {}", wanted.name)
                .chars()
                .take(100)
                .collect(),
            description: format!(
                "Correction of billed charge {} ({} → {})",
                existing.id, was, now
            ),
            unit_quantity: Decimal::ONE,
            unit_price: difference,
            unit_cost: Money::ZERO,
            marker: correction_marker(&wanted.marker, sequence, difference),
            ..wanted.clone()
        };
        let created = self.push_charge(&correction).await?;
        Ok(ChargeChange::Corrected {
            original: existing.id,
            correction: created.id,
            amount: difference,
        })
    }

    /// A line's charges on a contract: the one with exactly `marker`, and its correcting charges
    /// (`marker` + " adj…"), in the order Autotask lists them.
    pub async fn charges_with_marker(
        &self,
        contract: ContractId,
        marker: &str,
    ) -> Result<Vec<RemoteCharge>, AutotaskError> {
        let f = Filter::eq("contractID", contract.get())
            .and(Filter::begins_with("purchaseOrderNumber", marker));
        let found: Vec<ContractCharge> = self.query("ContractCharges", &f).await?;
        let adj = format!("{marker} adj");
        Ok(found
            .into_iter()
            .filter(|c| {
                c.purchase_order_number
                    .as_deref()
                    .is_some_and(|m| m == marker || m.starts_with(&adj))
            })
            .map(RemoteCharge::from)
            .collect())
    }

    /// The charges on `contract` whose marker begins with `prefix` (every charge of the contract
    /// when it is empty), all pages: one read that decides the creates of many charges.
    pub async fn charges_by_marker_prefix(
        &self,
        contract: ContractId,
        prefix: &str,
    ) -> Result<Vec<RemoteCharge>, AutotaskError> {
        let mut f = Filter::eq("contractID", contract.get());
        if !prefix.is_empty() {
            f = f.and(Filter::begins_with("purchaseOrderNumber", prefix));
        }
        let found: Vec<ContractCharge> = self.query("ContractCharges", &f).await?;
        Ok(found.into_iter().map(RemoteCharge::from).collect())
    }

    /// Charges of a contract purchased on or after `since` (for reconcile).
    pub async fn charges_of_contract(
        &self,
        contract: ContractId,
        since: NaiveDate,
    ) -> Result<Vec<RemoteCharge>, AutotaskError> {
        let f = Filter::eq("contractID", contract.get())
            .and(Filter::gte("datePurchased", format!("{since}T00:00:00Z")));
        let found: Vec<ContractCharge> = self.query("ContractCharges", &f).await?;
        Ok(found.into_iter().map(RemoteCharge::from).collect())
    }
}

fn check_marker(d: &ChargeDraft) -> Result<(), AutotaskError> {
    if d.marker.is_empty() || d.marker.len() > 50 {
        return Err(AutotaskError::Local(format!(
            "charge marker {:?} must be 1–50 characters",
            d.marker
        )));
    }
    Ok(())
}

/// The longest prefix the markers share (on a character boundary): the one filter that finds
/// every one of them on a contract.
pub fn common_prefix<'a>(markers: impl IntoIterator<Item = &'a str>) -> String {
    let mut it = markers.into_iter();
    let Some(first) = it.next() else {
        return String::new();
    };
    let mut len = first.len();
    for m in it {
        len = first
            .char_indices()
            .zip(m.chars())
            .take_while(|((_, a), b)| a == b)
            .map(|((i, a), _)| i + a.len_utf8())
            .last()
            .unwrap_or(0)
            .min(len);
    }
    first[..len].to_string()
}

/// The marker of a correcting charge: the original marker plus " adj", its sequence number and a
/// short tag of the corrected amount, so that the same correction is found again (a retry) and a
/// second one is told apart, even of the same amount.
pub fn correction_marker(marker: &str, sequence: usize, difference: Money) -> String {
    let tag: String = difference
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let sign = if difference.is_negative() { "m" } else { "p" };
    let suffix = format!(" adj{sequence}{sign}{tag}");
    let keep = 50usize.saturating_sub(suffix.len());
    format!("{}{suffix}", &marker[..marker.len().min(keep)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correction_markers_fit_and_keep_the_original_prefix() {
        let m = correction_marker(
            "rebill 2026-11 c12 svc-3-fee",
            1,
            Money::parse("-12.5").unwrap(),
        );
        assert_eq!(m, "rebill 2026-11 c12 svc-3-fee adj1m1250");
        let again = correction_marker(
            "rebill 2026-11 c12 svc-3-fee",
            2,
            Money::parse("-12.5").unwrap(),
        );
        assert_ne!(
            m, again,
            "a second correction of the same amount is its own charge"
        );
        assert!(correction_marker(&"x".repeat(50), 1, Money::parse("1").unwrap()).len() <= 50);
    }

    #[test]
    fn the_common_prefix_of_markers_is_what_they_all_begin_with() {
        let markers = [
            "rb 2026-11 c12 svc-3-fee",
            "rb 2026-11 c12 svc-3-calls",
            "rb 2026-11 c12 item-9",
        ];
        assert_eq!(common_prefix(markers), "rb 2026-11 c12 ");
        assert_eq!(
            common_prefix(["rb 2026-11 c12 x"]),
            "rb 2026-11 c12 x",
            "one marker is its own prefix"
        );
        assert_eq!(common_prefix(["abc", "xyz"]), "");
        assert_eq!(common_prefix(Vec::<&str>::new()), "");
        // Never cut inside a character.
        assert_eq!(common_prefix(["a–b", "a—b"]), "a");
    }

    #[test]
    fn a_charges_amounts_go_out_as_exact_json_numbers() {
        let draft = ChargeDraft {
            contract_id: ContractId::new(29684183).unwrap(),
            product_id: crate::domain::ProductId::new(1).unwrap(),
            material_code_id: crate::domain::MaterialCodeId::new(2).unwrap(),
            name: "n".into(),
            description: "d".into(),
            unit_quantity: Decimal::ONE,
            unit_price: Money::parse("12345678901234.56").unwrap(),
            unit_cost: Money::parse("1234567890123456.78").unwrap(),
            date_purchased: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            billable: true,
            marker: "m".into(),
        };
        let text = serde_json::to_string(&body(&draft)).unwrap();
        assert!(text.contains(r#""unitPrice":12345678901234.56"#), "{text}");
        assert!(text.contains(r#""unitCost":1234567890123456.78"#), "{text}");
    }
}
