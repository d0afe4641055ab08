//! A stateful Xero stand-in: token endpoint, `/connections`, Contacts, Invoices (batched creates
//! with `summarizeErrors`, updates, email), CreditNotes, and their reads (`reads.rs`: by id, in
//! bulk by `IDs` or `where`, paged; an invoice's History). It keeps what was created, computes line
//! amounts, tax (10 % for OUTPUT) and totals as Xero does, records each invoice's history (created,
//! each email, status changes), honours `Idempotency-Key` (the same key gets the same answer), and
//! can inject faults.

mod reads;
mod tamper;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Value, json};

use super::faults::{Fault, Faults};
use super::limits::{LimitRules, Limiter, enforce};
use crate::http::json::number as num;

pub const TENANT_ID: &str = "0f4c8a1e-5b0e-4c1a-9d55-5a6b1f2e3d4c";

#[derive(Default)]
struct State_ {
    contacts: Vec<Value>,
    invoices: Vec<Value>,
    credit_notes: Vec<Value>,
    emails: Vec<String>,
    /// Each invoice's History and Notes, oldest first, by InvoiceID.
    history: HashMap<String, Vec<Value>>,
    idempotency: HashMap<String, (u16, Value, std::time::Instant)>,
    /// How long Xero remembers an Idempotency-Key (None: for ever).
    idempotency_lifetime: Option<std::time::Duration>,
    refresh_tokens: Vec<String>,
    token_requests: usize,
    requests: usize,
}

/// The stand-in's state; clone it to keep a handle for assertions.
#[derive(Clone, Default)]
pub struct XeroSandbox {
    state: Arc<Mutex<State_>>,
    pub faults: Arc<Faults>,
    /// Counts every request by kind; enforces Xero's limits when built by [`XeroSandbox::limited`].
    pub limits: Arc<Limiter>,
}

fn round2(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn dec(v: &Value) -> Decimal {
    match v {
        Value::Number(n) => crate::http::json::decimal(n).unwrap_or_default(),
        Value::String(s) => s.parse().unwrap_or_default(),
        _ => Decimal::ZERO,
    }
}

impl XeroSandbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// A stand-in that enforces Xero's limits (60 a minute, 5,000 a day, 5 at once) on `clock`.
    pub fn limited(clock: Arc<dyn crate::clock::Clock>) -> Self {
        Self::limited_by(LimitRules::xero(), clock)
    }

    /// A stand-in that enforces `rules` on `clock` (tests shrink a limit to reach it quickly).
    pub fn limited_by(rules: LimitRules, clock: Arc<dyn crate::clock::Clock>) -> Self {
        XeroSandbox {
            limits: Arc::new(Limiter::enforcing(rules, clock)),
            ..Self::default()
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State_) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Adds a contact and returns its ContactID.
    pub fn add_contact(&self, name: &str, email: Option<&str>) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.with(|s| {
            s.contacts.push(json!({"ContactID": id, "Name": name, "EmailAddress": email.unwrap_or(""), "ContactStatus": "ACTIVE"}))
        });
        id
    }

    /// Every invoice created (JSON as Xero would return it).
    pub fn invoices(&self) -> Vec<Value> {
        self.with(|s| s.invoices.clone())
    }

    pub fn credit_notes(&self) -> Vec<Value> {
        self.with(|s| s.credit_notes.clone())
    }

    /// The InvoiceIDs emailed, in order (one entry per email sent).
    pub fn emails(&self) -> Vec<String> {
        self.with(|s| s.emails.clone())
    }

    /// An invoice's History and Notes as Xero answers them (`Changes`, `Details`, `DateUTC`).
    pub fn history(&self, invoice_id: &str) -> Vec<Value> {
        self.with(|s| s.history.get(invoice_id).cloned().unwrap_or_default())
    }

    /// Emails an invoice once more, as a send Xero applied twice would leave it: one more email
    /// and one more "Emailed" record in its history.
    pub fn plant_email(&self, invoice_id: &str) {
        self.with(|s| {
            s.emails.push(invoice_id.to_string());
            record(s, invoice_id, "Emailed", "This invoice has been emailed.");
        })
    }

    /// How long an Idempotency-Key is remembered (Xero keeps them for a limited time); None: for ever.
    pub fn set_idempotency_lifetime(&self, lifetime: Option<std::time::Duration>) {
        self.with(|s| s.idempotency_lifetime = lifetime);
    }

    /// Forgets every Idempotency-Key, as Xero does once they expire.
    pub fn expire_idempotency_keys(&self) {
        self.with(|s| s.idempotency.clear());
    }

    pub fn token_requests(&self) -> usize {
        self.with(|s| s.token_requests)
    }

    pub fn requests(&self) -> usize {
        self.with(|s| s.requests)
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/connect/token", post(token))
            .route("/connections", get(connections))
            .route(
                "/api.xro/2.0/Invoices",
                put(create_invoices)
                    .post(create_invoices)
                    .get(reads::list_invoices),
            )
            .route(
                "/api.xro/2.0/Invoices/{id}",
                get(reads::get_invoice).post(update_invoice),
            )
            .route("/api.xro/2.0/Invoices/{id}/Email", post(email_invoice))
            .route(
                "/api.xro/2.0/Invoices/{id}/History",
                get(reads::invoice_history),
            )
            .route(
                "/api.xro/2.0/CreditNotes",
                put(create_credit_notes).get(reads::list_credit_notes),
            )
            .route("/api.xro/2.0/CreditNotes/{id}", get(reads::get_credit_note))
            .route(
                "/api.xro/2.0/Contacts",
                get(list_contacts).put(create_contacts),
            )
            .with_state(self.clone())
            .layer(axum::middleware::from_fn_with_state(
                self.limits.clone(),
                enforce,
            ))
    }
}

