//! `rebilld customer …`: add, import, list, show, enable, disable, link to Xero or Autotask.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use super::import::{Fields, ImportReport, Record, read_records};
use super::output::{say, table};
use crate::domain::customer::BusinessDetails;
use crate::domain::{
    AutotaskCompanyId, BillingTarget, Customer, CustomerId, Email, NewCustomer, NonEmpty,
    XeroContactId,
};

#[derive(Debug, Subcommand)]
pub enum CustomerCmd {
    /// Add a customer by hand
    Add(Box<AddArgs>),
    /// Import customers from a CSV or JSON file (or from Autotask), idempotently by external reference
    Import(ImportArgs),
    /// List customers
    List,
    /// Show one customer with its services and items
    Show { id: CustomerId },
    /// Enable a customer (it can be given new services; its invoices are emailed)
    Enable { id: CustomerId },
    /// Disable a customer: it keeps its services and is still invoiced, but nothing is emailed
    Disable { id: CustomerId },
    /// Link a customer to a Xero contact
    LinkXero(LinkXeroArgs),
    /// Link a customer to an Autotask company: its charges go to Autotask, never to Xero
    LinkAutotask {
        id: CustomerId,
        #[arg(long)]
        company: AutotaskCompanyId,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    pub name: String,
    /// Your own key for the customer (makes later imports update it instead of adding it again)
    #[arg(long)]
    pub external_ref: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long)]
    pub address: Option<String>,
    #[arg(long)]
    pub city: Option<String>,
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub postcode: Option<String>,
    #[arg(long)]
    pub country: Option<String>,
    #[arg(long)]
    pub tax_number: Option<String>,
    /// Overrides invoices.payment_terms_days for this customer
    #[arg(long)]
    pub payment_terms_days: Option<u32>,
    /// Bill through Autotask: the company's id
    #[arg(long, conflicts_with = "xero_contact_id")]
    pub autotask_company: Option<AutotaskCompanyId>,
    /// Bill through Xero: the contact's ContactID (can be linked later)
    #[arg(long)]
    pub xero_contact_id: Option<String>,
    /// Add the customer disabled
    #[arg(long)]
    pub disabled: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A CSV file (header row) or a JSON array of customer objects
    #[arg(required_unless_present = "from")]
    pub file: Option<PathBuf>,
    /// Import from a system instead of a file
    #[arg(long, value_parser = ["autotask"])]
    pub from: Option<String>,
    /// With --from autotask: these company ids
    #[arg(long = "company")]
    pub companies: Vec<AutotaskCompanyId>,
    /// With --from autotask: every active company
    #[arg(long)]
    pub all_active: bool,
    /// Ignore columns that are not customer fields (without it, an unknown column refuses the file)
    #[arg(long)]
    pub allow_extra_columns: bool,
}

/// The fields of a customer import file (CSV columns or JSON keys).
pub const CUSTOMER_FIELDS: [&str; 15] = [
    "external_ref",
    "name",
    "enabled",
    "target",
    "xero_contact_id",
    "autotask_company_id",
    "email",
    "phone",
    "address",
    "city",
    "state",
    "postcode",
    "country",
    "tax_number",
    "payment_terms_days",
];

/// Exactly one of the three ways to find the contact. The group is declared on the command, not
/// as the struct's own group: a struct-level `#[group]` also swallows the positional ID, which
/// then "cannot be used with" every flag.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).multiple(false).args(["contact_id", "contact_number", "create"])))]
pub struct LinkXeroArgs {
    pub id: CustomerId,
    /// The contact's ContactID
    #[arg(long)]
    pub contact_id: Option<String>,
    /// Find the contact by its ContactNumber
    #[arg(long)]
    pub contact_number: Option<String>,
    /// Create the contact from the customer (an existing contact with the same name is linked instead)
    #[arg(long)]
    pub create: bool,
}

