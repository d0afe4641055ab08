//! A stateful Autotask stand-in: zoneInformation, ThresholdInformation, entity queries with
//! filters and 500-row pages (the next page is POSTed with the same body), GET by id, contract
//! charges (create, PATCH while unbilled, DELETE), and the BillingCodes field definitions. It checks
//! the three auth headers, reports validation errors as HTTP 500 `{"errors": [...]}` like Autotask,
//! and can inject faults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::faults::{Fault, Faults};
use super::limits::{LimitRules, Limiter, enforce};
use crate::http::json::decimal;

pub const USERNAME: &str = "api-user@sandbox.example";
pub const SECRET: &str = "sandbox-secret";
pub const INTEGRATION_CODE: &str = "SANDBOXINTEGRATIONCODE";
/// The picklist value of "Material Cost Code" in this stand-in (read by clients, not hard-coded).
pub const MATERIAL_USE_TYPE: i64 = 4;
const PAGE: usize = 500;

#[derive(Default)]
struct Data {
    entities: HashMap<String, Vec<Value>>,
    next_id: i64,
    requests: usize,
    base: String,
}

#[derive(Clone, Default)]
pub struct AutotaskSandbox {
    data: Arc<Mutex<Data>>,
    pub faults: Arc<Faults>,
    /// Counts every request by kind; enforces Autotask's limits when built by
    /// [`AutotaskSandbox::limited`].
    pub limits: Arc<Limiter>,
}

impl AutotaskSandbox {
    pub fn new() -> Self {
        let s = Self::default();
        s.with(|d| d.next_id = 30_000_000);
        s
    }

    /// A stand-in that enforces Autotask's limits (10,000 an hour, 3 at once per endpoint) on
    /// `clock`.
    pub fn limited(clock: Arc<dyn crate::clock::Clock>) -> Self {
        Self::limited_by(LimitRules::autotask(), clock)
    }

    /// A stand-in that enforces `rules` on `clock`.
    pub fn limited_by(rules: LimitRules, clock: Arc<dyn crate::clock::Clock>) -> Self {
        let s = AutotaskSandbox {
            limits: Arc::new(Limiter::enforcing(rules, clock)),
            ..Self::default()
        };
        s.with(|d| d.next_id = 30_000_000);
        s
    }

    fn with<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        let mut g = self.data.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// The base URL the stand-in is served at (needed for zone and page URLs).
    pub fn set_base(&self, base: &str) {
        self.with(|d| d.base = base.trim_end_matches('/').to_string());
    }

    pub fn insert(&self, entity: &str, item: Value) {
        self.with(|d| {
            d.entities
                .entry(entity.to_ascii_lowercase())
                .or_default()
                .push(item)
        });
    }

    /// A company with an active contract, an active product and a material code; returns
    /// (contract id, product id, material code id).
    pub fn seed_company(&self, company: i64, name: &str) -> (i64, i64, i64) {
        let (contract, product, code) = (company * 100 + 1, company * 100 + 2, company * 100 + 3);
        self.insert("companies", json!({"id": company, "companyName": name, "phone": "02 9999 0000", "address1": "1 Sandbox St", "city": "Sydney", "state": "NSW", "postalCode": "2000", "isActive": true}));
        self.insert("contracts", json!({"id": contract, "companyID": company, "contractName": format!("{name} — Managed Voice"), "status": 1, "contractType": 7, "startDate": "2020-01-01T00:00:00Z", "endDate": "2030-12-31T00:00:00Z"}));
        self.insert(
            "products",
            json!({"id": product, "name": "Hosted Voice Service", "isActive": true}),
        );
        self.insert("billingcodes", json!({"id": code, "name": "Voice Material", "isActive": true, "useType": MATERIAL_USE_TYPE}));
        (contract, product, code)
    }

    pub fn charges(&self) -> Vec<Value> {
        self.with(|d| {
            d.entities
                .get("contractcharges")
                .cloned()
                .unwrap_or_default()
        })
    }

    /// Marks every charge billed (as Autotask does when the invoice is generated there).
    pub fn bill_all_charges(&self) {
        self.with(|d| {
            for c in d.entities.entry("contractcharges".into()).or_default() {
                c["isBilled"] = json!(true);
            }
        })
    }

    /// Deletes a charge by its marker, as a user would in Autotask (billed or not).
    pub fn delete_charge(&self, marker: &str) {
        self.with(|d| {
            d.entities
                .entry("contractcharges".into())
                .or_default()
                .retain(|c| c["purchaseOrderNumber"] != marker)
        })
    }

