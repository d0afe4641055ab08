//! The client's reads: one document by id, and documents in bulk — by a list of ids, by a list of
//! References — page by page, and an invoice's History and Notes.
//!
//! Xero's wire format (the official OpenAPI document, `../shared/specs/xero/`): `GET /Invoices`
//! takes `IDs` (a comma-separated list of InvoiceIDs) and `where` (a filter); with `page=N` it
//! answers up to 100 invoices a page, line items included, with a `pagination` object. `GET
//! /CreditNotes` has no `IDs` parameter, so credit notes are read by a `where` filter of
//! `CreditNoteID==Guid("…")` joined by `OR`. A bulk read costs one request per 100 invoices (per
//! [`REFERENCES_PER_REQUEST`] References, [`NOTES_PER_REQUEST`] credit notes) instead of one each.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::Spend;
use super::documents::{credit_note, remote};
use super::wire::{self, Pagination};
use super::{RemoteCreditNote, RemoteInvoice, XeroClient, XeroError};
use crate::domain::invoice::InvoiceState;

/// InvoiceIDs per `IDs=` request: a page's worth, so one request answers them all. 100 ids make a
/// query string of about 3,700 characters.
pub const IDS_PER_REQUEST: usize = 100;
/// References per `where` request (`Reference=="RB-1234" OR …`, about 30 characters each once
/// escaped): 100 make a query string no longer than 100 ids do, and a page's worth of invoices
/// unless some are duplicates (then a second page is read).
pub const REFERENCES_PER_REQUEST: usize = 100;
/// Credit note ids per `where` request (`CreditNoteID==Guid("…")`, about 70 characters each once
/// escaped): 50 keep the query string as short as 100 ids.
pub const NOTES_PER_REQUEST: usize = 50;
/// The most pages one read follows: a guard against a server that never says it is done.
const MAX_PAGES: u32 = 10_000;

/// One of Xero's document lists (`{"Invoices": […]}`, `{"CreditNotes": […]}`) and how its items
/// become ours: the one shape behind every read of invoices and credit notes.
trait DocList: DeserializeOwned {
    type Item;
    /// The endpoint, which is also the key of the list in the answer.
    const ENDPOINT: &'static str;
    /// What one item is called in an error.
    const WHAT: &'static str;
    fn into_items(self) -> (Vec<Self::Item>, Option<Pagination>);
}

impl DocList for wire::Invoices {
    type Item = RemoteInvoice;
    const ENDPOINT: &'static str = "Invoices";
    const WHAT: &'static str = "invoice";
    fn into_items(self) -> (Vec<RemoteInvoice>, Option<Pagination>) {
        (
            self.invoices.into_iter().map(remote).collect(),
            self.pagination,
        )
    }
}

impl DocList for wire::CreditNotes {
    type Item = RemoteCreditNote;
    const ENDPOINT: &'static str = "CreditNotes";
    const WHAT: &'static str = "credit note";
    fn into_items(self) -> (Vec<RemoteCreditNote>, Option<Pagination>) {
        (
            self.credit_notes.into_iter().map(credit_note).collect(),
            self.pagination,
        )
    }
}

/// One entry of a document's History and Notes as Xero holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// What happened: "Created", "Emailed", "Voided", "Note"…
    pub changes: String,
    pub details: String,
    /// Xero's `DateUTC`, as given (`/Date(1573755038314)/`).
    pub date_utc: Option<String>,
}

impl HistoryEntry {
    /// Whether the entry records the document being emailed (Xero's `Changes` "Emailed").
    pub fn is_email(&self) -> bool {
        self.changes.trim().eq_ignore_ascii_case("emailed")
    }
}

impl XeroClient {
    /// One document by id; `NotFound` when Xero has none.
    async fn get_one<L: DocList>(&self, id: &str) -> Result<L::Item, XeroError> {
        let not_found = || XeroError::NotFound {
            what: format!("{} {id}", L::WHAT),
        };
        let r = self
            .send(
                Method::GET,
                &format!("{}/{id}", L::ENDPOINT),
                &[],
                None,
                None,
            )
            .await?;
        if r.status == StatusCode::NOT_FOUND {
            return Err(not_found());
        }
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let list: L = Self::decode(&r.body)?;
        list.into_items().0.into_iter().next().ok_or_else(not_found)
    }

