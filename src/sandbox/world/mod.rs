//! The sample world: services, customers, assignments, items and rate plans written down once as
//! data ([`Catalogue`]) and seeded by one builder ([`Catalogue::seed`]) through the store's public
//! API, so that every row is audited as a user's change would be. The actor and the dates are
//! injected (nothing here reads the clock); the Autotask company comes from the stand-in, and the
//! Xero contacts from a [`ContactBook`] passed down by the caller.
//!
//! There is one sample, [`SAMPLE`] (`sample.rs`): `rebilld demo` bills and prints it, the
//! integration tests assert its figures, and `rebilld sandbox` seeds its Autotask company
//! ([`SAMPLE_COMPANY`]). A test that needs a world of its own writes a small [`Catalogue`] (or
//! one derived from [`SAMPLE`] with `..SAMPLE`) and seeds it with the same builder.

mod sample;

pub use sample::{SAMPLE, Sample, write_sample_calls};

use std::future::Future;

use chrono::{Duration, NaiveDate};

use super::autotask::AutotaskSandbox;
use super::xero::XeroSandbox;
use crate::domain::rating::RatePlan;
use crate::domain::{
    AutotaskCoding, AutotaskCompanyId, BillingTarget, Customer, DomainError, Email, ItemKind,
    Money, NewCustomer, NonEmpty, Period, ServiceId, Transition, XeroContactId,
};
use crate::store::{Actor, NewItem, ServiceImport, ServiceUserImport, Store, StoreError};

/// Why the sample world could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("the sample {what} {reference:?} is invalid: {source}")]
    Invalid {
        what: &'static str,
        reference: String,
        #[source]
        source: DomainError,
    },
    #[error("the rate plan of sample service {service:?} is invalid: {source}")]
    RatePlan {
        service: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("the sample catalogue names {what} {reference:?}, which it does not hold")]
    Unknown {
        what: &'static str,
        reference: String,
    },
    #[error(
        "sample customer {customer:?} is an Autotask account: seed the world with an Autotask stand-in"
    )]
    NoAutotask { customer: String },
    #[error("cannot make the Xero contact of sample customer {customer:?}: {reason}")]
    Contact { customer: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The Autotask company of the samples (`autotask.seed_company` gives it a contract, a product
/// and a material code).
pub const SAMPLE_COMPANY: (i64, &str) = (174, "Autotask Corporation");

/// One number (or extension) of a sample service.
#[derive(Debug, Clone, Copy)]
pub struct SampleUser<'a> {
    pub number: &'a str,
    pub label: Option<&'a str>,
}

/// A sample service, as a `service import` row.
#[derive(Debug, Clone, Copy)]
pub struct SampleService<'a> {
    pub external_ref: &'a str,
    pub parent: Option<&'a str>,
    pub name: &'a str,
    pub price: &'a str,
    pub cost: &'a str,
    pub rebill_enabled: bool,
    pub users: &'a [SampleUser<'a>],
}

impl SampleService<'_> {
    /// The import row (a VoIP service without Xero codes).
    pub fn service_import(&self) -> Result<ServiceImport, WorldError> {
        let invalid = |source| WorldError::Invalid {
            what: "service",
            reference: self.external_ref.to_string(),
            source,
        };
        Ok(ServiceImport {
            external_ref: self.external_ref.to_string(),
            parent_ref: self.parent.map(str::to_string),
            name: NonEmpty::parse("name", self.name).map_err(invalid)?,
            kind: "voip".into(),
            rebill_enabled: self.rebill_enabled,
            monthly_price: Money::parse(self.price).map_err(invalid)?,
            monthly_cost: Money::parse(self.cost).map_err(invalid)?,
            xero_account_code: None,
            xero_tax_type: None,
            xero_item_code: None,
            users: self
                .users
                .iter()
                .map(|u| ServiceUserImport {
                    user_ref: u.number.to_string(),
                    label: u.label.map(str::to_string),
                })
                .collect(),
        })
    }
}

/// Where a sample customer is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleAccount {
    /// Xero; with `contact`, linked to a contact from the [`ContactBook`] once created.
    Xero { contact: bool },
    /// Autotask company [`SAMPLE_COMPANY`]: its assignments and items carry the company's coding.
    Autotask,
}

