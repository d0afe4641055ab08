//! `rebilld demo`: the main job on the embedded default. A fresh SQLite file, sample customers that
//! cover every rule, sample CDRs, local stand-ins for Autotask and Xero on loopback, this period's
//! billing run, and the reports. `rebilld sandbox` serves the same stand-ins for a staging daemon.

use std::io::Write;
use std::path::PathBuf;

use chrono::{Duration, Utc};
use clap::Args;

use super::Ctx;
use crate::cdr::{ImportOptions, Mapping, import_file};
use crate::config::Config;
use crate::domain::rating::RatePlan;
use crate::domain::{
    AutotaskCoding, AutotaskCompanyId, BillingTarget, Email, ItemKind, Money, NewCustomer,
    NonEmpty, Period, Transition,
};
use crate::pipeline::Pipeline;
use crate::sandbox::Sandboxes;
use crate::store::{Actor, NewItem, ServiceImport, ServiceUserImport, Store};

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

fn service(
    r: &str,
    parent: Option<&str>,
    name: &str,
    price: &str,
    cost: &str,
    enabled: bool,
    users: &[(&str, &str)],
) -> ServiceImport {
    ServiceImport {
        external_ref: r.into(),
        parent_ref: parent.map(Into::into),
        name: NonEmpty::parse("name", name).expect("demo name"),
        kind: "voip".into(),
        rebill_enabled: enabled,
        monthly_price: Money::parse(price).expect("demo price"),
        monthly_cost: Money::parse(cost).expect("demo cost"),
        xero_account_code: None,
        xero_tax_type: None,
        xero_item_code: None,
        users: users
            .iter()
            .map(|(u, l)| ServiceUserImport {
                user_ref: u.to_string(),
                label: Some(l.to_string()),
            })
            .collect(),
    }
}

fn customer(
    r: &str,
    name: &str,
    enabled: bool,
    target: BillingTarget,
    email: Option<&str>,
) -> anyhow::Result<NewCustomer> {
    Ok(NewCustomer {
        external_ref: Some(r.into()),
        name: NonEmpty::parse("name", name)?,
        enabled,
        target,
        email: email.map(Email::parse).transpose()?,
        details: Default::default(),
        payment_terms_days: None,
    })
}

/// A month of sample calls for the demo users, deterministic.
fn write_cdrs(path: &std::path::Path, month: Period) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(
        w,
        "call_id,user,start,duration,destination,call_type,cost,direction,disposition"
    )?;
    let users = [
        "0299990001",
        "0299990002",
        "0299990011",
        "0299990021",
        "1300555123",
    ];
    let (start, _) = month.bounds(chrono_tz::UTC);
    let mut x: u64 = 42;
    for i in 0..240u64 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let user = users[(x >> 33) as usize % 4];
        let at = start
            + Duration::seconds(((x >> 20) % (u64::from(month.days()) * 86_400 - 3_600)) as i64);
        let (dest, kind, per_min) = match (x >> 40) % 3 {
            0 => ("0412345678", "mobile", 0.12),
            1 => ("0398765432", "national", 0.06),
            _ => ("0011441234567", "international", 0.45),
        };
        let secs = (x >> 45) % 600;
        let disposition = if i % 17 == 0 { "NO ANSWER" } else { "ANSWERED" };
        let cost = per_min * secs as f64 / 60.0;
        writeln!(
            w,
            "demo-{i},{user},{},{secs},{dest},{kind},{cost:.4},out,{disposition}",
            at.to_rfc3339()
        )?;
    }
    // An inbound call to a 1300 number (free unless the plan charges it), and one of an unknown user.
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