    /// Every document a filtered list read answers, page by page (`page=1, 2, …`): until Xero's
    /// `pagination` says it was the last page, or, without one, a page comes back short.
    async fn list_pages<L: DocList>(
        &self,
        filter: &[(&str, String)],
        spend: Spend,
    ) -> Result<Vec<L::Item>, XeroError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut query: Vec<(&str, String)> = filter.to_vec();
            query.push(("page", page.to_string()));
            let r = self
                .send_spending(spend, Method::GET, L::ENDPOINT, &query, None, None)
                .await?;
            if !r.status.is_success() {
                return Err(Self::refusal(&r));
            }
            let list: L = Self::decode(&r.body)?;
            let (items, pagination) = list.into_items();
            let n = items.len();
            out.extend(items);
            let last = match pagination {
                Some(pg) if pg.page_count > 0 => page >= pg.page_count,
                Some(pg) if pg.page_size > 0 => n < pg.page_size as usize,
                _ => n < IDS_PER_REQUEST,
            };
            if last {
                return Ok(out);
            }
        }
        Err(XeroError::Decode(format!(
            "{} read did not end after {MAX_PAGES} pages",
            L::ENDPOINT
        )))
    }

    pub async fn get_invoice(&self, invoice_id: &str) -> Result<RemoteInvoice, XeroError> {
        self.get_one::<wire::Invoices>(invoice_id).await
    }

    /// A credit note as Xero holds it (its status: AUTHORISED, PAID once allocated, VOIDED).
    pub async fn get_credit_note(&self, id: &str) -> Result<RemoteCreditNote, XeroError> {
        self.get_one::<wire::CreditNotes>(id).await
    }

    /// The invoices with these InvoiceIDs, whatever their status (one `IDs=` read per 100 ids).
    /// An id Xero does not know is simply absent from the answer.
    pub async fn invoices_by_ids(&self, ids: &[String]) -> Result<Vec<RemoteInvoice>, XeroError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            out.extend(
                self.list_pages::<wire::Invoices>(&[("IDs", chunk.join(","))], Spend::Rest)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Every invoice whose Reference is one of `references`, whatever its status (one `where`
    /// read per [`REFERENCES_PER_REQUEST`] References).
    pub async fn invoices_with_references(
        &self,
        references: &[String],
    ) -> Result<Vec<RemoteInvoice>, XeroError> {
        self.with_references(references, Spend::Rest).await
    }

    /// [`Self::invoices_with_references`], spending the day's budget as `spend` may.
    async fn with_references(
        &self,
        references: &[String],
        spend: Spend,
    ) -> Result<Vec<RemoteInvoice>, XeroError> {
        let mut out = Vec::new();
        for chunk in references.chunks(REFERENCES_PER_REQUEST) {
            let filter = chunk
                .iter()
                .map(|r| format!("Reference==\"{}\"", r.replace('"', "")))
                .collect::<Vec<_>>()
                .join(" OR ");
            let found = self
                .list_pages::<wire::Invoices>(&[("where", filter)], spend)
                .await?;
            // Xero's == ignores case; ours does not.
            out.extend(found.into_iter().filter(|i| chunk.contains(&i.reference)));
        }
        Ok(out)
    }

    /// The credit notes with these CreditNoteIDs, whatever their status (one `where` read per
    /// [`NOTES_PER_REQUEST`] ids: the endpoint takes no `IDs`).
    pub async fn credit_notes_by_ids(
        &self,
        ids: &[String],
    ) -> Result<Vec<RemoteCreditNote>, XeroError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(NOTES_PER_REQUEST) {
            let filter = chunk
                .iter()
                .map(|id| format!("CreditNoteID==Guid(\"{}\")", id.replace('"', "")))
                .collect::<Vec<_>>()
                .join(" OR ");
            out.extend(
                self.list_pages::<wire::CreditNotes>(&[("where", filter)], Spend::Rest)
                    .await?,
            );
        }
        Ok(out)
    }

    /// The live (not voided or deleted) invoice whose Reference is `reference`: the look-up
    /// before a create whose earlier attempt may have reached Xero, so it spends the day's
    /// budget as a create may (`client::Spend`).
    pub async fn find_invoice_by_reference(
        &self,
        reference: &str,
    ) -> Result<Option<RemoteInvoice>, XeroError> {
        Ok(self
            .with_references(&[reference.to_string()], Spend::Creates)
            .await?
            .into_iter()
            .find(|i| !InvoiceState::parse(&i.status).is_cancelled()))
    }

    /// Every live (not voided or deleted) invoice whose Reference is `reference`, in the order
    /// Xero lists them: more than one is a duplicate (reconcile reports it).
    pub async fn invoices_with_reference(
        &self,
        reference: &str,
    ) -> Result<Vec<RemoteInvoice>, XeroError> {
        Ok(self
            .invoices_with_references(&[reference.to_string()])
            .await?
            .into_iter()
            .filter(|i| !InvoiceState::parse(&i.status).is_cancelled())
            .collect())
    }

    /// An invoice's History and Notes, oldest first: one request per invoice, so reconcile reads
    /// it only where an email may have gone twice.
    pub async fn invoice_history(&self, invoice_id: &str) -> Result<Vec<HistoryEntry>, XeroError> {
        let r = self
            .send(
                Method::GET,
                &format!("Invoices/{invoice_id}/History"),
                &[],
                None,
                None,
            )
            .await?;
        if r.status == StatusCode::NOT_FOUND {
            return Err(XeroError::NotFound {
                what: format!("invoice {invoice_id}"),
            });
        }
        if !r.status.is_success() {
            return Err(Self::refusal(&r));
        }
        let got: wire::HistoryRecords = Self::decode(&r.body)?;
        Ok(got
            .history_records
            .into_iter()
            .map(|h| HistoryEntry {
                changes: h.changes.unwrap_or_default(),
                details: h.details.unwrap_or_default(),
                date_utc: h.date_utc,
            })
            .collect())
    }
}
