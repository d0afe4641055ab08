//! Lookups: contracts, products and material codes of a company (validated before an assignment is
//! saved, their names returned for display), and customers imported from Autotask companies.

use std::collections::HashMap;

use chrono::NaiveDate;
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AutotaskError;
use super::client::{AutotaskClient, Repeat, decode};
use super::query::Filter;
use super::wire::{BillingCode, Company, Contract, Fields, Product};
use crate::domain::customer::BusinessDetails;
use crate::domain::{
    AutotaskCoding, AutotaskCompanyId, BillingTarget, ContractId, NewCustomer, NonEmpty, ProductId,
};
use crate::store::{Actor, Store, Upsert};

/// Contract status 1 is Active (Autotask's picklist).
const CONTRACT_ACTIVE: i64 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct Named {
    pub id: i64,
    pub name: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodingNames {
    pub contract: String,
    pub product: String,
    pub material_code: String,
}

fn date_of(s: &Option<String>) -> Option<NaiveDate> {
    s.as_deref()
        .and_then(|s| s.get(..10))
        .and_then(|d| d.parse().ok())
}

fn material_use_type(fields: &Fields) -> Option<i64> {
    fields
        .fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("useType"))
        .flat_map(|f| f.picklist_values.iter().flatten())
        .find(|v| v.label.eq_ignore_ascii_case("Material Cost Code"))
        .and_then(|v| v.value.parse().ok())
}

fn no_material_use_type() -> AutotaskError {
    AutotaskError::Decode("BillingCodes.useType has no \"Material Cost Code\" value".into())
}

impl AutotaskClient {
    /// The field definitions (with their picklists) of `entity`: kept in the database and read
    /// again only once `autotask.field_cache_secs` have passed since they were read, on the
    /// client's clock, so that a scripted set-up of many assignments does not re-read them each
    /// time. Shared by every process on the database.
    pub async fn field_definitions(&self, entity: &str) -> Result<Fields, AutotaskError> {
        Ok(self.fields_of(entity, false).await?.0)
    }

    /// The field definitions of `entity`, and whether they came from the cache; `read` reads
    /// them from Autotask whatever the cache holds.
    async fn fields_of(&self, entity: &str, read: bool) -> Result<(Fields, bool), AutotaskError> {
        let user = self.inner.cfg.username.as_deref().unwrap_or_default();
        let now = self.inner.clock.now();
        // At most ten years: any longer is "keep them", and no date arithmetic can overflow.
        let fresh_for =
            chrono::Duration::seconds(self.inner.cfg.field_cache_secs.min(315_360_000) as i64);
        if !read
            && let Some((body, read_at)) = self.inner.store.autotask_fields(user, entity).await?
            && (chrono::Duration::zero()..fresh_for).contains(&now.signed_duration_since(read_at))
            && let Ok(fields) = decode::<Fields>(&body)
        {
            return Ok((fields, true));
        }
        let reply = self
            .request(
                Method::GET,
                &format!("V1.0/{entity}/entityInformation/fields"),
                None,
                Repeat::Safe,
            )
            .await?;
        let body = Self::check(reply)?;
        let fields: Fields = decode(&body)?;
        self.inner
            .store
            .save_autotask_fields(user, entity, &body, now)
            .await?;
        Ok((fields, false))
    }

    /// The numeric `useType` of "Material Cost Code", read from the BillingCodes field definitions
    /// (cached: `field_definitions`; read again at once when the cached ones lack it, since a
    /// picklist edited in Autotask must not refuse assignments for a day).
    pub async fn material_code_use_type(&self) -> Result<i64, AutotaskError> {
        let (fields, cached) = self.fields_of("BillingCodes", false).await?;
        match material_use_type(&fields) {
            Some(v) => Ok(v),
            None if cached => material_use_type(&self.fields_of("BillingCodes", true).await?.0)
                .ok_or_else(no_material_use_type),
            None => Err(no_material_use_type()),
        }
    }

    pub async fn contracts_of(
        &self,
        company: AutotaskCompanyId,
    ) -> Result<Vec<Named>, AutotaskError> {
        let found: Vec<Contract> = self
            .query(
                "Contracts",
                &Filter::eq("companyID", company.get()).and(Filter::eq("status", CONTRACT_ACTIVE)),
            )
            .await?;
        // Only contracts that take charges are offered (Autotask refuses them on the others).
        Ok(found
            .into_iter()
            .filter(|c| {
                c.contract_type
                    .and_then(super::chargeless_contract_type)
                    .is_none()
            })
            .map(|c| Named {
                id: c.id,
                name: c.contract_name.unwrap_or_default(),
                detail: format!(
                    "{} to {}",
                    date_of(&c.start_date)
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    date_of(&c.end_date)
                        .map(|d| d.to_string())
                        .unwrap_or_default()
                ),
            })
            .collect())
    }