/// Adds an entry to an invoice's History and Notes, as Xero does for what happens to it.
fn record(s: &mut State_, invoice_id: &str, changes: &str, details: &str) {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    s.history
        .entry(invoice_id.to_string())
        .or_default()
        .push(json!({
            "Changes": changes,
            "DateUTC": format!("/Date({ms})/"),
            "User": "Sandbox API",
            "Details": details,
        }));
}

/// Recomputes line amounts, tax and totals like Xero (per line, rounded half away from zero).
fn recompute(inv: &mut Value) {
    let mut sub = Decimal::ZERO;
    let mut tax = Decimal::ZERO;
    if let Some(lines) = inv["LineItems"].as_array_mut() {
        for l in lines {
            let amount = round2(dec(&l["Quantity"]) * dec(&l["UnitAmount"]));
            let t = if l["TaxType"].as_str().unwrap_or("OUTPUT") == "OUTPUT" {
                round2(amount / Decimal::from(10))
            } else {
                Decimal::ZERO
            };
            l["LineAmount"] = num(amount);
            l["TaxAmount"] = num(t);
            sub += amount;
            tax += t;
        }
    }
    let paid = dec(&inv["AmountPaid"]);
    inv["SubTotal"] = num(sub);
    inv["TotalTax"] = num(tax);
    inv["Total"] = num(sub + tax);
    inv["AmountPaid"] = num(paid);
    inv["AmountDue"] = num(sub + tax - paid);
}

async fn fault(sb: &XeroSandbox, method: &str, path: &str) -> Option<Result<(), Response>> {
    match sb.faults.take(method, path)? {
        Fault::Status {
            status,
            body,
            retry_after,
        } => {
            let mut h = HeaderMap::new();
            if let Some(r) = retry_after {
                h.insert("Retry-After", r.to_string().parse().ok()?);
            }
            Some(Err((
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                h,
                axum::Json(body),
            )
                .into_response()))
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fault::DropAfterWork => Some(Ok(())),
        Fault::LateApply(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}

#[allow(clippy::result_large_err)] // an axum Response is the early answer of a handler
fn authorised(h: &HeaderMap) -> Result<(), Response> {
    let bearer = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bearer.starts_with("Bearer sandbox-") {
        return Err((
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"Title": "Unauthorized", "Status": 401})),
        )
            .into_response());
    }
    if h.get("xero-tenant-id").and_then(|v| v.to_str().ok()) != Some(TENANT_ID) {
        return Err((
            StatusCode::FORBIDDEN,
            axum::Json(json!({"Title": "Forbidden", "Detail": "unknown tenant"})),
        )
            .into_response());
    }
    Ok(())
}

async fn token(State(sb): State<XeroSandbox>, body: String) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    sb.with(|s| s.token_requests += 1);
    let refresh = match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            let known = sb.with(|s| s.refresh_tokens.last() == Some(&presented));
            if !known {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({"error": "invalid_grant"})),
                )
                    .into_response();
            }
            let next = format!("refresh-{}", uuid::Uuid::new_v4().simple());
            sb.with(|s| s.refresh_tokens.push(next.clone()));
            Some(next)
        }
        Some("client_credentials") => None,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    };
    let mut r = json!({"access_token": format!("sandbox-{}", uuid::Uuid::new_v4().simple()), "expires_in": 1800, "token_type": "Bearer"});
    if let Some(t) = refresh {
        r["refresh_token"] = json!(t);
    }
    axum::Json(r).into_response()
}