    /// The sum of unit price × quantity of the charges whose marker begins with `prefix`: what a
    /// line bills with its correcting charges.
    pub fn billed_with_marker(&self, prefix: &str) -> rust_decimal::Decimal {
        self.charges()
            .iter()
            .filter(|c| {
                c["purchaseOrderNumber"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix))
            })
            .map(|c| {
                let n = |v: &Value| {
                    v.to_string()
                        .parse::<rust_decimal::Decimal>()
                        .unwrap_or_default()
                };
                n(&c["unitPrice"]) * n(&c["unitQuantity"])
            })
            .sum()
    }

    pub fn requests(&self) -> usize {
        self.with(|d| d.requests)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/atservicesrest/v1.0/zoneInformation", get(zone))
            .route("/ATServicesRest/V1.0/ThresholdInformation", get(threshold))
            .route(
                "/ATServicesRest/V1.0/BillingCodes/entityInformation/fields",
                get(fields),
            )
            .route("/ATServicesRest/V1.0/{entity}/query", post(query))
            .route("/ATServicesRest/V1.0/{entity}/query/next", post(query))
            .route(
                "/ATServicesRest/V1.0/Contracts/{id}/Charges",
                post(create_charge).patch(patch_charge),
            )
            .route(
                "/ATServicesRest/V1.0/Contracts/{pid}/Charges/{id}",
                delete(delete_charge),
            )
            .route("/ATServicesRest/V1.0/{entity}/{id}", get(get_one))
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.limits.clone(),
                enforce,
            ))
    }
}

fn errors(status: u16, words: &[&str]) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(json!({"errors": words})),
    )
        .into_response()
}

/// How a request that passed the checks is carried out.
enum Apply {
    Now,
    /// Do the work, then answer 500 with an empty body.
    DropAnswer,
    /// Do the work after this long (in the background: the client may be gone by then).
    Late(std::time::Duration),
}

#[allow(clippy::result_large_err)] // an axum Response is the early answer of a handler
fn check(sb: &AutotaskSandbox, h: &HeaderMap, method: &str, path: &str) -> Result<Apply, Response> {
    sb.with(|d| d.requests += 1);
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    if get("ApiIntegrationCode") != INTEGRATION_CODE {
        return Err(errors(500, &["IntegrationCode is invalid."]));
    }
    if get("UserName") != USERNAME || get("Secret") != SECRET {
        return Err(StatusCode::UNAUTHORIZED.into_response());
    }
    match sb.faults.take(method, path) {
        Some(Fault::Status {
            status,
            body,
            retry_after,
        }) => {
            let mut headers = HeaderMap::new();
            if let Some(r) = retry_after
                && let Ok(v) = r.to_string().parse()
            {
                headers.insert("Retry-After", v);
            }
            Err((
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                headers,
                axum::Json(body),
            )
                .into_response())
        }
        Some(Fault::Delay(d)) => Err(DelayMarker(d).into_response()),
        Some(Fault::DropAfterWork) => Ok(Apply::DropAnswer),
        Some(Fault::LateApply(d)) => Ok(Apply::Late(d)),
        None => Ok(Apply::Now),
    }
}

/// A delay fault is applied by the handler (`check` is synchronous).
struct DelayMarker(std::time::Duration);

impl IntoResponse for DelayMarker {
    fn into_response(self) -> Response {
        let mut r = StatusCode::GATEWAY_TIMEOUT.into_response();
        r.extensions_mut().insert(self.0);
        r
    }
}

async fn apply_delay(r: Response) -> Response {
    if let Some(d) = r.extensions().get::<std::time::Duration>().copied() {
        tokio::time::sleep(d).await;
    }
    r
}

async fn zone(
    State(sb): State<AutotaskSandbox>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.get("user").map(String::as_str) != Some(USERNAME) {
        return errors(500, &["Zone information could not be determined"]);
    }
    let base = sb.with(|d| d.base.clone());
    axum::Json(json!({"zoneName": "Sandbox", "url": format!("{base}/ATServicesRest/"), "webUrl": format!("{base}/"), "ci": 0})).into_response()
}

async fn threshold(State(sb): State<AutotaskSandbox>, h: HeaderMap) -> Response {
    if let Err(r) = check(&sb, &h, "GET", "/ThresholdInformation") {
        return apply_delay(r).await;
    }
    // This hour's requests when the limits are enforced; else every request so far.
    let used = sb
        .limits
        .used_in("hour")
        .map_or_else(|| sb.with(|d| d.requests) as i64, |n| n as i64);
    // The tenant's budget is the hourly limit the stand-in enforces (Autotask's 10,000 else).
    let threshold = sb.limits.max_of("hour").unwrap_or(10_000);
    axum::Json(json!({"externalRequestThreshold": threshold, "requestThresholdTimeframe": 60, "currentTimeframeRequestCount": used})).into_response()
}