/// A sample customer. One with `enabled: false` is disabled after its services and items are in
/// place (a disabled customer cannot be given new ones).
#[derive(Debug, Clone, Copy)]
pub struct SampleCustomer<'a> {
    pub external_ref: &'a str,
    pub name: &'a str,
    pub email: Option<&'a str>,
    pub account: SampleAccount,
    pub enabled: bool,
}

impl SampleCustomer<'_> {
    fn new_customer(&self) -> Result<NewCustomer, WorldError> {
        let invalid = |source| WorldError::Invalid {
            what: "customer",
            reference: self.external_ref.to_string(),
            source,
        };
        let target = match self.account {
            SampleAccount::Xero { .. } => BillingTarget::Xero { contact_id: None },
            SampleAccount::Autotask => BillingTarget::Autotask {
                company_id: AutotaskCompanyId::new(SAMPLE_COMPANY.0).map_err(invalid)?,
            },
        };
        Ok(NewCustomer {
            external_ref: Some(self.external_ref.to_string()),
            name: NonEmpty::parse("name", self.name).map_err(invalid)?,
            enabled: true,
            target,
            email: self.email.map(Email::parse).transpose().map_err(invalid)?,
            details: Default::default(),
            payment_terms_days: None,
        })
    }
}

/// A day of the sample, resolved through the injected [`SampleDates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleDay {
    /// Long before the billed period: billed for the whole month.
    Since,
    /// Part-way through the billed period: prorated.
    Mid,
}

/// The days the sample's assignments and items start on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleDates {
    pub since: NaiveDate,
    pub mid: NaiveDate,
}

impl SampleDates {
    /// For billing `period`: `since` the 1st of the month two before it, `mid` its 16th.
    pub fn for_period(period: Period) -> SampleDates {
        SampleDates {
            since: period.previous().previous().first_day(),
            mid: period.first_day() + Duration::days(15),
        }
    }

    fn day(&self, d: SampleDay) -> NaiveDate {
        match d {
            SampleDay::Since => self.since,
            SampleDay::Mid => self.mid,
        }
    }
}

/// A service assigned to a customer; an `excluded` one is put in the trash can right after,
/// recorded as of that day.
#[derive(Debug, Clone, Copy)]
pub struct SampleAssignment<'a> {
    pub service: &'a str,
    pub customer: &'a str,
    pub starts: SampleDay,
    pub excluded: Option<SampleDay>,
}

/// A once-off or recurring item of a customer.
#[derive(Debug, Clone, Copy)]
pub struct SampleItem<'a> {
    pub customer: &'a str,
    pub kind: ItemKind,
    pub description: &'a str,
    pub amount: &'a str,
    pub starts: Option<SampleDay>,
}

/// A rate plan (TOML, as `cdr plan` reads it) for a service.
#[derive(Debug, Clone, Copy)]
pub struct SampleRatePlan<'a> {
    pub service: &'a str,
    pub toml: &'a str,
}

/// A sample world written down as data. [`Catalogue::seed`] adds it in this order: services,
/// customers, their Xero contacts, assignments (each exclusion right after its assignment),
/// items, the disabling of disabled customers, rate plans.
#[derive(Debug, Clone, Copy)]
pub struct Catalogue<'a> {
    pub services: &'a [SampleService<'a>],
    pub customers: &'a [SampleCustomer<'a>],
    pub assignments: &'a [SampleAssignment<'a>],
    pub items: &'a [SampleItem<'a>],
    pub rate_plans: &'a [SampleRatePlan<'a>],
}

/// Where the Xero contacts of sample customers come from: the Xero stand-in directly, or (in
/// `rebilld demo`) the Xero client, as `customer link-xero --create` does.
pub trait ContactBook {
    fn contact_for(
        &self,
        customer: &Customer,
    ) -> impl Future<Output = Result<XeroContactId, WorldError>> + Send;
}