pub async fn run(ctx: &Ctx, cmd: CustomerCmd) -> anyhow::Result<()> {
    match cmd {
        CustomerCmd::Add(a) => add(ctx, *a).await,
        CustomerCmd::Import(a) => import(ctx, a).await,
        CustomerCmd::List => list(ctx).await,
        CustomerCmd::Show { id } => show(ctx, id).await,
        CustomerCmd::Enable { id } => set_enabled(ctx, id, true).await,
        CustomerCmd::Disable { id } => set_enabled(ctx, id, false).await,
        CustomerCmd::LinkXero(a) => link_xero(ctx, a).await,
        CustomerCmd::LinkAutotask { id, company } => {
            let customer = ctx.store.customer(id).await?;
            let at = crate::autotask::AutotaskClient::new(&ctx.config.autotask, ctx.store.clone())
                .await?;
            let (name, active) = at.check_company(company).await.with_context(|| {
                format!(
                    "customer {} ({}) was not linked to Autotask company {company}",
                    customer.id, customer.name
                )
            })?;
            if !active {
                eprintln!("note: Autotask company {company} ({name}) is inactive");
            }
            let c = ctx.store.link_autotask(&ctx.actor, id, company).await?;
            say(
                ctx,
                &format!(
                    "customer {} ({}) is now billed through Autotask company {company}",
                    c.id, c.name
                ),
                json!(c),
            );
            Ok(())
        }
    }
}

async fn add(ctx: &Ctx, a: AddArgs) -> anyhow::Result<()> {
    let target = match (a.autotask_company, a.xero_contact_id.as_deref()) {
        (Some(company_id), _) => BillingTarget::Autotask { company_id },
        (None, Some(g)) => BillingTarget::Xero {
            contact_id: Some(XeroContactId::parse(g)?),
        },
        (None, None) => BillingTarget::Xero { contact_id: None },
    };
    let new = NewCustomer {
        external_ref: a.external_ref.filter(|r| !r.trim().is_empty()),
        name: NonEmpty::parse("customer name", &a.name)?,
        enabled: !a.disabled,
        target,
        email: a.email.as_deref().map(Email::parse).transpose()?,
        details: BusinessDetails {
            phone: a.phone,
            address: a.address,
            city: a.city,
            state: a.state,
            postcode: a.postcode,
            country: a.country,
            tax_number: a.tax_number,
        },
        payment_terms_days: a.payment_terms_days.map(check_terms).transpose()?,
    };
    let c = ctx.store.add_customer(&ctx.actor, &new).await?;
    say(
        ctx,
        &format!("added customer {} ({}){}", c.id, c.name, email_flag(&c)),
        json!(c),
    );
    Ok(())
}

fn check_terms(days: u32) -> anyhow::Result<u32> {
    if days > 365 {
        bail!("payment terms of {days} days: must be 0–365");
    }
    Ok(days)
}

/// Parses one import record into a customer, or says what is wrong with it.
pub fn customer_from_record(r: &Record) -> Result<NewCustomer, String> {
    let f = Fields(&r.fields);
    if let Some(e) = f.error() {
        return Err(e);
    }
    let name = NonEmpty::parse("name", &f.required("name")?).map_err(|e| e.to_string())?;
    let target = match f
        .str("target")
        .unwrap_or_else(|| "xero".into())
        .to_ascii_lowercase()
        .as_str()
    {
        "autotask" => {
            let id = f.required("autotask_company_id")?;
            BillingTarget::Autotask {
                company_id: id
                    .parse()
                    .map_err(|e: crate::domain::DomainError| e.to_string())?,
            }
        }
        "xero" => BillingTarget::Xero {
            contact_id: f
                .str("xero_contact_id")
                .map(|g| XeroContactId::parse(&g))
                .transpose()
                .map_err(|e| e.to_string())?,
        },
        other => return Err(format!("`target`: {other:?} is neither xero nor autotask")),
    };
    let terms = match f.str("payment_terms_days") {
        Some(s) => Some(
            s.parse::<u32>()
                .ok()
                .filter(|d| *d <= 365)
                .ok_or_else(|| format!("`payment_terms_days`: {s:?} is not 0–365"))?,
        ),
        None => None,
    };
    Ok(NewCustomer {
        external_ref: Some(f.required("external_ref")?),
        name,
        enabled: f.bool("enabled", true)?,
        target,
        email: f
            .str("email")
            .map(|e| Email::parse(&e))
            .transpose()
            .map_err(|e| e.to_string())?,
        details: BusinessDetails {
            phone: f.str("phone"),
            address: f.str("address"),
            city: f.str("city"),
            state: f.str("state"),
            postcode: f.str("postcode"),
            country: f.str("country"),
            tax_number: f.str("tax_number"),
        },
        payment_terms_days: terms,
    })
}

