//! Autotask's JSON shapes (camelCase, as the live API sends them; the swagger says PascalCase).
//! Tolerant: unknown fields are ignored, everything not needed is optional, ids are int64 and money
//! is read through its text into `Decimal`.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};

fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => crate::http::json::decimal(&n)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected a number, found {other}"
        ))),
    }
}

/// Integers that some tenants send as strings.
fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::Number(n)) => Ok(n.as_i64()),
        Some(serde_json::Value::String(s)) => Ok(s.trim().parse().ok()),
        _ => Ok(None),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneInformation {
    pub url: String,
    #[serde(default)]
    pub zone_name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdInformation {
    #[serde(default, deserialize_with = "int")]
    pub external_request_threshold: Option<i64>,
    #[serde(default, deserialize_with = "int")]
    pub request_threshold_timeframe: Option<i64>,
    #[serde(default, deserialize_with = "int")]
    pub current_timeframe_request_count: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageDetails {
    #[serde(default)]
    pub next_page_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
    #[serde(rename = "pageDetails")]
    pub page_details: Option<PageDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct One<T> {
    pub item: Option<T>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateResult {
    pub item_id: i64,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct Errors {
    #[serde(default)]
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contract {
    pub id: i64,
    #[serde(rename = "companyID", default, deserialize_with = "int")]
    pub company_id: Option<i64>,
    #[serde(default)]
    pub contract_name: Option<String>,
    #[serde(default, deserialize_with = "int")]
    pub status: Option<i64>,
    #[serde(default, deserialize_with = "int")]
    pub contract_type: Option<i64>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    /// The product's own billing code (its Material Cost Code), if it has one.
    #[serde(rename = "productBillingCodeID", default, deserialize_with = "int")]
    pub product_billing_code_id: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BillingCode {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "int")]
    pub use_type: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Company {
    pub id: i64,
    #[serde(default)]
    pub company_name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub address1: Option<String>,
    #[serde(default)]
    pub address2: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractCharge {
    pub id: i64,
    #[serde(rename = "contractID", default, deserialize_with = "int")]
    pub contract_id: Option<i64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub purchase_order_number: Option<String>,
    #[serde(default, deserialize_with = "decimal")]
    pub unit_quantity: Option<Decimal>,
    #[serde(default, deserialize_with = "decimal")]
    pub unit_price: Option<Decimal>,
    #[serde(default, deserialize_with = "decimal")]
    pub unit_cost: Option<Decimal>,
    #[serde(default)]
    pub is_billed: Option<bool>,
    #[serde(default)]
    pub date_purchased: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldInfo {
    pub name: String,
    #[serde(default)]
    pub picklist_values: Option<Vec<PicklistValue>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PicklistValue {
    pub value: String,
    pub label: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Fields {
    #[serde(default)]
    pub fields: Vec<FieldInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_fixture_shapes() {
        // The shape of the django-autotask fixture (with its quirks: "" UDFs, a string period type).
        let page: Page<Contract> = serde_json::from_str(
            r#"{"items": [{"id": 29684183, "userDefinedFields": "", "companyID": 174, "contractPeriodType": "m",
                "status": 1, "startDate": "2020-02-23T13:00:00Z", "endDate": "2020-02-23T13:00:00Z"}],
                "pageDetails": {"count": 1, "requestCount": 500, "prevPageUrl": null, "nextPageUrl": null}}"#,
        )
        .unwrap();
        assert_eq!(page.items[0].company_id, Some(174));
        assert_eq!(page.items[0].status, Some(1));
        let c: ContractCharge = serde_json::from_str(
            r#"{"id": 5, "unitPrice": 49.95, "unitQuantity": 1, "isBilled": false, "x": []}"#,
        )
        .unwrap();
        assert_eq!(c.unit_price.unwrap().to_string(), "49.95");
    }
}
