//! A large synthetic world for the bench (`rebilld bench cycle`), deterministic for a given size:
//! `customers` customers, 70 % billed through Xero (every 20th of them disabled: invoiced, not
//! emailed) and 30 % through Autotask (each with its own company and contract in the stand-in),
//! `services` VoIP services with one number each, dealt round the customers, one shared rate plan
//! as the default, and a month of calls spread over the services by a seeded generator. Seeded
//! through the store's public API, like [`super::world`].

use std::io::Write;

use chrono::{DateTime, Utc};

use super::autotask::AutotaskSandbox;
use super::xero::XeroSandbox;
use crate::domain::rating::RatePlan;
use crate::domain::{
    AutotaskCoding, AutotaskCompanyId, BillingTarget, Email, Money, NewCustomer, NonEmpty, Period,
    XeroContactId,
};
use crate::store::{Actor, ServiceImport, ServiceUserImport, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("bench data: {0}")]
    Invalid(String),
}

/// How big the world is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkSpec {
    pub customers: usize,
    pub services: usize,
    pub calls: usize,
}

/// What was seeded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkWorld {
    pub xero_customers: usize,
    /// Enabled Xero customers (each is emailed its invoice).
    pub xero_enabled: usize,
    pub autotask_customers: usize,
    pub services: usize,
}

/// Whether customer `i` is billed through Autotask (3 in 10).
pub fn is_autotask(i: usize) -> bool {
    i % 10 >= 7
}

/// Whether customer `i` (a Xero one) is disabled: every 20th Xero customer, 5 %.
fn is_disabled(i: usize) -> bool {
    let xero_index = (i / 10) * 7 + i % 10;
    !is_autotask(i) && xero_index % 20 == 19
}

/// The number of service `j`.
pub fn number_of(j: usize) -> String {
    format!("028{j:07}")
}

fn invalid(e: impl std::fmt::Display) -> BulkError {
    BulkError::Invalid(e.to_string())
}

/// The contract, product and material code `AutotaskSandbox::seed_company` gives `company`.
fn coding_of(company: i64) -> Result<AutotaskCoding, BulkError> {
    Ok(AutotaskCoding {
        contract_id: (company * 100 + 1).try_into().map_err(invalid)?,
        product_id: (company * 100 + 2).try_into().map_err(invalid)?,
        material_code_id: (company * 100 + 3).try_into().map_err(invalid)?,
    })
}

/// The resync's changes, for one customer in 20 (5 %): its first service gets a dearer rate plan
/// of its own, so that once the month is re-rated its calls line changes. Returns how many
/// customers changed.
pub async fn change_bulk(store: &Store, actor: &Actor, spec: BulkSpec) -> Result<usize, BulkError> {
    let dearer = RatePlan::CostPlus {
        multiplier: "1.5".parse().map_err(invalid)?,
        addon_per_minute: Money::parse("0.01").map_err(invalid)?,
        charge_inbound_13: false,
    };
    // One in each block of 20, at a place that moves with the block: Xero and Autotask alike.
    let picked = (0..spec.customers.div_ceil(20))
        .map(|b| 20 * b + b % 20)
        .filter(|i| *i < spec.customers);
    let mut changed = 0;
    for i in picked {
        // Service i is the first of customer i (services are dealt round the customers).
        let Some(service) = store.service_by_ref(&format!("bench-svc-{i}")).await? else {
            continue;
        };
        store.set_rate_plan(actor, service.id, &dearer).await?;
        changed += 1;
    }
    Ok(changed)
}

