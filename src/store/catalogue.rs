//! The service catalogue: services (parents and children) and their users.

use crate::store::BeginWrite;
use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use serde::Serialize;

use super::audit::{snapshot, write_audit};
use super::{Actor, Store, StoreError, Upsert, micros, money, on_db};
use crate::domain::service::normalise_user_ref;
use crate::domain::{Money, NonEmpty, Service, ServiceId, ServiceUser};

/// One catalogue entry as imported (CSV or JSON), keyed by the provider's reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceImport {
    pub external_ref: String,
    pub parent_ref: Option<String>,
    pub name: NonEmpty,
    pub kind: String,
    pub rebill_enabled: bool,
    pub monthly_price: Money,
    pub monthly_cost: Money,
    pub xero_account_code: Option<String>,
    pub xero_tax_type: Option<String>,
    pub xero_item_code: Option<String>,
    /// The complete list of the service's users: users not listed are removed from it.
    pub users: Vec<ServiceUserImport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceUserImport {
    pub user_ref: String,
    pub label: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ServiceRow {
    id: i64,
    external_ref: String,
    parent_id: Option<i64>,
    name: String,
    kind: String,
    rebill_enabled: bool,
    monthly_price_micros: i64,
    monthly_cost_micros: i64,
    xero_account_code: Option<String>,
    xero_tax_type: Option<String>,
    xero_item_code: Option<String>,
    child_count: i64,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    service_id: i64,
    user_ref: String,
    label: Option<String>,
}

macro_rules! select_services {
    ($tail:literal) => {
        concat!(
            "SELECT s.id, s.external_ref, s.parent_id, s.name, s.kind, s.rebill_enabled, s.monthly_price_micros, \
             s.monthly_cost_micros, s.xero_account_code, s.xero_tax_type, s.xero_item_code, \
             (SELECT COUNT(*) FROM services c WHERE c.parent_id = s.id) AS child_count FROM services s ",
            $tail
        )
    };
}

impl ServiceRow {
    fn into_service(self, users: Vec<ServiceUser>) -> Result<Service, StoreError> {
        Ok(Service {
            id: ServiceId::new(self.id)?,
            external_ref: self.external_ref,
            parent_id: self.parent_id.map(ServiceId::new).transpose()?,
            name: NonEmpty::parse("service name", &self.name)?,
            kind: self.kind,
            rebill_enabled: self.rebill_enabled,
            is_parent: self.child_count > 0,
            monthly_price: money(self.monthly_price_micros),
            monthly_cost: money(self.monthly_cost_micros),
            xero_account_code: self.xero_account_code,
            xero_tax_type: self.xero_tax_type,
            xero_item_code: self.xero_item_code,
            users,
        })
    }
}

/// A user reference as the catalogue keeps it: a number or extension, never empty, never a
/// `ref=label` pair that was meant to be split (`=Label` in CSV, `"0290003002=Frontdesk"` as a JSON
/// string), no control characters, at most 64 characters.
fn check_user_ref(service: &str, user_ref: &str) -> Result<(), StoreError> {
    let r = user_ref.trim();
    let refuse = |why: &str| {
        Err(StoreError::Refused(format!(
            "service {service:?}: user {user_ref:?} {why}"
        )))
    };
    if normalise_user_ref(r).is_empty() {
        return refuse("is empty (a label needs its number: `0299990001=Reception`)");
    }
    if r.contains('=') {
        return refuse(
            "contains `=`: in JSON, write {\"user_ref\": \"0299990001\", \"label\": \"Reception\"}",
        );
    }
    if r.chars().any(char::is_control) || r.chars().count() > 64 {
        return refuse("has control characters or is longer than 64 characters");
    }
    Ok(())
}

/// The newest row of a service's price history (NULL, the beginning, is the oldest).
macro_rules! newest_service_price {
    () => {
        "SELECT id FROM service_prices WHERE service_id = $1 \
         ORDER BY CASE WHEN effective_from IS NULL THEN 0 ELSE 1 END DESC, effective_from DESC LIMIT 1"
    };
}

impl Store {
    /// `import_service_from` with no date: a changed price corrects the newest price, for every
    /// day it applies (a correction, as a library call; the CLI passes a date).
    pub async fn import_service(
        &self,
        actor: &Actor,
        s: &ServiceImport,
    ) -> Result<(ServiceId, Upsert), StoreError> {
        self.import_service_from(actor, s, None).await
    }

    /// Creates or updates one catalogue entry by its external reference, with its users, in one
    /// transaction. A parent must exist (be imported earlier) before its children. A new service's
    /// price is in force from the beginning; an existing service's changed price is a price change
    /// from `price_from` (periods before it keep their price), or without it a correction of the
    /// newest price.
    pub async fn import_service_from(
        &self,
        actor: &Actor,
        s: &ServiceImport,
        price_from: Option<NaiveDate>,
    ) -> Result<(ServiceId, Upsert), StoreError> {
        let parent_id = match &s.parent_ref {
            Some(r) => Some(self.service_by_ref(r).await?.ok_or_else(|| {
                StoreError::Refused(format!(
                    "parent service {r:?} of {:?} is not in the catalogue",
                    s.external_ref
                ))
            })?),
            None => None,
        };
        if let Some(p) = &parent_id
            && p.parent_id.is_some()
        {
            return Err(StoreError::Refused(format!(
                "service {:?} cannot be the parent of {:?}: it is itself a child of another service",
                p.external_ref, s.external_ref
            )));
        }
        for u in &s.users {
            check_user_ref(&s.external_ref, &u.user_ref)?;
        }
        let before = self.service_by_ref(&s.external_ref).await?;
        let mut users: Vec<(String, Option<String>)> = s
            .users
            .iter()
            .map(|u| (normalise_user_ref(&u.user_ref), u.label.clone()))
            .collect();
        users.sort();
        users.dedup_by(|a, b| a.0 == b.0);
        if let Some(b) = &before {
            let mut old: Vec<(String, Option<String>)> = b
                .users
                .iter()
                .map(|u| (u.user_ref.clone(), u.label.clone()))
                .collect();
            old.sort();
            let same = b.parent_id == parent_id.as_ref().map(|p| p.id)
                && b.name == s.name
                && b.kind == s.kind
                && b.rebill_enabled == s.rebill_enabled
                && b.monthly_price == s.monthly_price
                && b.monthly_cost == s.monthly_cost
                && b.xero_account_code == s.xero_account_code
                && b.xero_tax_type == s.xero_tax_type
                && b.xero_item_code == s.xero_item_code
                && old == users;
            if same {
                return Ok((b.id, Upsert::Unchanged));
            }
        }
        let (price, cost) = (micros(s.monthly_price)?, micros(s.monthly_cost)?);
        let now = Utc::now();
        let parent = parent_id.as_ref().map(|p| p.id.get());
        let id: i64 = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let id: i64 = match &before {
                None => sqlx::query_scalar(
                    "INSERT INTO services (external_ref, parent_id, name, kind, rebill_enabled, monthly_price_micros, \
                     monthly_cost_micros, xero_account_code, xero_tax_type, xero_item_code, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
                )
                .bind(&s.external_ref)
                .bind(parent)
                .bind(s.name.as_str())
                .bind(&s.kind)
                .bind(s.rebill_enabled)
                .bind(price)
                .bind(cost)
                .bind(s.xero_account_code.as_deref())
                .bind(s.xero_tax_type.as_deref())
                .bind(s.xero_item_code.as_deref())
                .bind(now)
                .fetch_one(&mut *tx)
                .await?,
                Some(b) => {
                    sqlx::query(
                        "UPDATE services SET parent_id = $2, name = $3, kind = $4, rebill_enabled = $5, \
                         monthly_price_micros = $6, monthly_cost_micros = $7, xero_account_code = $8, \
                         xero_tax_type = $9, xero_item_code = $10, updated_at = $11 WHERE id = $1",
                    )
                    .bind(b.id.get())
                    .bind(parent)
                    .bind(s.name.as_str())
                    .bind(&s.kind)
                    .bind(s.rebill_enabled)
                    .bind(price)
                    .bind(cost)
                    .bind(s.xero_account_code.as_deref())
                    .bind(s.xero_tax_type.as_deref())
                    .bind(s.xero_item_code.as_deref())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    b.id.get()
                }
            };
            let price_changed = before.as_ref().is_none_or(|b| b.monthly_price != s.monthly_price);
            match (&before, price_from) {
                _ if !price_changed => {}
                (Some(_), Some(from)) => {
                    sqlx::query("DELETE FROM service_prices WHERE service_id = $1 AND effective_from = $2")
                        .bind(id)
                        .bind(from)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO service_prices (service_id, effective_from, monthly_price_micros, created_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id)
                    .bind(from)
                    .bind(price)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    write_audit!(&mut *tx, actor, "service", id, "price", None,
                        Some(serde_json::json!({"from": from, "monthly_price": s.monthly_price})))?;
                }
                (Some(_), None) => {
                    let n = sqlx::query(concat!(
                        "UPDATE service_prices SET monthly_price_micros = $2 WHERE id = (",
                        newest_service_price!(),
                        ")"
                    ))
                    .bind(id)
                    .bind(price)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n == 0 {
                        sqlx::query(
                            "INSERT INTO service_prices (service_id, effective_from, monthly_price_micros, created_at) \
                             VALUES ($1, NULL, $2, $3)",
                        )
                        .bind(id)
                        .bind(price)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                (None, _) => {
                    sqlx::query(
                        "INSERT INTO service_prices (service_id, effective_from, monthly_price_micros, created_at) \
                         VALUES ($1, NULL, $2, $3)",
                    )
                    .bind(id)
                    .bind(price)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            // The catalogue's entry is the newest price.
            sqlx::query(concat!(
                "UPDATE services SET monthly_price_micros = COALESCE((SELECT monthly_price_micros FROM service_prices \
                 WHERE id = (",
                newest_service_price!(),
                ")), monthly_price_micros) WHERE id = $1"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM service_users WHERE service_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for (user_ref, label) in &users {
                sqlx::query("INSERT INTO service_users (service_id, user_ref, label) VALUES ($1, $2, $3)")
                    .bind(id)
                    .bind(user_ref)
                    .bind(label.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        if super::is_unique_violation(&e) {
                            StoreError::Refused(format!(
                                "user {user_ref:?} of service {:?} already belongs to another service",
                                s.external_ref
                            ))
                        } else {
                            e.into()
                        }
                    })?;
            }
            let action = if before.is_some() { "update" } else { "import" };
            write_audit!(&mut *tx, actor, "service", id, action, before.as_ref().and_then(snapshot), snapshot(s))?;
            tx.commit().await?;
            id
        });
        let outcome = if before.is_some() {
            Upsert::Updated
        } else {
            Upsert::Created
        };
        Ok((ServiceId::new(id)?, outcome))
    }

    pub async fn service(&self, id: ServiceId) -> Result<Service, StoreError> {
        let row: Option<ServiceRow> = on_db!(self, p => sqlx::query_as(select_services!("WHERE s.id = $1"))
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        let row = row.ok_or_else(|| StoreError::NotFound(format!("service {id}")))?;
        let users = self
            .users_of(&[row.id])
            .await?
            .remove(&row.id)
            .unwrap_or_default();
        row.into_service(users)
    }

    pub async fn service_by_ref(&self, reference: &str) -> Result<Option<Service>, StoreError> {
        let id: Option<i64> = on_db!(self, p => sqlx::query_scalar("SELECT id FROM services WHERE external_ref = $1")
            .bind(reference)
            .fetch_optional(p)
            .await?);
        match id {
            Some(id) => Ok(Some(self.service(ServiceId::new(id)?).await?)),
            None => Ok(None),
        }
    }

    /// The whole catalogue, parents before their children, each with its users.
    pub async fn services(&self) -> Result<Vec<Service>, StoreError> {
        let rows: Vec<ServiceRow> = on_db!(self, p => sqlx::query_as(
            select_services!("ORDER BY COALESCE(s.parent_id, s.id), s.parent_id IS NOT NULL, s.name, s.id"))
            .fetch_all(p)
            .await?);
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let mut users = self.users_of(&ids).await?;
        rows.into_iter()
            .map(|r| {
                let u = users.remove(&r.id).unwrap_or_default();
                r.into_service(u)
            })
            .collect()
    }

    async fn users_of(&self, ids: &[i64]) -> Result<BTreeMap<i64, Vec<ServiceUser>>, StoreError> {
        let rows: Vec<UserRow> = on_db!(self, p => sqlx::query_as(
            "SELECT service_id, user_ref, label FROM service_users ORDER BY service_id, user_ref")
            .fetch_all(p)
            .await?);
        let mut map: BTreeMap<i64, Vec<ServiceUser>> = BTreeMap::new();
        for r in rows.into_iter().filter(|r| ids.contains(&r.service_id)) {
            map.entry(r.service_id).or_default().push(ServiceUser {
                user_ref: r.user_ref,
                label: r.label,
            });
        }
        Ok(map)
    }
}
