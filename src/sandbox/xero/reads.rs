//! The stand-in's reads, as Xero answers them (the official OpenAPI document): one document by id,
//! `GET /Invoices` with `IDs` and `where`, `GET /CreditNotes` with `where` (it takes no `IDs`:
//! Xero ignores an unknown parameter, and so does the stand-in), both paged with `page` (100 a
//! page unless `pageSize` says otherwise, with a `pagination` object), and an invoice's History
//! and Notes. A `where` is one or more `Field=="value"` or `Field==Guid("value")` joined by `OR`
//! (what the client sends); anything else is refused as Xero refuses a filter it cannot parse.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{XeroSandbox, authorised, fault};

/// Xero's page size when `pageSize` is not given.
const PAGE_SIZE: usize = 100;

/// One clause of a `where`: a field (dotted for a nested one) and the value it must equal.
#[derive(Debug, PartialEq)]
struct Clause {
    field: String,
    value: String,
}

/// Parses `A=="x" OR B==Guid("y")`; `None` when it is not of that form.
fn parse_where(filter: &str) -> Option<Vec<Clause>> {
    filter
        .split(" OR ")
        .map(|c| {
            let (field, value) = c.trim().split_once("==")?;
            let value = value.trim();
            let value = value
                .strip_prefix("Guid(")
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or(value);
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            let field = field.trim();
            (!field.is_empty()).then(|| Clause {
                field: field.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

fn field<'a>(doc: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(doc, |v, k| &v[k])
}

/// Whether `doc` matches one of the clauses. Xero compares strings without regard to case.
fn matches(doc: &Value, clauses: &[Clause]) -> bool {
    clauses.iter().any(|c| {
        field(doc, &c.field)
            .as_str()
            .is_some_and(|v| v.eq_ignore_ascii_case(&c.value))
    })
}

fn refused(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"Type": "QueryParseException", "Message": message, "Elements": []})),
    )
        .into_response()
}

/// The documents of `key` that match the query's `IDs` (by `id_field`, when `ids` is honoured)
/// and `where`, paged as Xero pages them: the answer's body, or why the query is refused.
fn list(
    docs: Vec<Value>,
    q: &HashMap<String, String>,
    key: &str,
    id_field: &str,
    ids: bool,
) -> Result<Value, &'static str> {
    let wanted_ids: Option<Vec<String>> = ids.then(|| q.get("IDs")).flatten().map(|v| {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    });
    let clauses = match q.get("where").map(|w| parse_where(w)) {
        None => None,
        Some(Some(c)) => Some(c),
        Some(None) => return Err("The where filter could not be parsed"),
    };
    let found: Vec<Value> = docs
        .into_iter()
        .filter(|d| {
            wanted_ids.as_ref().is_none_or(|w| {
                d[id_field]
                    .as_str()
                    .is_some_and(|id| w.contains(&id.to_ascii_lowercase()))
            })
        })
        .filter(|d| clauses.as_ref().is_none_or(|c| matches(d, c)))
        .collect();
    let Some(page) = q.get("page") else {
        return Ok(json!({ key: found }));
    };
    let Ok(page) = page.parse::<usize>() else {
        return Err("page must be a number");
    };
    let size = q
        .get("pageSize")
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(PAGE_SIZE);
    let items = found.len();
    let on_page: Vec<Value> = found
        .into_iter()
        .skip(page.max(1).saturating_sub(1) * size)
        .take(size)
        .collect();
    Ok(json!({
        "pagination": {"page": page.max(1), "pageSize": size, "pageCount": items.div_ceil(size), "itemCount": items},
        key: on_page,
    }))
}

fn answer(body: Result<Value, &'static str>) -> Response {
    match body {
        Ok(b) => axum::Json(b).into_response(),
        Err(why) => refused(why),
    }
}

pub(super) async fn list_invoices(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    // A read can be held (Delay) or refused (Status) too.
    if let Some(Err(r)) = fault(&sb, "GET", "/Invoices").await {
        return r;
    }
    let docs = sb.with(|s| s.invoices.clone());
    answer(list(docs, &q, "Invoices", "InvoiceID", true))
}

