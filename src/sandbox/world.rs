//! The sample world: services, customers, assignments, items and rate plans written down once as
//! data ([`Catalogue`]) and seeded by one builder ([`Catalogue::seed`]) through the store's public
//! API, so that every row is audited as a user's change would be. The actor and the dates are
//! injected (nothing here reads the clock); the Autotask company comes from the stand-in, and the
//! Xero contacts from a [`ContactBook`] passed down by the caller.
//!
//! Two catalogues are kept here because two sets of figures are relied on: [`DEMO`], what
//! `rebilld demo` bills and prints, and [`RULES`], one customer per billing rule, whose figures the
//! integration tests assert. `rebilld sandbox` seeds the same Autotask company
//! ([`SAMPLE_COMPANY`]). A test that needs a world of its own writes a small [`Catalogue`] and seeds
//! it with the same builder.

use std::future::Future;
use std::io::Write;

use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;

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

const fn user<'a>(number: &'a str, label: &'a str) -> SampleUser<'a> {
    SampleUser {
        number,
        label: Some(label),
    }
}

const fn voip<'a>(
    external_ref: &'a str,
    parent: Option<&'a str>,
    name: &'a str,
    (price, cost): (&'a str, &'a str),
    users: &'a [SampleUser<'a>],
) -> SampleService<'a> {
    SampleService {
        external_ref,
        parent,
        name,
        price,
        cost,
        rebill_enabled: true,
        users,
    }
}

const fn customer<'a>(
    external_ref: &'a str,
    name: &'a str,
    email: Option<&'a str>,
    account: SampleAccount,
) -> SampleCustomer<'a> {
    SampleCustomer {
        external_ref,
        name,
        email,
        account,
        enabled: true,
    }
}

const fn assign<'a>(
    service: &'a str,
    customer: &'a str,
    starts: SampleDay,
) -> SampleAssignment<'a> {
    SampleAssignment {
        service,
        customer,
        starts,
        excluded: None,
    }
}

const XERO: SampleAccount = SampleAccount::Xero { contact: true };
const PROVIDERS: Option<&str> = Some("voip-providers");

/// `rebilld demo`'s world, one customer per rule of the run: Acme (a SIP trunk rated per minute,
/// a once-off item, a recurring item from mid-month), Beta Cafe (disabled: invoiced, never
/// emailed), the Autotask company (contract charges, cost-plus calls, a 1300 number), Delta Dental
/// (nothing billable: skipped), Echo Logistics (an excluded old trunk and a new one from
/// mid-month), and a service not enabled for rebilling. Its calls: [`write_demo_calls`].
pub const DEMO: Catalogue<'static> = Catalogue {
    services: &[
        voip(
            "voip-providers",
            None,
            "VoIP Service Providers",
            ("0", "0"),
            &[],
        ),
        voip(
            "sip-acme",
            PROVIDERS,
            "SIP Trunk 10 channels",
            ("49.95", "31.50"),
            &[user("0299990001", "Reception"), user("0299990002", "Sales")],
        ),
        voip(
            "pbx-beta",
            PROVIDERS,
            "Hosted PBX 5 seats",
            ("75.00", "45.00"),
            &[user("0299990011", "Front counter")],
        ),
        voip(
            "sip-echo-old",
            PROVIDERS,
            "SIP Trunk (old)",
            ("29.95", "18.00"),
            &[user("0299990031", "Old line")],
        ),
        voip(
            "sip-echo",
            PROVIDERS,
            "SIP Trunk 2 channels",
            ("19.95", "12.00"),
            &[user("0299990041", "Dispatch")],
        ),
        voip(
            "hns-auto",
            None,
            "Hosted Network Service",
            ("120.00", "80.00"),
            &[
                user("0299990021", "Head office"),
                user("1300555123", "Inbound 1300"),
            ],
        ),
        SampleService {
            rebill_enabled: false,
            ..voip(
                "nbn-100",
                None,
                "NBN 100 (not rebilled)",
                ("89.00", "60.00"),
                &[],
            )
        },
    ],
    customers: &[
        customer(
            "acme",
            "Acme Plumbing Pty Ltd",
            Some("accounts@acme.example"),
            XERO,
        ),
        SampleCustomer {
            enabled: false,
            ..customer("beta", "Beta Cafe", Some("owner@betacafe.example"), XERO)
        },
        customer(
            "autotask:174",
            SAMPLE_COMPANY.1,
            None,
            SampleAccount::Autotask,
        ),
        customer(
            "delta",
            "Delta Dental",
            Some("admin@delta.example"),
            SampleAccount::Xero { contact: false },
        ),
        customer("echo", "Echo Logistics", Some("ap@echo.example"), XERO),
    ],
    assignments: &[
        assign("sip-acme", "acme", SampleDay::Since),
        assign("pbx-beta", "beta", SampleDay::Since),
        assign("hns-auto", "autotask:174", SampleDay::Since),
        SampleAssignment {
            excluded: Some(SampleDay::Since),
            ..assign("sip-echo-old", "echo", SampleDay::Since)
        },
        assign("sip-echo", "echo", SampleDay::Mid),
    ],
    items: &[
        SampleItem {
            customer: "acme",
            kind: ItemKind::Once,
            description: "Handset installation (2 × Yealink T54W)",
            amount: "150.00",
            starts: None,
        },
        SampleItem {
            customer: "acme",
            kind: ItemKind::Recurring,
            description: "After-hours support",
            amount: "30.00",
            starts: Some(SampleDay::Mid),
        },
        SampleItem {
            customer: "autotask:174",
            kind: ItemKind::Recurring,
            description: "Managed firewall",
            amount: "65.00",
            starts: Some(SampleDay::Since),
        },
        SampleItem {
            customer: "autotask:174",
            kind: ItemKind::Once,
            description: "Site survey",
            amount: "220.00",
            starts: None,
        },
    ],
    rate_plans: &[
        SampleRatePlan {
            service: "sip-acme",
            toml: PER_MINUTE,
        },
        SampleRatePlan {
            service: "pbx-beta",
            toml: COST_PLUS,
        },
        SampleRatePlan {
            service: "hns-auto",
            toml: COST_PLUS,
        },
    ],
};

