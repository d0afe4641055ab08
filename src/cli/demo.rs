//! `rebilld demo`: the main job on the embedded default. A fresh SQLite file, the sample world
//! (`sandbox::world::SAMPLE`: customers that cover every rule) and its sample CDRs, local stand-ins
//! for Autotask and Xero on loopback, this period's billing run, and the reports.
//! `rebilld sandbox` serves the same stand-ins, with the sample Autotask company, for a staging
//! daemon.

use std::future::Future;
use std::path::PathBuf;

use chrono::Utc;
use clap::Args;

use crate::cdr::{ImportOptions, Mapping, import_file};
use crate::config::Config;
use crate::domain::outbox::RemoteSystem;
use crate::domain::{Customer, Period, XeroContactId};
use crate::pipeline::Pipeline;
use crate::sandbox::Sandboxes;
use crate::sandbox::world::{
    ContactBook, SAMPLE, SAMPLE_COMPANY, SampleDates, WorldError, seed_sample_company,
    write_sample_calls,
};
use crate::store::{Actor, Store};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo's database and files go (replaced on each run)
    #[arg(long, default_value = "rebill-demo")]
    pub dir: PathBuf,
    /// The period to bill [default: the current one, as the run on its 1st would]
    #[arg(long)]
    pub period: Option<Period>,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[arg(long, default_value_t = 18080)]
    pub xero_port: u16,
    #[arg(long, default_value_t = 18081)]
    pub autotask_port: u16,
}

/// The demo's Xero contacts, created from the customers through the Xero client, as
/// `customer link-xero --create` does.
struct ThroughClient(crate::xero::XeroClient);

impl ContactBook for ThroughClient {
    fn contact_for(
        &self,
        customer: &Customer,
    ) -> impl Future<Output = Result<XeroContactId, WorldError>> + Send {
        let draft = crate::xero::ContactDraft {
            name: customer.name.to_string(),
            contact_number: customer.external_ref.clone(),
            email: customer.email.as_ref().map(|e| e.to_string()),
        };
        async move {
            self.0
                .find_or_create_contact(&draft)
                .await
                .map(|(contact, _)| contact)
                .map_err(|e| WorldError::Contact {
                    customer: draft.name.clone(),
                    reason: e.to_string(),
                })
        }
    }
}