/// Seeds the world into `store` as `actor`, its Xero contacts into `xero` and its Autotask
/// companies into `autotask`; assignments start two months before `period`.
pub async fn seed_bulk(
    store: &Store,
    actor: &Actor,
    spec: BulkSpec,
    period: Period,
    xero: &XeroSandbox,
    autotask: &AutotaskSandbox,
) -> Result<BulkWorld, BulkError> {
    if spec.customers == 0 || spec.services < spec.customers {
        return Err(BulkError::Invalid(
            "at least one customer, and at least as many services as customers".into(),
        ));
    }
    let plan = RatePlan::CostPlus {
        multiplier: "1.3".parse().map_err(invalid)?,
        addon_per_minute: Money::parse("0.01").map_err(invalid)?,
        charge_inbound_13: false,
    };
    store.set_shared_rate_plan(actor, "bench", &plan).await?;
    store.set_default_rate_plan(actor, "bench").await?;

    let mut world = BulkWorld::default();
    let mut customers = Vec::with_capacity(spec.customers);
    for i in 0..spec.customers {
        let name = format!("Bench customer {i:05}");
        let email = format!("billing{i}@bench.example");
        let (target, coding) = if is_autotask(i) {
            let company = 100_000 + i as i64;
            autotask.seed_company(company, &name);
            let coding = coding_of(company)?;
            let company_id = AutotaskCompanyId::new(company).map_err(invalid)?;
            world.autotask_customers += 1;
            (BillingTarget::Autotask { company_id }, Some(coding))
        } else {
            world.xero_customers += 1;
            if !is_disabled(i) {
                world.xero_enabled += 1;
            }
            (BillingTarget::Xero { contact_id: None }, None)
        };
        let c = store
            .add_customer(
                actor,
                &NewCustomer {
                    external_ref: Some(format!("bench-{i}")),
                    name: NonEmpty::parse("name", &name).map_err(invalid)?,
                    enabled: true,
                    target,
                    email: Some(Email::parse(&email).map_err(invalid)?),
                    details: Default::default(),
                    payment_terms_days: None,
                },
            )
            .await?;
        if coding.is_none() {
            let contact = xero.add_contact(&name, Some(&email));
            let contact = XeroContactId::parse(&contact).map_err(invalid)?;
            store.link_xero(actor, c.id, contact).await?;
        }
        customers.push((c.id, coding));
    }
    let starts_on = period.previous().previous().first_day();
    for j in 0..spec.services {
        let (id, _) = store
            .import_service(
                actor,
                &ServiceImport {
                    external_ref: format!("bench-svc-{j}"),
                    parent_ref: None,
                    name: NonEmpty::parse("name", &format!("Bench service {j}"))
                        .map_err(invalid)?,
                    kind: "voip".into(),
                    rebill_enabled: true,
                    monthly_price: Money::new(rust_decimal::Decimal::from(10 + j % 5)),
                    monthly_cost: Money::new(rust_decimal::Decimal::from(5)),
                    xero_account_code: None,
                    xero_tax_type: None,
                    xero_item_code: None,
                    users: vec![ServiceUserImport {
                        user_ref: number_of(j),
                        label: None,
                    }],
                },
            )
            .await?;
        let (customer, coding) = customers[j % spec.customers];
        store.assign(actor, id, customer, starts_on, coding).await?;
        world.services += 1;
    }
    for (i, (id, _)) in customers.iter().enumerate() {
        if is_disabled(i) {
            store.set_customer_enabled(actor, *id, false).await?;
        }
    }
    Ok(world)
}

/// Writes `spec.calls` calls between `from` and `until` (UTC, in order, a day's margin at each
/// end), on the services' numbers, in the standard mapping with epoch times.
pub fn write_bulk_calls(
    mut w: impl Write,
    spec: BulkSpec,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> std::io::Result<()> {
    writeln!(
        w,
        "call_id,user,start,duration,destination,call_type,cost,direction,disposition"
    )?;
    let start = from.timestamp() + 86_400;
    let span = (until.timestamp() - 86_400 - start).max(1) as u64;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let services = spec.services.max(1) as u64;
    let calls = spec.calls.max(1) as u64;
    for i in 0..spec.calls as u64 {
        // xorshift: deterministic and fast.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let service = (x % services) as usize;
        let at = start as u64 + i * span / calls + (x >> 20) % 30;
        let duration = (x >> 40) % 900;
        let kind = ["national", "mobile", "local", "international"][(x >> 50) as usize % 4];
        writeln!(
            w,
            "b{i},{},{at},{duration},04{:08},{kind},0.{:04},out,ANSWERED",
            number_of(service),
            x % 100_000_000,
            x % 10_000
        )?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_in_ten_customers_are_xero_and_one_in_twenty_of_them_disabled() {
        let n = 10_000;
        let xero = (0..n).filter(|i| !is_autotask(*i)).count();
        let disabled = (0..n).filter(|i| is_disabled(*i)).count();
        assert_eq!(xero, 7_000);
        assert_eq!(disabled, 350);
    }

    #[test]
    fn the_calls_are_the_same_every_time() {
        let spec = BulkSpec {
            customers: 10,
            services: 50,
            calls: 100,
        };
        let from = DateTime::<Utc>::from_timestamp(1_790_812_800, 0).unwrap();
        let until = from + chrono::Duration::days(31);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_bulk_calls(&mut a, spec, from, until).unwrap();
        write_bulk_calls(&mut b, spec, from, until).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.iter().filter(|c| **c == b'\n').count(), 101);
    }
}