const PER_MINUTE: &str = r#"
kind = "per_minute"
[rates.mobile]
per_minute = "0.18"
first_secs = 30
next_secs = 1
[rates.national]
per_minute = "0.10"
first_secs = 60
next_secs = 60
flagfall = "0.05"
[rates.international]
per_minute = "0.65"
first_secs = 30
next_secs = 1
minimum = "0.20"
"#;

const COST_PLUS: &str = r#"
kind = "cost_plus"
multiplier = "1.3"
addon_per_minute = "0.01"
"#;

/// Writes a month of the demo's calls as a CDR file in the standard mapping, deterministically:
/// 240 outbound calls of the demo's numbers (every 17th not answered), an inbound call to the 1300
/// number (free unless the plan charges it) and one call of a number no service has.
pub fn write_demo_calls(mut w: impl Write, month: Period) -> std::io::Result<()> {
    writeln!(
        w,
        "call_id,user,start,duration,destination,call_type,cost,direction,disposition"
    )?;
    let users = ["0299990001", "0299990002", "0299990011", "0299990021"];
    let (start, _) = month.bounds(chrono_tz::UTC);
    let span = u64::from(month.days()) * 86_400 - 3_600;
    let mut x: u64 = 42;
    for i in 0..240u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let user = users[(x >> 33) as usize % users.len()];
        let at = start + Duration::seconds(((x >> 20) % span) as i64);
        let (dest, kind, cents_per_min): (_, _, u64) = match (x >> 40) % 3 {
            0 => ("0412345678", "mobile", 12),
            1 => ("0398765432", "national", 6),
            _ => ("0011441234567", "international", 45),
        };
        let secs = (x >> 45) % 600;
        let disposition = if i % 17 == 0 { "NO ANSWER" } else { "ANSWERED" };
        // The wholesale cost: cents a minute × seconds ÷ 6,000, exact to 4 places at these rates.
        let cost = Decimal::from(cents_per_min * secs) / Decimal::from(6_000);
        writeln!(
            w,
            "demo-{i},{user},{},{secs},{dest},{kind},{cost:.4},out,{disposition}",
            at.to_rfc3339()
        )?;
    }
    writeln!(
        w,
        "demo-in,1300555123,{},300,0299990001,national,0.20,in,ANSWERED",
        (start + Duration::days(3)).to_rfc3339()
    )?;
    writeln!(
        w,
        "demo-unknown,0299998888,{},60,0412345678,mobile,0.05,out,ANSWERED",
        (start + Duration::days(4)).to_rfc3339()
    )?;
    w.flush()
}

/// The integration tests' world, one customer per billing rule: "Enabled Pty Ltd" (a SIP service
/// 49.95 with two numbers, a once-off item of 150, and an excluded service of 99), "Disabled Pty
/// Ltd" (a trunk of 30: invoiced, never emailed), the Autotask company (a service of 120 and a
/// recurring item of 30 from mid-month) and "Idle Co" (nothing billable). Every service costs 10.
pub const RULES: Catalogue<'static> = Catalogue {
    services: &[
        rule_service("prov", None, "Service prov", "0", &[]),
        rule_service(
            "sip",
            Some("prov"),
            "Service sip",
            "49.95",
            &[number("0299990001"), number("0299990002")],
        ),
        rule_service(
            "trunk",
            Some("prov"),
            "Service trunk",
            "30.00",
            &[number("0299990003")],
        ),
        rule_service("old", None, "Service old", "99.00", &[number("0299990004")]),
        rule_service("at", None, "Service at", "120.00", &[number("0299990005")]),
    ],
    customers: &[
        customer(
            "enabled pty ltd",
            "Enabled Pty Ltd",
            Some("ops@enabled.example"),
            XERO,
        ),
        SampleCustomer {
            enabled: false,
            ..customer(
                "disabled pty ltd",
                "Disabled Pty Ltd",
                Some("ops@disabled.example"),
                XERO,
            )
        },
        customer(
            "autotask corporation",
            SAMPLE_COMPANY.1,
            None,
            SampleAccount::Autotask,
        ),
        customer(
            "idle co",
            "Idle Co",
            Some("a@idle.example"),
            SampleAccount::Xero { contact: false },
        ),
    ],
    assignments: &[
        assign("sip", "enabled pty ltd", SampleDay::Since),
        SampleAssignment {
            excluded: Some(SampleDay::Mid),
            ..assign("old", "enabled pty ltd", SampleDay::Since)
        },
        assign("trunk", "disabled pty ltd", SampleDay::Since),
        assign("at", "autotask corporation", SampleDay::Since),
    ],
    items: &[
        SampleItem {
            customer: "enabled pty ltd",
            kind: ItemKind::Once,
            description: "Handset install",
            amount: "150",
            starts: None,
        },
        SampleItem {
            customer: "autotask corporation",
            kind: ItemKind::Recurring,
            description: "Support block",
            amount: "30",
            starts: Some(SampleDay::Mid),
        },
    ],
    rate_plans: &[],
};