async fn connections(h: HeaderMap) -> Response {
    let bearer = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !bearer.starts_with("Bearer sandbox-") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(json!([{"id": "7cb5d0a0-0000-4000-8000-000000000001", "tenantId": TENANT_ID, "tenantType": "ORGANISATION", "tenantName": "Sandbox Organisation"}])).into_response()
}

/// Replays the stored answer of an Idempotency-Key, or runs `work` and stores its answer.
fn idempotent(
    sb: &XeroSandbox,
    h: &HeaderMap,
    work: impl FnOnce(&mut State_) -> (u16, Value),
) -> (u16, Value) {
    let key = h
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    sb.with(|s| {
        if let Some(k) = &key
            && let Some((status, body, at)) = s.idempotency.get(k)
            && s.idempotency_lifetime.is_none_or(|l| at.elapsed() < l)
        {
            return (*status, body.clone());
        }
        let answer = work(s);
        if let Some(k) = key {
            s.idempotency
                .insert(k, (answer.0, answer.1.clone(), std::time::Instant::now()));
        }
        answer
    })
}

fn respond(answer: (u16, Value)) -> Response {
    (
        StatusCode::from_u16(answer.0).unwrap_or(StatusCode::OK),
        axum::Json(answer.1),
    )
        .into_response()
}

async fn create_invoices(
    State(sb): State<XeroSandbox>,
    method: Method,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    let dropped = match fault(&sb, method.as_str(), "/Invoices").await {
        Some(Err(r)) => return r,
        Some(Ok(())) => true,
        None => false,
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return respond((
            400,
            json!({"Type": "ValidationException", "Message": "A validation exception occurred", "Elements": []}),
        ));
    };
    let answer = idempotent(&sb, &h, |s| {
        let mut out = Vec::new();
        for mut inv in req["Invoices"].as_array().cloned().unwrap_or_default() {
            let contact = inv["Contact"]["ContactID"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let mut errors = Vec::new();
            if !s
                .contacts
                .iter()
                .any(|c| c["ContactID"] == contact.as_str())
            {
                errors
                    .push(json!({"Message": format!("The contact {contact} could not be found.")}));
            }
            if inv["LineItems"].as_array().is_none_or(|l| l.is_empty()) {
                errors.push(json!({"Message": "Invoices must have at least one line item."}));
            }
            if let Some(n) = inv["InvoiceNumber"].as_str()
                && s.invoices.iter().any(|i| i["InvoiceNumber"] == n)
            {
                errors.push(json!({"Message": format!("Invoice # must be unique ({n}).")}));
            }
            if errors.is_empty() {
                inv["InvoiceID"] = json!(uuid::Uuid::new_v4().to_string());
                if inv["InvoiceNumber"].is_null() {
                    inv["InvoiceNumber"] = json!(format!("INV-{:04}", s.invoices.len() + 1));
                }
                inv["Status"] = json!(inv["Status"].as_str().unwrap_or("DRAFT"));
                inv["AmountPaid"] = json!(0);
                recompute(&mut inv);
                inv["StatusAttributeString"] = json!("OK");
                let id = inv["InvoiceID"].as_str().unwrap_or("").to_string();
                record(s, &id, "Created", "Invoice created.");
                s.invoices.push(inv.clone());
            } else {
                inv["HasValidationErrors"] = json!(true);
                inv["StatusAttributeString"] = json!("ERROR");
                inv["ValidationErrors"] = json!(errors);
            }
            out.push(inv);
        }
        (200, json!({"Invoices": out}))
    });
    if dropped {
        return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
    }
    respond(answer)
}

async fn update_invoice(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    if let Some(Err(r)) = fault(&sb, "POST", "/Invoices/").await {
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = idempotent(&sb, &h, |s| {
        let Some(inv) = s
            .invoices
            .iter_mut()
            .find(|i| i["InvoiceID"] == id.as_str())
        else {
            return (404, json!({"Title": "Not Found"}));
        };
        if inv["Status"] == "PAID" || dec(&inv["AmountPaid"]) > Decimal::ZERO {
            return (
                400,
                json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [{"Message": "Invoice not of valid status for modification"}]}]}),
            );
        }
        let mut changed = None;
        if let Some(new) = req["Invoices"].get(0) {
            // A status change alone, as Xero allows it: VOIDED from AUTHORISED, DELETED from
            // DRAFT or SUBMITTED; anything else is refused with Xero's words.
            if let Some(status) = new["Status"].as_str()
                && status != inv["Status"].as_str().unwrap_or("")
            {
                let from = inv["Status"].as_str().unwrap_or("").to_string();
                let allowed = matches!(
                    (from.as_str(), status),
                    ("AUTHORISED", "VOIDED") | ("DRAFT" | "SUBMITTED", "DELETED")
                );
                if !allowed {
                    return (
                        400,
                        json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [{"Message": format!("Invoice of status {from} cannot be changed to {status}")}]}]}),
                    );
                }
                inv["Status"] = json!(status);
                changed = Some(if status == "VOIDED" {
                    "Voided"
                } else {
                    "Deleted"
                });
            } else {
                changed = Some("Edited");
            }
            if let Some(lines) = new.get("LineItems") {
                inv["LineItems"] = lines.clone();
            }
            if let Some(d) = new.get("DueDate") {
                inv["DueDate"] = d.clone();
            }
            recompute(inv);
        }
        let answer = json!({"Invoices": [inv.clone()]});
        if let Some(c) = changed {
            record(s, &id, c, &format!("Invoice {}.", c.to_lowercase()));
        }
        (200, answer)
    });
    respond(answer)
}

