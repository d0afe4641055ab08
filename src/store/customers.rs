//! Customers.

use crate::store::BeginWrite;
use chrono::Utc;

use super::audit::{snapshot, write_audit};
use super::{Actor, Store, StoreError, is_unique_violation, on_db};
use crate::domain::customer::BusinessDetails;
use crate::domain::{
    AutotaskCompanyId, BillingTarget, Customer, CustomerId, Email, NewCustomer, NonEmpty,
    XeroContactId,
};

#[derive(sqlx::FromRow)]
pub(crate) struct CustomerRow {
    id: i64,
    external_ref: Option<String>,
    name: String,
    enabled: bool,
    target_kind: String,
    xero_contact_id: Option<String>,
    autotask_company_id: Option<i64>,
    email: Option<String>,
    phone: Option<String>,
    address: Option<String>,
    city: Option<String>,
    state: Option<String>,
    postcode: Option<String>,
    country: Option<String>,
    tax_number: Option<String>,
    payment_terms_days: Option<i32>,
}

/// `SELECT <customer columns> FROM customers <tail>` as one static string.
macro_rules! select_customers {
    ($tail:literal) => {
        concat!(
            "SELECT id, external_ref, name, enabled, target_kind, xero_contact_id, autotask_company_id, email, \
             phone, address, city, state, postcode, country, tax_number, payment_terms_days FROM customers ",
            $tail
        )
    };
}

impl TryFrom<CustomerRow> for Customer {
    type Error = StoreError;
    fn try_from(r: CustomerRow) -> Result<Customer, StoreError> {
        let target = match (r.target_kind.as_str(), r.autotask_company_id) {
            ("autotask", Some(c)) => BillingTarget::Autotask {
                company_id: AutotaskCompanyId::new(c)?,
            },
            ("xero", None) => BillingTarget::Xero {
                contact_id: r
                    .xero_contact_id
                    .as_deref()
                    .map(XeroContactId::parse)
                    .transpose()?,
            },
            (k, _) => {
                return Err(StoreError::Corrupt(format!(
                    "customer {}: billing target {k:?}",
                    r.id
                )));
            }
        };
        Ok(Customer {
            id: CustomerId::new(r.id)?,
            external_ref: r.external_ref,
            name: NonEmpty::parse("customer name", &r.name)?,
            enabled: r.enabled,
            target,
            email: r.email.as_deref().map(Email::parse).transpose()?,
            details: BusinessDetails {
                phone: r.phone,
                address: r.address,
                city: r.city,
                state: r.state,
                postcode: r.postcode,
                country: r.country,
                tax_number: r.tax_number,
            },
            payment_terms_days: r.payment_terms_days.map(|d| d as u32),
        })
    }
}

/// What an idempotent import did with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsert {
    Created,
    Updated,
    Unchanged,
}

fn target_columns(t: &BillingTarget) -> (&'static str, Option<String>, Option<i64>) {
    match t {
        BillingTarget::Xero { contact_id } => {
            ("xero", contact_id.as_ref().map(|c| c.to_string()), None)
        }
        BillingTarget::Autotask { company_id } => ("autotask", None, Some(company_id.get())),
    }
}

fn refuse_duplicate(e: sqlx::Error, c: &NewCustomer) -> StoreError {
    if is_unique_violation(&e) {
        let what = match &c.target {
            BillingTarget::Autotask { company_id } => format!("Autotask company {company_id}"),
            _ => format!(
                "external reference {:?}",
                c.external_ref.as_deref().unwrap_or("")
            ),
        };
        StoreError::Refused(format!(
            "another customer already has {what}; nothing was changed"
        ))
    } else {
        e.into()
    }
}