async fn seed(
    store: &Store,
    sb: &Sandboxes,
    config: &Config,
    period: Period,
) -> anyhow::Result<()> {
    let a = Actor::new("demo");
    for s in [
        service(
            "voip-providers",
            None,
            "VoIP Service Providers",
            "0",
            "0",
            true,
            &[],
        ),
        service(
            "sip-acme",
            Some("voip-providers"),
            "SIP Trunk 10 channels",
            "49.95",
            "31.50",
            true,
            &[("0299990001", "Reception"), ("0299990002", "Sales")],
        ),
        service(
            "pbx-beta",
            Some("voip-providers"),
            "Hosted PBX 5 seats",
            "75.00",
            "45.00",
            true,
            &[("0299990011", "Front counter")],
        ),
        service(
            "sip-echo-old",
            Some("voip-providers"),
            "SIP Trunk (old)",
            "29.95",
            "18.00",
            true,
            &[("0299990031", "Old line")],
        ),
        service(
            "sip-echo",
            Some("voip-providers"),
            "SIP Trunk 2 channels",
            "19.95",
            "12.00",
            true,
            &[("0299990041", "Dispatch")],
        ),
        service(
            "hns-auto",
            None,
            "Hosted Network Service",
            "120.00",
            "80.00",
            true,
            &[
                ("0299990021", "Head office"),
                ("1300555123", "Inbound 1300"),
            ],
        ),
        service(
            "nbn-100",
            None,
            "NBN 100 (not rebilled)",
            "89.00",
            "60.00",
            false,
            &[],
        ),
    ] {
        store.import_service(&a, &s).await?;
    }
    let id = |r: &str| {
        let store = store.clone();
        let r = r.to_string();
        async move { store.service_by_ref(&r).await.map(|s| s.map(|s| s.id)) }
    };
    let (contract, product, code) = sb.autotask.seed_company(174, "Autotask Corporation");
    let coding = AutotaskCoding {
        contract_id: contract.try_into()?,
        product_id: product.try_into()?,
        material_code_id: code.try_into()?,
    };
    let xero = BillingTarget::Xero { contact_id: None };
    let acme = store
        .add_customer(
            &a,
            &customer(
                "acme",
                "Acme Plumbing Pty Ltd",
                true,
                xero.clone(),
                Some("accounts@acme.example"),
            )?,
        )
        .await?;
    let beta = store
        .add_customer(
            &a,
            &customer(
                "beta",
                "Beta Cafe",
                true,
                xero.clone(),
                Some("owner@betacafe.example"),
            )?,
        )
        .await?;
    let auto = store
        .add_customer(
            &a,
            &customer(
                "autotask:174",
                "Autotask Corporation",
                true,
                BillingTarget::Autotask {
                    company_id: AutotaskCompanyId::new(174)?,
                },
                None,
            )?,
        )
        .await?;
    let delta = store
        .add_customer(
            &a,
            &customer(
                "delta",
                "Delta Dental",
                true,
                xero.clone(),
                Some("admin@delta.example"),
            )?,
        )
        .await?;
    let echo = store
        .add_customer(
            &a,
            &customer(
                "echo",
                "Echo Logistics",
                true,
                xero,
                Some("ap@echo.example"),
            )?,
        )
        .await?;
    let _ = delta;
    // Xero contacts, created from the customers as `customer link-xero --create` does.
    let client = crate::xero::XeroClient::new(&config.xero, store.clone()).await?;
    for c in [&acme, &beta, &echo] {
        let (contact, _) = client
            .find_or_create_contact(&crate::xero::ContactDraft {
                name: c.name.to_string(),
                contact_number: c.external_ref.clone(),
                email: c.email.as_ref().map(|e| e.to_string()),
            })
            .await?;
        store.link_xero(&a, c.id, contact).await?;
    }
    let long_ago = period.previous().previous().first_day();
    let mid = period.first_day() + Duration::days(15);
    let get = |o: Option<crate::domain::ServiceId>| {
        o.ok_or_else(|| anyhow::anyhow!("demo service missing"))
    };
    store
        .assign(&a, get(id("sip-acme").await?)?, acme.id, long_ago, None)
        .await?;
    store
        .assign(&a, get(id("pbx-beta").await?)?, beta.id, long_ago, None)
        .await?;
    store
        .assign(
            &a,
            get(id("hns-auto").await?)?,
            auto.id,
            long_ago,
            Some(coding),
        )
        .await?;
    let old = get(id("sip-echo-old").await?)?;
    store.assign(&a, old, echo.id, long_ago, None).await?;
    store
        .transition(&a, old, Transition::Exclude, long_ago)
        .await?;
    store
        .assign(&a, get(id("sip-echo").await?)?, echo.id, mid, None)
        .await?;
    let item = |customer,
                kind,
                description: &str,
                amount: &str,
                starts_on,
                autotask|
     -> anyhow::Result<NewItem> {
        Ok(NewItem {
            customer_id: customer,
            kind,
            description: NonEmpty::parse("description", description)?,
            amount: Money::parse(amount)?,
            starts_on,
            autotask,
        })
    };
    store
        .add_item(
            &a,
            &item(
                acme.id,
                ItemKind::Once,
                "Handset installation (2 × Yealink T54W)",
                "150.00",
                None,
                None,
            )?,
        )
        .await?;
    store
        .add_item(
            &a,
            &item(
                acme.id,
                ItemKind::Recurring,
                "After-hours support",
                "30.00",
                Some(mid),
                None,
            )?,
        )
        .await?;
    store
        .add_item(
            &a,
            &item(
                auto.id,
                ItemKind::Recurring,
                "Managed firewall",
                "65.00",
                Some(long_ago),
                Some(coding),
            )?,
        )
        .await?;
    store
        .add_item(
            &a,
            &item(
                auto.id,
                ItemKind::Once,
                "Site survey",
                "220.00",
                None,
                Some(coding),
            )?,
        )
        .await?;
    store.set_customer_enabled(&a, beta.id, false).await?;
    let per_minute: RatePlan = toml::from_str(
        "kind = \"per_minute\"\n[rates.mobile]\nper_minute = \"0.18\"\nfirst_secs = 30\nnext_secs = 1\n\
         [rates.national]\nper_minute = \"0.10\"\nfirst_secs = 60\nnext_secs = 60\nflagfall = \"0.05\"\n\
         [rates.international]\nper_minute = \"0.65\"\nfirst_secs = 30\nnext_secs = 1\nminimum = \"0.20\"\n",
    )?;
    let cost_plus: RatePlan = toml::from_str(
        "kind = \"cost_plus\"\nmultiplier = \"1.3\"\naddon_per_minute = \"0.01\"\n",
    )?;
    store
        .set_rate_plan(&a, get(id("sip-acme").await?)?, &per_minute)
        .await?;
    store
        .set_rate_plan(&a, get(id("pbx-beta").await?)?, &cost_plus)
        .await?;
    store
        .set_rate_plan(&a, get(id("hns-auto").await?)?, &cost_plus)
        .await?;
    Ok(())
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
    seed(&store, &sb, &config, period).await?;

    let cdrs = args.dir.join(format!("cdrs-{}.csv", period.previous()));
    write_cdrs(&cdrs, period.previous())?;
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
        match inv.destination.as_str() {
            "xero" => println!(
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
            _ => println!(
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

    if let Some(sip) = store.service_by_ref("sip-acme").await? {
        let mut out = std::io::stdout();
        crate::cdr::summary::write(&store, sip.id, period.previous(), tz, "table", &mut out)
            .await?;
    }
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
pub async fn sandbox(_ctx: &Ctx, a: SandboxArgs) -> anyhow::Result<()> {
    let sb = Sandboxes::start(a.xero_port, a.autotask_port).await?;
    let (contract, product, code) = sb.autotask.seed_company(174, "Autotask Corporation");
    println!(
        "Xero stand-in:     {}  (tenant {})",
        sb.xero_url,
        crate::sandbox::xero::TENANT_ID
    );
    println!(
        "Autotask stand-in: {}  (company 174: contract {contract}, product {product}, material code {code})",
        sb.autotask_url
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