const fn number(number: &str) -> SampleUser<'_> {
    SampleUser {
        number,
        label: None,
    }
}

const fn rule_service<'a>(
    external_ref: &'a str,
    parent: Option<&'a str>,
    name: &'a str,
    price: &'a str,
    users: &'a [SampleUser<'a>],
) -> SampleService<'a> {
    voip(external_ref, parent, name, (price, "10"), users)
}

/// [`RULES`] seeded, by name.
#[derive(Debug, Clone)]
pub struct RulesWorld {
    pub enabled: Customer,
    pub disabled: Customer,
    pub autotask: Customer,
    pub idle: Customer,
    pub sip: ServiceId,
    pub trunk: ServiceId,
    pub excluded: ServiceId,
    pub at_service: ServiceId,
    pub coding: AutotaskCoding,
}

impl RulesWorld {
    /// Seeds [`RULES`] with its contacts and company on the stand-ins.
    pub async fn seed(
        store: &Store,
        actor: &Actor,
        dates: SampleDates,
        xero: &XeroSandbox,
        autotask: &AutotaskSandbox,
    ) -> Result<RulesWorld, WorldError> {
        let w = RULES
            .seed(store, actor, dates, Some(autotask), xero)
            .await?;
        Ok(RulesWorld {
            enabled: w.customer("enabled pty ltd")?.clone(),
            disabled: w.customer("disabled pty ltd")?.clone(),
            autotask: w.customer("autotask corporation")?.clone(),
            idle: w.customer("idle co")?.clone(),
            sip: w.service("sip")?,
            trunk: w.service("trunk")?,
            excluded: w.service("old")?,
            at_service: w.service("at")?,
            coding: w.coding().ok_or_else(|| WorldError::NoAutotask {
                customer: SAMPLE_COMPANY.1.to_string(),
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_catalogues_parse_and_name_only_what_they_hold() {
        DEMO.check().unwrap();
        RULES.check().unwrap();
    }

    #[test]
    fn a_catalogue_naming_a_service_it_does_not_hold_is_caught() {
        let broken = Catalogue {
            assignments: &[assign("no-such-service", "acme", SampleDay::Since)],
            ..DEMO
        };
        assert!(matches!(
            broken.check(),
            Err(WorldError::Unknown { what: "service", reference }) if reference == "no-such-service"
        ));
    }

    #[test]
    fn the_demo_dates_put_mid_month_on_the_16th_and_since_two_months_back() {
        let d = SampleDates::for_period(Period::parse("2026-03").unwrap());
        assert_eq!(d.since, "2026-01-01".parse::<NaiveDate>().unwrap());
        assert_eq!(d.mid, "2026-03-16".parse::<NaiveDate>().unwrap());
    }

    #[test]
    fn the_demo_calls_are_the_same_every_time_with_exact_costs() {
        let month = Period::parse("2026-10").unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_demo_calls(&mut a, month).unwrap();
        write_demo_calls(&mut b, month).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 240 + 2);
        // The figures `rebilld demo` prints rest on these calls: the first two, pinned.
        assert_eq!(
            lines[1..3],
            [
                "demo-0,0299990011,2026-10-15T17:46:38+00:00,316,0412345678,mobile,0.6320,out,NO ANSWER",
                "demo-1,0299990011,2026-10-07T05:31:00+00:00,7,0011441234567,international,0.0525,out,ANSWERED",
            ]
        );
        // Each generated cost is exactly cents a minute × seconds ÷ 6,000.
        for line in &lines[1..241] {
            let f: Vec<&str> = line.split(',').collect();
            let cents = match f[5] {
                "mobile" => 12,
                "national" => 6,
                _ => 45,
            };
            let secs: u64 = f[3].parse().unwrap();
            let cost: Decimal = f[6].parse().unwrap();
            assert_eq!(
                cost * Decimal::from(6_000),
                Decimal::from(cents * secs),
                "{line}"
            );
        }
    }
}