pub async fn demo(base: &Config, args: DemoArgs) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let mut config = base.clone();
    config.database.url = format!("sqlite://{}", args.dir.join("rebill.db").display());
    let sb = Sandboxes::start(0, 0).await?;
    sb.configure(&mut config);
    let store = Store::open(&config.database).await?;
    let tz = config.business.tz();
    let period = args
        .period
        .unwrap_or_else(|| Period::containing(Utc::now(), tz));
    println!(
        "rebill demo — billing period {period} (fees for {period} in advance, calls of {} in arrears)",
        period.previous()
    );
    println!(
        "database: {}   Xero stand-in: {}   Autotask stand-in: {}\n",
        config.database.url, sb.xero_url, sb.autotask_url
    );
    let contacts = ThroughClient(crate::xero::XeroClient::new(&config.xero, store.clone()).await?);
    let world = SAMPLE
        .seed(
            &store,
            &Actor::new("demo"),
            SampleDates::for_period(period),
            Some(&sb.autotask),
            &contacts,
        )
        .await?;

    let cdrs = args.dir.join(format!("cdrs-{}.csv", period.previous()));
    write_sample_calls(
        std::io::BufWriter::new(std::fs::File::create(&cdrs)?),
        period.previous(),
    )?;
    let r = import_file(
        &store,
        &Mapping::standard(),
        &cdrs,
        None,
        &ImportOptions {
            tz,
            country: config.cdr.country,
            batch_rows: config.cdr.batch_rows,
            progress: false,
        },
    )
    .await?;
    println!(
        "CDRs {}: {} rows, {} imported, {} skipped by rule (not answered), {} unmatched (unknown user), {} rejected\n",
        cdrs.display(),
        r.rows_read,
        r.imported,
        r.skipped_by_rule,
        r.unmatched,
        r.rejected
    );

    let pipeline = Pipeline::from_config(store.clone(), config.clone()).await?;
    let report = pipeline.run_period(period).await?;
    println!(
        "billing run {period}: {} invoice(s) recorded",
        report.invoices_created.len()
    );
    for inv in store.invoices(Some(period), None).await? {
        let lines = store.invoice_lines(inv.id).await?;
        match inv.destination {
            RemoteSystem::Xero => println!(
                "  {} {:<24} {:>9} → Xero invoice {} ({}), {}",
                inv.number,
                inv.customer_name,
                inv.total().to_string(),
                inv.xero_invoice_id
                    .as_deref()
                    .map(|i| &i[..8])
                    .unwrap_or("-"),
                inv.xero_status.as_deref().unwrap_or("-"),
                if inv.emailed_at.is_some() {
                    "emailed".to_string()
                } else {
                    inv.email_decision.clone()
                }
            ),
            RemoteSystem::Autotask => println!(
                "  {} {:<24} {:>9} → {} Autotask contract charge(s) on contract {} (never sent to Xero)",
                inv.number,
                inv.customer_name,
                inv.total().to_string(),
                lines
                    .iter()
                    .filter(|l| l.autotask_charge_id.is_some())
                    .count(),
                lines
                    .first()
                    .and_then(|l| l.autotask.map(|a| a.contract_id.get()))
                    .unwrap_or_default()
            ),
        }
        for l in &lines {
            println!("      {:<60} {:>9}", l.description, l.amount().to_string());
        }
    }
    for (c, why) in &report.skipped {
        let name = store.customer(*c).await?.name;
        println!("  skipped {name}: {why}");
    }
    println!(
        "\npushed: {} Xero invoice(s), {} email(s), {} Autotask charge(s); {} failed",
        report.push.xero_invoices_created.len(),
        report.push.emailed.len(),
        report.push.autotask_charges,
        report.push.failed.len()
    );
    println!(
        "stand-ins hold: {} Xero invoice(s), {} email(s), {} Autotask charge(s)\n",
        sb.xero.invoices().len(),
        sb.xero.emails().len(),
        sb.autotask.charges().len()
    );

    crate::cdr::summary::write(
        &store,
        world.service("sip-acme")?,
        period.previous(),
        tz,
        "table",
        &mut std::io::stdout(),
    )
    .await?;
    let rec = crate::pipeline::reconcile(&pipeline, period).await?;
    println!(
        "\nreconcile {period}: {} Xero invoice(s), {} Autotask charge(s) checked — {}",
        rec.invoices_checked,
        rec.charges_checked,
        if rec.is_clean() {
            "no differences".to_string()
        } else {
            format!("{} difference(s)", rec.differences.len())
        }
    );
    for d in &rec.differences {
        println!("  {} {} {}: {}", d.system, d.kind, d.invoice, d.detail);
    }
    println!(
        "\nlook around: REBILL_DATABASE__URL={} rebilld invoice list   (or status, invoice show RB-1000, audit)",
        config.database.url
    );
    store.close().await;
    if !rec.is_clean() {
        anyhow::bail!("the demo's reconcile found differences");
    }
    Ok(())
}

/// `rebilld sandbox`: serve the stand-ins until interrupted.
pub async fn sandbox(a: SandboxArgs) -> anyhow::Result<()> {
    let sb = Sandboxes::start(a.xero_port, a.autotask_port).await?;
    let coding = seed_sample_company(&sb.autotask)?;
    let (company, _) = SAMPLE_COMPANY;
    println!(
        "Xero stand-in:     {}  (tenant {})",
        sb.xero_url,
        crate::sandbox::xero::TENANT_ID
    );
    println!(
        "Autotask stand-in: {}  (company {company}: contract {}, product {}, material code {})",
        sb.autotask_url, coding.contract_id, coding.product_id, coding.material_code_id
    );
    println!("Point a staging daemon at them with:");
    println!(
        "  REBILL_XERO__API_URL={0}/api.xro/2.0 REBILL_XERO__IDENTITY_URL={0} REBILL_XERO__TOKEN_URL={0}/connect/token",
        sb.xero_url
    );
    println!(
        "  REBILL_AUTOTASK__ZONE_LOOKUP_URL={}/atservicesrest/v1.0/zoneInformation",
        sb.autotask_url
    );
    println!(
        "  (Autotask user {}, secret and integration code as in src/sandbox/autotask.rs)",
        crate::sandbox::autotask::USERNAME
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