async fn import(ctx: &Ctx, a: ImportArgs) -> anyhow::Result<()> {
    if a.from.is_some() {
        return super::autotask::import_customers(ctx, &a.companies, a.all_active).await;
    }
    let path = a.file.context("give a FILE or --from autotask")?;
    let records = read_records(&path, &CUSTOMER_FIELDS, a.allow_extra_columns)?;
    let mut report = ImportReport::default();
    for r in &records {
        let outcome = match customer_from_record(r) {
            Ok(c) => ctx
                .store
                .upsert_customer(&ctx.actor, &c)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        report.record(&path, r.line, outcome.map(|(_, u)| u));
    }
    report.finish(ctx, "customers")
}

fn email_flag(c: &Customer) -> &'static str {
    if c.email.is_none() && !c.target.is_autotask() {
        " — no email address: its invoices cannot be emailed"
    } else {
        ""
    }
}

fn target_text(c: &Customer) -> String {
    match &c.target {
        BillingTarget::Xero {
            contact_id: Some(id),
        } => format!("xero {id}"),
        BillingTarget::Xero { contact_id: None } => "xero (not linked)".into(),
        BillingTarget::Autotask { company_id } => format!("autotask company {company_id}"),
    }
}

async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let customers = ctx.store.customers().await?;
    if ctx.json {
        println!("{}", json!(customers));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = customers
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.name.to_string(),
                if c.enabled { "enabled" } else { "disabled" }.into(),
                target_text(c),
                c.email
                    .as_ref()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "NO EMAIL".into()),
            ]
        })
        .collect();
    table(&["id", "name", "status", "billed through", "email"], &rows);
    Ok(())
}

async fn show(ctx: &Ctx, id: CustomerId) -> anyhow::Result<()> {
    let c = ctx.store.customer(id).await?;
    let services = ctx.store.live_assignments(Some(id)).await?;
    let items = ctx.store.items(Some(id)).await?;
    if ctx.json {
        println!(
            "{}",
            json!({"customer": c, "services": services, "items": items})
        );
        return Ok(());
    }
    println!("customer {} — {}", c.id, c.name);
    println!(
        "  status:         {}",
        if c.enabled {
            "enabled"
        } else {
            "disabled (invoiced, never emailed)"
        }
    );
    println!("  billed through: {}", target_text(&c));
    println!(
        "  email:          {}",
        c.email
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "none — invoices cannot be emailed".into())
    );
    if let Some(d) = c.payment_terms_days {
        println!("  payment terms:  {d} days from the 1st");
    }
    println!("\nservices:");
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|a| {
            vec![
                a.service_id.to_string(),
                a.service_name.clone(),
                a.state().to_string(),
                a.starts_on.to_string(),
            ]
        })
        .collect();
    table(&["service", "name", "state", "since"], &rows);
    println!("\nitems:");
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.kind.as_str().into(),
                i.description.to_string(),
                i.amount.to_string(),
                i.status.label().into(),
            ]
        })
        .collect();
    table(&["item", "kind", "description", "amount", "status"], &rows);
    Ok(())
}

async fn set_enabled(ctx: &Ctx, id: CustomerId, enabled: bool) -> anyhow::Result<()> {
    let c = ctx
        .store
        .set_customer_enabled(&ctx.actor, id, enabled)
        .await?;
    let text = if enabled {
        format!("customer {} ({}) is enabled", c.id, c.name)
    } else {
        format!(
            "customer {} ({}) is disabled: it keeps its services and is still invoiced, but nothing is emailed",
            c.id, c.name
        )
    };
    say(ctx, &text, json!(c));
    Ok(())
}

async fn link_xero(ctx: &Ctx, a: LinkXeroArgs) -> anyhow::Result<()> {
    let contact = match (a.contact_id, a.contact_number, a.create) {
        (Some(g), _, _) => XeroContactId::parse(&g)?,
        (None, number, create) => {
            super::xero::resolve_contact(ctx, a.id, number.as_deref(), create).await?
        }
    };
    let c = ctx.store.link_xero(&ctx.actor, a.id, contact).await?;
    say(
        ctx,
        &format!(
            "customer {} ({}) is linked to Xero contact {}",
            c.id,
            c.name,
            target_text(&c)
        ),
        json!(c),
    );
    Ok(())
}