async fn email_invoice(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    let dropped = match fault(&sb, "POST", "/Email").await {
        Some(Err(r)) => return r,
        Some(Ok(())) => true,
        None => false,
    };
    let answer = idempotent(&sb, &h, |s| {
        let Some(inv) = s.invoices.iter().find(|i| i["InvoiceID"] == id.as_str()) else {
            return (404, json!({"Title": "Not Found"}));
        };
        let contact = inv["Contact"]["ContactID"].clone();
        let id_of = inv["InvoiceID"].clone();
        let has_email = s.contacts.iter().any(|c| {
            c["ContactID"] == contact && c["EmailAddress"].as_str().is_some_and(|e| !e.is_empty())
        });
        if !has_email {
            return (
                400,
                json!({"Type": "ValidationException", "Elements": [{"ValidationErrors": [{"Message": "The contact does not have a valid email address."}]}]}),
            );
        }
        s.emails.push(id.clone());
        record(s, &id, "Emailed", "This invoice has been emailed.");
        if let Some(inv) = s.invoices.iter_mut().find(|i| i["InvoiceID"] == id_of) {
            inv["SentToContact"] = json!(true);
        }
        (204, Value::Null)
    });
    if dropped {
        return (StatusCode::INTERNAL_SERVER_ERROR, "").into_response();
    }
    if answer.0 == 204 {
        return StatusCode::NO_CONTENT.into_response();
    }
    respond(answer)
}

async fn create_credit_notes(State(sb): State<XeroSandbox>, h: HeaderMap, body: Bytes) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = idempotent(&sb, &h, |s| {
        let mut out = Vec::new();
        for mut n in req["CreditNotes"].as_array().cloned().unwrap_or_default() {
            n["CreditNoteID"] = json!(uuid::Uuid::new_v4().to_string());
            recompute(&mut n);
            s.credit_notes.push(n.clone());
            out.push(n);
        }
        (200, json!({"CreditNotes": out}))
    });
    respond(answer)
}

async fn list_contacts(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    let filter = q
        .get("where")
        .and_then(|w| w.split_once("=="))
        .map(|(f, v)| (f.trim().to_string(), v.trim_matches('"').to_string()));
    let found: Vec<Value> = sb.with(|s| {
        s.contacts
            .iter()
            .filter(|c| {
                filter
                    .as_ref()
                    .is_none_or(|(f, v)| c[f.as_str()].as_str() == Some(v.as_str()))
            })
            .cloned()
            .collect()
    });
    axum::Json(json!({"Contacts": found})).into_response()
}

async fn create_contacts(State(sb): State<XeroSandbox>, h: HeaderMap, body: Bytes) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or_default();
    let answer = idempotent(&sb, &h, |s| {
        let mut out = Vec::new();
        for mut c in req["Contacts"].as_array().cloned().unwrap_or_default() {
            c["ContactID"] = json!(uuid::Uuid::new_v4().to_string());
            c["ContactStatus"] = json!("ACTIVE");
            s.contacts.push(c.clone());
            out.push(c);
        }
        (200, json!({"Contacts": out}))
    });
    respond(answer)
}