    pub async fn active_products(&self) -> Result<Vec<Named>, AutotaskError> {
        let found: Vec<Product> = self
            .query("Products", &Filter::eq("isActive", true))
            .await?;
        Ok(found
            .into_iter()
            .map(|p| Named {
                id: p.id,
                name: p.name.unwrap_or_default(),
                detail: String::new(),
            })
            .collect())
    }

    /// The products that can go on `contract` (the chained choice after the contract), as far as
    /// Autotask allows: none, refused with the reason, when the contract is not active or is of a
    /// type that takes no charges (Block Hours, Retainer, Per Ticket); otherwise the active
    /// products (Autotask ties no product to a contract), each with its own material code.
    pub async fn products_for_contract(
        &self,
        contract: ContractId,
    ) -> Result<Vec<Named>, AutotaskError> {
        let invalid = AutotaskError::InvalidCoding;
        let c: Contract = self
            .get("Contracts", contract.get())
            .await
            .map_err(|e| match e {
                AutotaskError::NotFound(_) => {
                    invalid(format!("Autotask has no contract {contract}"))
                }
                other => other,
            })?;
        let name = c
            .contract_name
            .clone()
            .unwrap_or_else(|| format!("contract {contract}"));
        if c.status != Some(CONTRACT_ACTIVE) {
            return Err(invalid(format!(
                "contract {contract} ({name}) is not active: no product can be charged to it"
            )));
        }
        if let Some(kind) = c.contract_type.and_then(super::chargeless_contract_type) {
            return Err(invalid(format!(
                "contract {contract} ({name}) is a {kind} contract: Autotask takes no contract \
                 charges on it, so no product can go on it; choose a Recurring Service, Fixed \
                 Price or Time and Materials contract"
            )));
        }
        let found: Vec<Product> = self
            .query("Products", &Filter::eq("isActive", true))
            .await?;
        Ok(found
            .into_iter()
            .map(|p| Named {
                id: p.id,
                name: p.name.unwrap_or_default(),
                detail: p
                    .product_billing_code_id
                    .map(|b| format!("material code {b}"))
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// The material codes for `product` (the chained choice after the product): the product's own
    /// billing code first, marked, then the other active Material Cost Codes. Refused when the
    /// product does not exist or is not active.
    pub async fn material_codes_for_product(
        &self,
        product: ProductId,
    ) -> Result<Vec<Named>, AutotaskError> {
        let invalid = AutotaskError::InvalidCoding;
        let p: Product = self
            .get("Products", product.get())
            .await
            .map_err(|e| match e {
                AutotaskError::NotFound(_) => invalid(format!("Autotask has no product {product}")),
                other => other,
            })?;
        if p.is_active != Some(true) {
            return Err(invalid(format!(
                "product {product} ({}) is not active",
                p.name.unwrap_or_default()
            )));
        }
        let mut codes = self.material_codes().await?;
        if let Some(own) = p.product_billing_code_id
            && let Some(i) = codes.iter().position(|c| c.id == own)
        {
            let mut first = codes.remove(i);
            first.detail = "the product's material code".into();
            codes.insert(0, first);
        }
        Ok(codes)
    }

    pub async fn material_codes(&self) -> Result<Vec<Named>, AutotaskError> {
        let use_type = self.material_code_use_type().await?;
        let found: Vec<BillingCode> = self
            .query(
                "BillingCodes",
                &Filter::eq("useType", use_type).and(Filter::eq("isActive", true)),
            )
            .await?;
        Ok(found
            .into_iter()
            .map(|b| Named {
                id: b.id,
                name: b.name.unwrap_or_default(),
                detail: String::new(),
            })
            .collect())
    }

    /// Checks an assignment's choices: the contract belongs to the company, is active and covers
    /// `on`; the product is active; the billing code is an active Material Cost Code.
    pub async fn validate_coding(
        &self,
        company: AutotaskCompanyId,
        coding: &AutotaskCoding,
        on: NaiveDate,
    ) -> Result<CodingNames, AutotaskError> {
        CodingCheck::new(self).check(company, coding, on).await
    }

    pub async fn company(&self, id: AutotaskCompanyId) -> Result<Company, AutotaskError> {
        self.get("Companies", id.get()).await
    }

    /// The company a customer is about to be linked to, checked: it exists in Autotask. Returns
    /// its name and whether it is active.
    pub async fn check_company(
        &self,
        id: AutotaskCompanyId,
    ) -> Result<(String, bool), AutotaskError> {
        let c = self.company(id).await.map_err(|e| match e {
            AutotaskError::NotFound(_) => {
                AutotaskError::NotFound(format!("company {id} (check the id in Autotask)"))
            }
            other => other,
        })?;
        Ok((
            c.company_name.unwrap_or_else(|| format!("company {id}")),
            c.is_active != Some(false),
        ))
    }

    pub async fn active_companies(&self) -> Result<Vec<Company>, AutotaskError> {
        self.query("Companies", &Filter::eq("isActive", true)).await
    }
}

/// Checks many assignments' choices with one read of each contract, product and billing code
/// they name (and the cached field definitions), however many rows name them: a bulk import
/// validates thousands of rows without thousands of requests. Each check is `validate_coding`'s.
pub struct CodingCheck<'a> {
    client: &'a AutotaskClient,
    /// Each record as read (None: Autotask has none).
    contracts: HashMap<i64, Option<Contract>>,
    products: HashMap<i64, Option<Product>>,
    codes: HashMap<i64, Option<BillingCode>>,
    material: Option<i64>,
}

/// One record by id, read once: None when Autotask has none.
async fn read_once<T: DeserializeOwned + Clone>(
    client: &AutotaskClient,
    memo: &mut HashMap<i64, Option<T>>,
    entity: &str,
    id: i64,
) -> Result<Option<T>, AutotaskError> {
    if let Some(known) = memo.get(&id) {
        return Ok(known.clone());
    }
    let found = match client.get::<T>(entity, id).await {
        Ok(t) => Some(t),
        Err(AutotaskError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    memo.insert(id, found.clone());
    Ok(found)
}

impl<'a> CodingCheck<'a> {
    pub fn new(client: &'a AutotaskClient) -> Self {
        CodingCheck {
            client,
            contracts: HashMap::new(),
            products: HashMap::new(),
            codes: HashMap::new(),
            material: None,
        }
    }

    /// Checks one assignment's choices (see `AutotaskClient::validate_coding`).
    pub async fn check(
        &mut self,
        company: AutotaskCompanyId,
        coding: &AutotaskCoding,
        on: NaiveDate,
    ) -> Result<CodingNames, AutotaskError> {
        let invalid = |m: String| AutotaskError::InvalidCoding(m);
        let contract = read_once(
            self.client,
            &mut self.contracts,
            "Contracts",
            coding.contract_id.get(),
        )
        .await?
        .ok_or_else(|| invalid(format!("Autotask has no contract {}", coding.contract_id)))?;
        let contract_name = contract
            .contract_name
            .clone()
            .unwrap_or_else(|| format!("contract {}", contract.id));
        if contract.company_id != Some(company.get()) {
            return Err(invalid(format!(
                "contract {} ({contract_name}) belongs to company {}, not to company {company}",
                contract.id,
                contract
                    .company_id
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "?".into())
            )));
        }
        if contract.status != Some(CONTRACT_ACTIVE) {
            return Err(invalid(format!(
                "contract {} ({contract_name}) is not active",
                contract.id
            )));
        }
        if let Some(kind) = contract
            .contract_type
            .and_then(super::chargeless_contract_type)
        {
            return Err(invalid(format!(
                "contract {} ({contract_name}) is a {kind} contract: Autotask takes no contract \
                 charges on Block Hours, Retainer or Per Ticket contracts; choose a Recurring \
                 Service, Fixed Price or Time and Materials contract",
                contract.id
            )));
        }
        let (start, end) = (date_of(&contract.start_date), date_of(&contract.end_date));
        if start.is_some_and(|s| on < s) || end.is_some_and(|e| on > e) {
            return Err(invalid(format!(
                "contract {} ({contract_name}) runs {} to {} and does not cover {on}",
                contract.id,
                start.map(|d| d.to_string()).unwrap_or_default(),
                end.map(|d| d.to_string()).unwrap_or_default()
            )));
        }
        let product = read_once(
            self.client,
            &mut self.products,
            "Products",
            coding.product_id.get(),
        )
        .await?
        .ok_or_else(|| invalid(format!("Autotask has no product {}", coding.product_id)))?;
        let product_name = product
            .name
            .clone()
            .unwrap_or_else(|| format!("product {}", product.id));
        if product.is_active != Some(true) {
            return Err(invalid(format!(
                "product {} ({product_name}) is not active",
                product.id
            )));
        }
        let code = read_once(
            self.client,
            &mut self.codes,
            "BillingCodes",
            coding.material_code_id.get(),
        )
        .await?
        .ok_or_else(|| {
            invalid(format!(
                "Autotask has no billing code {}",
                coding.material_code_id
            ))
        })?;
        let code_name = code
            .name
            .clone()
            .unwrap_or_else(|| format!("billing code {}", code.id));
        if code.is_active != Some(true) {
            return Err(invalid(format!(
                "material code {} ({code_name}) is not active",
                code.id
            )));
        }
        let material = match self.material {
            Some(m) => m,
            None => {
                let m = self.client.material_code_use_type().await?;
                self.material = Some(m);
                m
            }
        };
        if code.use_type != Some(material) {
            return Err(invalid(format!(
                "billing code {} ({code_name}) is not a Material Cost Code",
                code.id
            )));
        }
        Ok(CodingNames {
            contract: contract_name,
            product: product_name,
            material_code: code_name,
        })
    }
}

/// The id Autotask gives the tenant's own company.
pub const OWN_COMPANY: i64 = 0;

/// Which companies `customer import --from autotask` takes.
pub enum CompanyImport {
    Ids(Vec<AutotaskCompanyId>),
    AllActive,
}

/// Creates or updates customers from Autotask companies, idempotently (`external_ref` is
/// `autotask:<company id>`). Returns each company's outcome, or why it was refused.
pub async fn import_companies(
    client: &AutotaskClient,
    store: &Store,
    actor: &Actor,
    which: CompanyImport,
) -> Result<Vec<(i64, Result<Upsert, String>)>, AutotaskError> {
    let companies = match which {
        // Autotask lists the tenant's own company (id 0) among the active ones: it is not a
        // customer, and no customer can be linked to id 0.
        CompanyImport::AllActive => client
            .active_companies()
            .await?
            .into_iter()
            .filter(|c| c.id != OWN_COMPANY)
            .collect(),
        CompanyImport::Ids(ids) => {
            let mut v = Vec::new();
            for id in ids {
                v.push(client.company(id).await?);
            }
            v
        }
    };
    let mut out = Vec::new();
    for c in companies {
        let outcome = async {
            let company_id = AutotaskCompanyId::new(c.id).map_err(|e| e.to_string())?;
            let name = NonEmpty::parse("company name", c.company_name.as_deref().unwrap_or(""))
                .map_err(|e| e.to_string())?;
            let reference = format!("autotask:{}", c.id);
            let existing = store
                .customer_by_ref(&reference)
                .await
                .map_err(|e| e.to_string())?;
            let address = [c.address1.clone(), c.address2.clone()]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let new = NewCustomer {
                external_ref: Some(reference),
                name,
                // An inactive company comes in disabled (never emailed); otherwise a local
                // decision to disable the customer stands: Autotask does not own that.
                enabled: c.is_active != Some(false)
                    && existing.as_ref().map(|e| e.enabled).unwrap_or(true),
                target: BillingTarget::Autotask { company_id },
                email: existing.as_ref().and_then(|e| e.email.clone()),
                details: BusinessDetails {
                    phone: c.phone.clone().filter(|s| !s.is_empty()),
                    address: Some(address).filter(|s| !s.is_empty()),
                    city: c.city.clone().filter(|s| !s.is_empty()),
                    state: c.state.clone().filter(|s| !s.is_empty()),
                    postcode: c.postal_code.clone().filter(|s| !s.is_empty()),
                    country: existing.as_ref().and_then(|e| e.details.country.clone()),
                    tax_number: existing.as_ref().and_then(|e| e.details.tax_number.clone()),
                },
                payment_terms_days: existing.as_ref().and_then(|e| e.payment_terms_days),
            };
            store
                .upsert_customer(actor, &new)
                .await
                .map(|(_, u)| u)
                .map_err(|e| e.to_string())
        }
        .await;
        out.push((c.id, outcome));
    }
    Ok(out)
}