impl Store {
    pub async fn add_customer(
        &self,
        actor: &Actor,
        c: &NewCustomer,
    ) -> Result<Customer, StoreError> {
        let now = Utc::now();
        let (kind, xero, autotask) = target_columns(&c.target);
        let id: i64 = on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO customers (external_ref, name, enabled, target_kind, xero_contact_id, autotask_company_id, \
                 email, phone, address, city, state, postcode, country, tax_number, payment_terms_days, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16) RETURNING id",
            )
            .bind(c.external_ref.as_deref())
            .bind(c.name.as_str())
            .bind(c.enabled)
            .bind(kind)
            .bind(xero)
            .bind(autotask)
            .bind(c.email.as_ref().map(|e| e.as_str()))
            .bind(c.details.phone.as_deref())
            .bind(c.details.address.as_deref())
            .bind(c.details.city.as_deref())
            .bind(c.details.state.as_deref())
            .bind(c.details.postcode.as_deref())
            .bind(c.details.country.as_deref())
            .bind(c.details.tax_number.as_deref())
            .bind(c.payment_terms_days.map(|d| d as i32))
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| refuse_duplicate(e, c))?;
            let created: CustomerRow = sqlx::query_as(select_customers!("WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let created = Customer::try_from(created)?;
            write_audit!(&mut *tx, actor, "customer", id, "create", None, snapshot(&created))?;
            tx.commit().await?;
            id
        });
        self.customer(CustomerId::new(id)?).await
    }

    /// Creates the customer, or updates the one with the same external reference (imports).
    pub async fn upsert_customer(
        &self,
        actor: &Actor,
        c: &NewCustomer,
    ) -> Result<(Customer, Upsert), StoreError> {
        let Some(reference) = c.external_ref.as_deref() else {
            return Ok((self.add_customer(actor, c).await?, Upsert::Created));
        };
        let Some(existing) = self.customer_by_ref(reference).await? else {
            return Ok((self.add_customer(actor, c).await?, Upsert::Created));
        };
        let wanted = Customer {
            id: existing.id,
            external_ref: c.external_ref.clone(),
            name: c.name.clone(),
            enabled: c.enabled,
            target: c.target.clone(),
            email: c.email.clone(),
            details: c.details.clone(),
            payment_terms_days: c.payment_terms_days,
        };
        if wanted == existing {
            return Ok((existing, Upsert::Unchanged));
        }
        let (kind, xero, autotask) = target_columns(&c.target);
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "UPDATE customers SET name = $2, enabled = $3, target_kind = $4, xero_contact_id = $5, \
                 autotask_company_id = $6, email = $7, phone = $8, address = $9, city = $10, state = $11, \
                 postcode = $12, country = $13, tax_number = $14, payment_terms_days = $15, updated_at = $16 WHERE id = $1",
            )
            .bind(existing.id.get())
            .bind(c.name.as_str())
            .bind(c.enabled)
            .bind(kind)
            .bind(xero)
            .bind(autotask)
            .bind(c.email.as_ref().map(|e| e.as_str()))
            .bind(c.details.phone.as_deref())
            .bind(c.details.address.as_deref())
            .bind(c.details.city.as_deref())
            .bind(c.details.state.as_deref())
            .bind(c.details.postcode.as_deref())
            .bind(c.details.country.as_deref())
            .bind(c.details.tax_number.as_deref())
            .bind(c.payment_terms_days.map(|d| d as i32))
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(|e| refuse_duplicate(e, c))?;
            write_audit!(&mut *tx, actor, "customer", existing.id, "update", snapshot(&existing), snapshot(&wanted))?;
            tx.commit().await?;
        });
        Ok((self.customer(existing.id).await?, Upsert::Updated))
    }

    pub async fn customer(&self, id: CustomerId) -> Result<Customer, StoreError> {
        let row: Option<CustomerRow> = on_db!(self, p => sqlx::query_as(
            select_customers!("WHERE id = $1"))
            .bind(id.get())
            .fetch_optional(p)
            .await?);
        row.ok_or_else(|| StoreError::NotFound(format!("customer {id}")))?
            .try_into()
    }

    pub async fn customer_by_ref(&self, reference: &str) -> Result<Option<Customer>, StoreError> {
        let row: Option<CustomerRow> = on_db!(self, p => sqlx::query_as(
            select_customers!("WHERE external_ref = $1"))
            .bind(reference)
            .fetch_optional(p)
            .await?);
        row.map(Customer::try_from).transpose()
    }

    pub async fn customers(&self) -> Result<Vec<Customer>, StoreError> {
        let rows: Vec<CustomerRow> = on_db!(self, p => sqlx::query_as(
            select_customers!("ORDER BY name, id"))
            .fetch_all(p)
            .await?);
        rows.into_iter().map(Customer::try_from).collect()
    }

    /// Enables or disables a customer. A disabled customer keeps its services and is still
    /// invoiced; its invoices are not emailed.
    pub async fn set_customer_enabled(
        &self,
        actor: &Actor,
        id: CustomerId,
        enabled: bool,
    ) -> Result<Customer, StoreError> {
        let before = self.customer(id).await?;
        if before.enabled == enabled {
            return Ok(before);
        }
        let mut after = before.clone();
        after.enabled = enabled;
        self.update_customer_target(
            actor,
            &before,
            &after,
            if enabled { "enable" } else { "disable" },
        )
        .await
    }

    /// Links a customer to a Xero contact (it becomes, or stays, an Xero customer).
    pub async fn link_xero(
        &self,
        actor: &Actor,
        id: CustomerId,
        contact: XeroContactId,
    ) -> Result<Customer, StoreError> {
        let before = self.customer(id).await?;
        let mut after = before.clone();
        after.target = BillingTarget::Xero {
            contact_id: Some(contact),
        };
        self.update_customer_target(actor, &before, &after, "link-xero")
            .await
    }

    /// Links a customer to an Autotask company: its charges go to Autotask, never to Xero.
    pub async fn link_autotask(
        &self,
        actor: &Actor,
        id: CustomerId,
        company: AutotaskCompanyId,
    ) -> Result<Customer, StoreError> {
        let before = self.customer(id).await?;
        let mut after = before.clone();
        after.target = BillingTarget::Autotask {
            company_id: company,
        };
        self.update_customer_target(actor, &before, &after, "link-autotask")
            .await
    }

    async fn update_customer_target(
        &self,
        actor: &Actor,
        before: &Customer,
        after: &Customer,
        action: &str,
    ) -> Result<Customer, StoreError> {
        let (kind, xero, autotask) = target_columns(&after.target);
        on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            sqlx::query(
                "UPDATE customers SET enabled = $2, target_kind = $3, xero_contact_id = $4, \
                 autotask_company_id = $5, updated_at = $6 WHERE id = $1",
            )
            .bind(before.id.get())
            .bind(after.enabled)
            .bind(kind)
            .bind(xero)
            .bind(autotask)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Refused(format!(
                        "another customer is already linked to that Autotask company; customer {} was not changed",
                        before.id
                    ))
                } else {
                    e.into()
                }
            })?;
            write_audit!(&mut *tx, actor, "customer", before.id, action, snapshot(before), snapshot(after))?;
            tx.commit().await?;
        });
        self.customer(before.id).await
    }
}