async fn fields(State(sb): State<AutotaskSandbox>, h: HeaderMap) -> Response {
    if let Err(r) = check(&sb, &h, "GET", "/entityInformation/fields") {
        return apply_delay(r).await;
    }
    axum::Json(json!({"fields": [{"name": "useType", "dataType": "integer", "isPickList": true, "picklistValues": [
        {"value": "1", "label": "Work Type", "isActive": true},
        {"value": "2", "label": "General Billing Code", "isActive": true},
        {"value": MATERIAL_USE_TYPE.to_string(), "label": "Material Cost Code", "isActive": true}
    ]}]}))
    .into_response()
}

fn field<'a>(item: &'a Value, name: &str) -> &'a Value {
    item.as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .unwrap_or(&Value::Null)
}

fn cmp(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        // Exactly, whatever the digits (1 equals 1.0; ids beyond 2^53 stay apart).
        (Value::Number(x), Value::Number(y)) => Some(decimal(x).ok()?.cmp(&decimal(y).ok()?)),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn matches(item: &Value, f: &Value) -> bool {
    let op = f["op"].as_str().unwrap_or("");
    match op {
        "and" => f["items"]
            .as_array()
            .is_some_and(|i| i.iter().all(|x| matches(item, x))),
        "or" => f["items"]
            .as_array()
            .is_some_and(|i| i.iter().any(|x| matches(item, x))),
        _ => {
            let v = field(item, f["field"].as_str().unwrap_or(""));
            let want = &f["value"];
            match op {
                "eq" => cmp(v, want) == Some(std::cmp::Ordering::Equal),
                "noteq" => cmp(v, want) != Some(std::cmp::Ordering::Equal),
                "gt" => cmp(v, want) == Some(std::cmp::Ordering::Greater),
                "gte" => matches!(
                    cmp(v, want),
                    Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
                ),
                "lt" => cmp(v, want) == Some(std::cmp::Ordering::Less),
                "lte" => matches!(
                    cmp(v, want),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ),
                "in" => want.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|w| cmp(v, w) == Some(std::cmp::Ordering::Equal))
                }),
                "beginsWith" => v
                    .as_str()
                    .zip(want.as_str())
                    .is_some_and(|(a, b)| a.starts_with(b)),
                "exist" => !v.is_null(),
                _ => false,
            }
        }
    }
}

async fn query(
    State(sb): State<AutotaskSandbox>,
    h: HeaderMap,
    Path(entity): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&sb, &h, "POST", &format!("/{entity}/query")) {
        return apply_delay(r).await;
    }
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return errors(500, &["The request body could not be read."]);
    };
    let filters = req["filter"].as_array().cloned().unwrap_or_default();
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let (items, base) = sb.with(|d| {
        // Only the matching items are copied (the bench queries among thousands of charges).
        let found = d
            .entities
            .get(&entity.to_ascii_lowercase())
            .map(|all| {
                all.iter()
                    .filter(|i| filters.iter().all(|f| matches(i, f)))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        (found, d.base.clone())
    });
    let chunk: Vec<Value> = items.iter().skip(page * PAGE).take(PAGE).cloned().collect();
    let next = ((page + 1) * PAGE < items.len()).then(|| {
        format!(
            "{base}/ATServicesRest/V1.0/{entity}/query/next?page={}",
            page + 1
        )
    });
    axum::Json(json!({"items": chunk, "pageDetails": {"count": chunk.len(), "requestCount": PAGE, "prevPageUrl": null, "nextPageUrl": next}})).into_response()
}

async fn get_one(
    State(sb): State<AutotaskSandbox>,
    h: HeaderMap,
    Path((entity, id)): Path<(String, i64)>,
) -> Response {
    if let Err(r) = check(&sb, &h, "GET", &format!("/{entity}/")) {
        return apply_delay(r).await;
    }
    let item = sb.with(|d| {
        d.entities
            .get(&entity.to_ascii_lowercase())
            .and_then(|v| v.iter().find(|i| i["id"] == id).cloned())
    });
    axum::Json(json!({ "item": item })).into_response()
}

async fn create_charge(
    State(sb): State<AutotaskSandbox>,
    h: HeaderMap,
    Path(contract): Path<i64>,
    body: Bytes,
) -> Response {
    let apply = match check(&sb, &h, "POST", "/Charges") {
        Err(r) => return apply_delay(r).await,
        Ok(a) => a,
    };
    let Ok(charge) = serde_json::from_slice::<Value>(&body) else {
        return errors(500, &["The request body could not be read."]);
    };
    let result = match apply {
        Apply::Late(d) => {
            // The work lands after `d` whether or not the client is still waiting.
            let late = sb.clone();
            let work = tokio::spawn(async move {
                tokio::time::sleep(d).await;
                insert_charge(&late, contract, charge)
            });
            match work.await {
                Ok(r) => r,
                Err(e) => Err(e.to_string()),
            }
        }
        Apply::Now | Apply::DropAnswer => insert_charge(&sb, contract, charge),
    };
    match result {
        Ok(_) if matches!(apply, Apply::DropAnswer) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "").into_response()
        }
        Ok(id) => axum::Json(json!({"itemId": id})).into_response(),
        Err(e) => errors(500, &[&e]),
    }
}

