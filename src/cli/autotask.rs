//! `rebilld autotask contracts|products|material-codes`, and the Autotask side of
//! `service assign`, `item add-*` and `customer import --from autotask`.

use clap::Subcommand;
use serde_json::json;

use super::Ctx;
use super::output::{say, table};
use crate::autotask::{AutotaskClient, CompanyImport, Named, import_companies};
use crate::domain::{
    AutotaskCoding, AutotaskCompanyId, BillingTarget, Customer, CustomerId, Period,
};

/// The Autotask choices of an assignment or item: all three, or none (Xero customers).
#[derive(Debug, clap::Args)]
pub struct CodingArgs {
    /// Autotask accounts: the contract to charge
    #[arg(long, requires_all = ["product", "material_code"])]
    pub contract: Option<crate::domain::ContractId>,
    /// Autotask accounts: the product of that contract
    #[arg(long, requires = "contract")]
    pub product: Option<crate::domain::ProductId>,
    /// Autotask accounts: the material code (billing code) of that product
    #[arg(long, requires = "contract")]
    pub material_code: Option<crate::domain::MaterialCodeId>,
}

impl CodingArgs {
    pub fn coding(&self) -> Option<AutotaskCoding> {
        match (self.contract, self.product, self.material_code) {
            (Some(contract_id), Some(product_id), Some(material_code_id)) => Some(AutotaskCoding {
                contract_id,
                product_id,
                material_code_id,
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AutotaskCmd {
    /// The active contracts of a customer's Autotask company
    Contracts {
        #[arg(long)]
        customer: CustomerId,
    },
    /// Active products; with --contract, only those that can go on that contract (none, with the
    /// reason, on a contract that takes no charges)
    Products {
        #[arg(long)]
        customer: Option<CustomerId>,
        /// The contract chosen (`autotask contracts --customer ID`)
        #[arg(long)]
        contract: Option<crate::domain::ContractId>,
    },
    /// Active material codes (billing codes of use type "Material Cost Code"); with --product,
    /// the product's own material code first
    MaterialCodes {
        #[arg(long)]
        customer: Option<CustomerId>,
        /// The product chosen (`autotask products --contract ID`)
        #[arg(long)]
        product: Option<crate::domain::ProductId>,
    },
    /// Check the connection and read the tenant's request thresholds
    Check,
}

async fn client(ctx: &Ctx) -> anyhow::Result<AutotaskClient> {
    Ok(AutotaskClient::new(&ctx.config.autotask, ctx.store.clone()).await?)
}

fn show(ctx: &Ctx, what: &str, list: &[Named]) {
    if ctx.json {
        println!("{}", json!(list));
        return;
    }
    println!("{what}:");
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|n| vec![n.id.to_string(), n.name.clone(), n.detail.clone()])
        .collect();
    table(&["id", "name", ""], &rows);
}

fn company_of(c: &Customer) -> anyhow::Result<AutotaskCompanyId> {
    match c.target {
        BillingTarget::Autotask { company_id } => Ok(company_id),
        _ => anyhow::bail!("customer {} ({}) is not an Autotask account", c.id, c.name),
    }
}

pub async fn run(ctx: &Ctx, cmd: AutotaskCmd) -> anyhow::Result<()> {
    let at = client(ctx).await?;
    match cmd {
        AutotaskCmd::Contracts { customer } => {
            let c = ctx.store.customer(customer).await?;
            show(
                ctx,
                &format!("contracts of {} (company {})", c.name, company_of(&c)?),
                &at.contracts_of(company_of(&c)?).await?,
            );
        }
        AutotaskCmd::Products {
            contract: Some(contract),
            ..
        } => show(
            ctx,
            &format!("products for contract {contract}"),
            &at.products_for_contract(contract).await?,
        ),
        AutotaskCmd::Products { contract: None, .. } => {
            show(ctx, "active products", &at.active_products().await?)
        }
        AutotaskCmd::MaterialCodes {
            product: Some(product),
            ..
        } => show(
            ctx,
            &format!("material codes for product {product}"),
            &at.material_codes_for_product(product).await?,
        ),
        AutotaskCmd::MaterialCodes { product: None, .. } => {
            show(ctx, "material codes", &at.material_codes().await?)
        }
        AutotaskCmd::Check => {
            let t = at.prepare_run().await?;
            say(
                ctx,
                &format!(
                    "Autotask reachable: {} of {} requests used this hour; rebilld (every process on this database together) may use {} per window",
                    t.current_timeframe_request_count.unwrap_or(0),
                    t.external_request_threshold.unwrap_or(0),
                    at.pace_limit().await
                ),
                json!({"used": t.current_timeframe_request_count, "threshold": t.external_request_threshold}),
            );
        }
    }
    Ok(())
}

/// `customer import --from autotask`.
pub async fn import_customers(
    ctx: &Ctx,
    companies: &[AutotaskCompanyId],
    all_active: bool,
) -> anyhow::Result<()> {
    let which = if all_active {
        CompanyImport::AllActive
    } else if companies.is_empty() {
        anyhow::bail!("give --company ID (repeatable) or --all-active");
    } else {
        CompanyImport::Ids(companies.to_vec())
    };
    let at = client(ctx).await?;
    let outcomes = import_companies(&at, &ctx.store, &ctx.actor, which).await?;
    let mut report = super::import::ImportReport::default();
    for (id, o) in outcomes {
        report.record(std::path::Path::new("autotask company"), id as u64, o);
    }
    report.finish(ctx, "customers from Autotask")
}

/// Checks contract, product and material code against Autotask before anything is saved.
pub async fn validate_coding(
    ctx: &Ctx,
    customer: &Customer,
    coding: &AutotaskCoding,
    period: Period,
) -> anyhow::Result<()> {
    let company = company_of(customer)?;
    let at = client(ctx).await?;
    let names = at
        .validate_coding(company, coding, period.first_day())
        .await?;
    eprintln!(
        "Autotask: contract {:?}, product {:?}, material code {:?}",
        names.contract, names.product, names.material_code
    );
    Ok(())
}