pub(super) async fn list_credit_notes(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    let docs = sb.with(|s| s.credit_notes.clone());
    answer(list(docs, &q, "CreditNotes", "CreditNoteID", false))
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"Title": "Not Found"})),
    )
        .into_response()
}

pub(super) async fn get_invoice(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one_by_id(&sb, &h, &id, "Invoices", "InvoiceID", |s| &s.invoices)
}

pub(super) async fn get_credit_note(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    one_by_id(&sb, &h, &id, "CreditNotes", "CreditNoteID", |s| {
        &s.credit_notes
    })
}

/// `GET /{kind}/{id}`: the one document of `kind` ("Invoices", "CreditNotes") whose `id_field` is
/// `id`, wrapped as Xero wraps it (`{"Invoices": [ … ]}`), or 404.
fn one_by_id(
    sb: &XeroSandbox,
    h: &HeaderMap,
    id: &str,
    kind: &str,
    id_field: &str,
    docs: fn(&super::State_) -> &Vec<Value>,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(h) {
        return r;
    }
    let found = sb.with(|s| docs(s).iter().find(|d| d[id_field] == id).cloned());
    match found {
        Some(d) => axum::Json(json!({ kind: [d] })).into_response(),
        None => not_found(),
    }
}

pub(super) async fn invoice_history(
    State(sb): State<XeroSandbox>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    sb.with(|s| s.requests += 1);
    if let Err(r) = authorised(&h) {
        return r;
    }
    let known = sb.with(|s| s.invoices.iter().any(|i| i["InvoiceID"] == id.as_str()));
    if !known {
        return not_found();
    }
    let records = sb.history(&id);
    axum::Json(json!({"HistoryRecords": records})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_where_of_references_or_guids_is_read_clause_by_clause() {
        let c = parse_where(r#"Reference=="RB-1" OR CreditNoteID==Guid("ab-12")"#).unwrap();
        assert_eq!(
            c,
            vec![
                Clause {
                    field: "Reference".into(),
                    value: "RB-1".into()
                },
                Clause {
                    field: "CreditNoteID".into(),
                    value: "ab-12".into()
                },
            ]
        );
        assert!(parse_where("Reference.StartsWith(\"RB\")").is_none());
        assert!(parse_where("Reference==RB-1").is_none());
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_hold_a_hundred_and_say_how_many_there_are() {
        let docs: Vec<Value> = (0..250)
            .map(|i| json!({"InvoiceID": format!("id-{i}"), "Reference": "RB-1"}))
            .collect();
        let third = list(
            docs,
            &query(&[("page", "3")]),
            "Invoices",
            "InvoiceID",
            true,
        )
        .unwrap();
        assert_eq!(third["Invoices"].as_array().unwrap().len(), 50);
        assert_eq!(third["Invoices"][0]["InvoiceID"], "id-200");
        assert_eq!(
            third["pagination"],
            json!({"page": 3, "pageSize": 100, "pageCount": 3, "itemCount": 250})
        );
    }

    #[test]
    fn ids_and_where_select_and_credit_notes_ignore_ids() {
        let docs: Vec<Value> = (0..5)
            .map(|i| json!({"InvoiceID": format!("ID-{i}"), "Reference": format!("RB-{i}")}))
            .collect();
        let by_ids = list(
            docs.clone(),
            &query(&[("IDs", "id-1,id-3"), ("page", "1")]),
            "Invoices",
            "InvoiceID",
            true,
        )
        .unwrap();
        assert_eq!(by_ids["Invoices"].as_array().unwrap().len(), 2);
        let by_ref = list(
            docs.clone(),
            &query(&[("where", r#"Reference=="rb-2" OR Reference=="RB-4""#)]),
            "Invoices",
            "InvoiceID",
            true,
        )
        .unwrap();
        assert_eq!(by_ref["Invoices"].as_array().unwrap().len(), 2);
        let ignored = list(
            docs,
            &query(&[("IDs", "ID-1")]),
            "Invoices",
            "InvoiceID",
            false,
        )
        .unwrap();
        assert_eq!(ignored["Invoices"].as_array().unwrap().len(), 5);
        assert!(
            list(
                vec![],
                &query(&[("where", "Total>5")]),
                "Invoices",
                "InvoiceID",
                true
            )
            .is_err()
        );
    }
}