fn insert_charge(sb: &AutotaskSandbox, contract: i64, mut charge: Value) -> Result<i64, String> {
    sb.with(|d| {
        let has = |e: &str, id: &Value| {
            d.entities
                .get(e)
                .is_some_and(|v| v.iter().any(|i| &i["id"] == id))
        };
        if !has("contracts", &json!(contract)) {
            return Err(format!("Contract {contract} does not exist."));
        }
        // As Autotask: Block Hours (4), Retainer (6) and Per Ticket (8) contracts take no charges.
        let kind = d
            .entities
            .get("contracts")
            .and_then(|v| v.iter().find(|i| i["id"] == json!(contract)))
            .and_then(|c| c["contractType"].as_i64());
        if let Some(name) = kind.and_then(crate::autotask::chargeless_contract_type) {
            return Err(format!(
                "Contract charges cannot be created on {name} contracts."
            ));
        }
        if !has("products", &charge["productID"]) {
            return Err(format!(
                "Product {} does not exist or is not active.",
                charge["productID"]
            ));
        }
        if !has("billingcodes", &charge["billingCodeID"]) {
            return Err(format!(
                "BillingCode {} does not exist.",
                charge["billingCodeID"]
            ));
        }
        if charge["name"].as_str().is_none_or(str::is_empty) {
            return Err("Name is required.".into());
        }
        d.next_id += 1;
        charge["id"] = json!(d.next_id);
        charge["contractID"] = json!(contract);
        charge["isBilled"] = json!(false);
        d.entities
            .entry("contractcharges".into())
            .or_default()
            .push(charge.clone());
        Ok(d.next_id)
    })
}

async fn patch_charge(
    State(sb): State<AutotaskSandbox>,
    h: HeaderMap,
    Path(contract): Path<i64>,
    body: Bytes,
) -> Response {
    if let Err(r) = check(&sb, &h, "PATCH", "/Charges") {
        return apply_delay(r).await;
    }
    let patch: Value = serde_json::from_slice(&body).unwrap_or_default();
    let result = sb.with(|d| {
        let charges = d.entities.entry("contractcharges".into()).or_default();
        let Some(c) = charges
            .iter_mut()
            .find(|c| c["id"] == patch["id"] && c["contractID"] == contract)
        else {
            return Err(format!("ContractCharge {} does not exist.", patch["id"]));
        };
        if c["isBilled"] == true {
            return Err("A billed contract charge cannot be modified.".into());
        }
        for (k, v) in patch.as_object().into_iter().flatten() {
            c[k.as_str()] = v.clone();
        }
        Ok(c["id"].clone())
    });
    match result {
        Ok(id) => axum::Json(json!({"itemId": id})).into_response(),
        Err(e) => errors(500, &[&e]),
    }
}

async fn delete_charge(
    State(sb): State<AutotaskSandbox>,
    h: HeaderMap,
    Path((_pid, id)): Path<(i64, i64)>,
) -> Response {
    if let Err(r) = check(&sb, &h, "DELETE", "/Charges") {
        return apply_delay(r).await;
    }
    let result = sb.with(|d| {
        let charges = d.entities.entry("contractcharges".into()).or_default();
        match charges.iter().position(|c| c["id"] == id) {
            Some(i) if charges[i]["isBilled"] == true => {
                Err("A billed contract charge cannot be deleted.".to_string())
            }
            Some(i) => {
                charges.remove(i);
                Ok(())
            }
            None => Err(format!("ContractCharge {id} does not exist.")),
        }
    });
    match result {
        Ok(()) => axum::Json(json!({"itemId": id})).into_response(),
        Err(e) => errors(500, &[&e]),
    }
}