/// Contacts added to the Xero stand-in's state directly, without a request.
impl ContactBook for XeroSandbox {
    fn contact_for(
        &self,
        customer: &Customer,
    ) -> impl Future<Output = Result<XeroContactId, WorldError>> + Send {
        let email = customer.email.as_ref().map(|e| e.to_string());
        let id = self.add_contact(customer.name.as_str(), email.as_deref());
        let name = customer.name.to_string();
        async move {
            XeroContactId::parse(&id).map_err(|e| WorldError::Contact {
                customer: name,
                reason: e.to_string(),
            })
        }
    }
}

/// For a catalogue without Xero contacts: asking for one is an error.
pub struct NoContacts;

impl ContactBook for NoContacts {
    fn contact_for(
        &self,
        customer: &Customer,
    ) -> impl Future<Output = Result<XeroContactId, WorldError>> + Send {
        let customer = customer.name.to_string();
        async move {
            Err(WorldError::Contact {
                customer,
                reason: "no contact book was given".into(),
            })
        }
    }
}

/// What a seeded catalogue holds, by external reference: the typed handles.
#[derive(Debug, Clone)]
pub struct SampleWorld {
    customers: Vec<(String, Customer)>,
    services: Vec<(String, ServiceId)>,
    coding: Option<AutotaskCoding>,
}

impl SampleWorld {
    /// The customer as it stands after seeding (linked, disabled).
    pub fn customer(&self, external_ref: &str) -> Result<&Customer, WorldError> {
        self.customers
            .iter()
            .find(|(r, _)| r == external_ref)
            .map(|(_, c)| c)
            .ok_or_else(|| WorldError::Unknown {
                what: "customer",
                reference: external_ref.to_string(),
            })
    }

    pub fn service(&self, external_ref: &str) -> Result<ServiceId, WorldError> {
        self.services
            .iter()
            .find(|(r, _)| r == external_ref)
            .map(|(_, s)| *s)
            .ok_or_else(|| WorldError::Unknown {
                what: "service",
                reference: external_ref.to_string(),
            })
    }

    /// The Autotask coding of [`SAMPLE_COMPANY`], when the catalogue has an Autotask customer.
    pub fn coding(&self) -> Option<AutotaskCoding> {
        self.coding
    }

    fn customer_mut(&mut self, external_ref: &str) -> Result<&mut Customer, WorldError> {
        self.customers
            .iter_mut()
            .find(|(r, _)| r == external_ref)
            .map(|(_, c)| c)
            .ok_or_else(|| WorldError::Unknown {
                what: "customer",
                reference: external_ref.to_string(),
            })
    }

    /// The coding a row of this customer carries: the company's for an Autotask account.
    fn coding_for(&self, customer: &Customer) -> Result<Option<AutotaskCoding>, WorldError> {
        if !customer.target.is_autotask() {
            return Ok(None);
        }
        self.coding.map(Some).ok_or_else(|| WorldError::NoAutotask {
            customer: customer.name.to_string(),
        })
    }
}

/// Seeds [`SAMPLE_COMPANY`] in the Autotask stand-in (a contract, a product and a material code)
/// and returns its coding.
pub fn seed_sample_company(autotask: &AutotaskSandbox) -> Result<AutotaskCoding, WorldError> {
    let (company, name) = SAMPLE_COMPANY;
    let (contract, product, code) = autotask.seed_company(company, name);
    let invalid = |source| WorldError::Invalid {
        what: "Autotask company",
        reference: company.to_string(),
        source,
    };
    Ok(AutotaskCoding {
        contract_id: contract.try_into().map_err(invalid)?,
        product_id: product.try_into().map_err(invalid)?,
        material_code_id: code.try_into().map_err(invalid)?,
    })
}

impl Catalogue<'_> {
    /// Checks every row without a database: the values parse and every reference is to a row
    /// of the catalogue. [`Catalogue::seed`] checks first, so a catalogue with a bad value or
    /// reference writes nothing (the store's own refusals, such as a number already held by
    /// another service, still stop a seed part-way).
    pub fn check(&self) -> Result<(), WorldError> {
        let unknown = |what, reference: &str| WorldError::Unknown {
            what,
            reference: reference.to_string(),
        };
        let service = |r: &str| {
            self.services
                .iter()
                .any(|s| s.external_ref == r)
                .then_some(())
                .ok_or_else(|| unknown("service", r))
        };
        let customer = |r: &str| {
            self.customers
                .iter()
                .any(|s| s.external_ref == r)
                .then_some(())
                .ok_or_else(|| unknown("customer", r))
        };
        for s in self.services {
            s.service_import()?;
            if let Some(p) = s.parent {
                service(p)?;
            }
        }
        for x in self.customers {
            x.new_customer()?;
        }
        for a in self.assignments {
            service(a.service)?;
            customer(a.customer)?;
        }
        for i in self.items {
            customer(i.customer)?;
            NonEmpty::parse("description", i.description).map_err(|source| {
                WorldError::Invalid {
                    what: "item",
                    reference: i.description.into(),
                    source,
                }
            })?;
            Money::parse(i.amount).map_err(|source| WorldError::Invalid {
                what: "item",
                reference: i.description.into(),
                source,
            })?;
        }
        for p in self.rate_plans {
            service(p.service)?;
            toml::from_str::<RatePlan>(p.toml).map_err(|source| WorldError::RatePlan {
                service: p.service.into(),
                source,
            })?;
        }
        Ok(())
    }

    /// Adds the catalogue to `store` as `actor`. `autotask` is needed when the catalogue has an
    /// Autotask customer (its company is seeded there); `contacts` gives the Xero contacts.
    pub async fn seed(
        &self,
        store: &Store,
        actor: &Actor,
        dates: SampleDates,
        autotask: Option<&AutotaskSandbox>,
        contacts: &impl ContactBook,
    ) -> Result<SampleWorld, WorldError> {
        self.check()?;
        let autotask_customer = self
            .customers
            .iter()
            .find(|c| c.account == SampleAccount::Autotask);
        let coding = match (autotask_customer, autotask) {
            (None, _) => None,
            (Some(_), Some(at)) => Some(seed_sample_company(at)?),
            (Some(c), None) => {
                return Err(WorldError::NoAutotask {
                    customer: c.name.to_string(),
                });
            }
        };
        let mut world = SampleWorld {
            customers: Vec::with_capacity(self.customers.len()),
            services: Vec::with_capacity(self.services.len()),
            coding,
        };
        for s in self.services {
            let (id, _) = store.import_service(actor, &s.service_import()?).await?;
            world.services.push((s.external_ref.to_string(), id));
        }
        for c in self.customers {
            let added = store.add_customer(actor, &c.new_customer()?).await?;
            world.customers.push((c.external_ref.to_string(), added));
        }
        for c in self.customers {
            if c.account == (SampleAccount::Xero { contact: true }) {
                let customer = world.customer_mut(c.external_ref)?;
                let contact = contacts.contact_for(customer).await?;
                *customer = store.link_xero(actor, customer.id, contact).await?;
            }
        }
        for a in self.assignments {
            let service = world.service(a.service)?;
            let customer = world.customer(a.customer)?;
            let coding = world.coding_for(customer)?;
            store
                .assign(actor, service, customer.id, dates.day(a.starts), coding)
                .await?;
            if let Some(on) = a.excluded {
                store
                    .transition(actor, service, Transition::Exclude, dates.day(on))
                    .await?;
            }
        }
        for i in self.items {
            let customer = world.customer(i.customer)?;
            let invalid = |source| WorldError::Invalid {
                what: "item",
                reference: i.description.to_string(),
                source,
            };
            let item = NewItem {
                customer_id: customer.id,
                kind: i.kind,
                description: NonEmpty::parse("description", i.description).map_err(invalid)?,
                amount: Money::parse(i.amount).map_err(invalid)?,
                starts_on: i.starts.map(|d| dates.day(d)),
                autotask: world.coding_for(customer)?,
            };
            store.add_item(actor, &item).await?;
        }
        for c in self.customers.iter().filter(|c| !c.enabled) {
            let customer = world.customer_mut(c.external_ref)?;
            *customer = store
                .set_customer_enabled(actor, customer.id, false)
                .await?;
        }
        for p in self.rate_plans {
            let plan: RatePlan = toml::from_str(p.toml).map_err(|source| WorldError::RatePlan {
                service: p.service.to_string(),
                source,
            })?;
            store
                .set_rate_plan(actor, world.service(p.service)?, &plan)
                .await?;
        }
        Ok(world)
    }
}
