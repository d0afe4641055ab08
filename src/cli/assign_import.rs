//! `rebilld service assign --from FILE`: many assignments from one CSV (or JSON) file, all or
//! none. Every row is checked first — the same rules as `service assign` (the store's
//! `check_assignment`), and for Autotask accounts the contract, product and material code against
//! Autotask, each read once however many rows name it (`autotask::CodingCheck`) — and only when
//! every row passes are they written, in one transaction. A bad row is reported with the file and
//! its line, and nothing is assigned.

use std::collections::HashMap;
use std::path::Path;

use anyhow::bail;
use chrono::NaiveDate;
use serde_json::json;

use super::Ctx;
use super::import::{Fields, Record, read_records};
use super::output::say;
use crate::autotask::{AutotaskClient, CodingCheck};
use crate::domain::{
    AutotaskCoding, BillingTarget, ContractId, Customer, CustomerId, MaterialCodeId, Period,
    ProductId, ServiceId,
};
use crate::store::NewAssignment;

/// The columns of an assignment file: the service and the customer (each by external reference,
/// or by id), the first day billed, and for Autotask accounts the three choices.
pub const ASSIGN_FIELDS: [&str; 6] = [
    "service",
    "customer",
    "starts_on",
    "contract",
    "product",
    "material_code",
];

/// One row, read: the assignment and its customer.
struct Row {
    line: u64,
    assignment: NewAssignment,
    customer: Customer,
}

pub async fn run(ctx: &Ctx, file: &Path, default_starts_on: NaiveDate) -> anyhow::Result<()> {
    let records = read_records(file, &ASSIGN_FIELDS, false)?;
    if records.is_empty() {
        bail!(
            "{}: no assignments in the file; nothing was assigned",
            file.display()
        );
    }
    let mut refused: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for r in &records {
        match read_row(ctx, r, default_starts_on).await {
            Ok(row) => rows.push(row),
            Err(e) => refused.push(format!("{}:{}: {e}", file.display(), r.line)),
        }
    }
    // A service named on two rows: which customer is meant is not ours to guess.
    let mut lines_of: HashMap<ServiceId, Vec<u64>> = HashMap::new();
    for row in &rows {
        lines_of
            .entry(row.assignment.service_id)
            .or_default()
            .push(row.line);
    }
    let mut checked = Vec::new();
    for row in rows {
        let lines = &lines_of[&row.assignment.service_id];
        if lines.len() > 1 {
            let others: Vec<String> = lines
                .iter()
                .filter(|l| **l != row.line)
                .map(u64::to_string)
                .collect();
            refused.push(format!(
                "{}:{}: service {} is also on line {}: one row per service",
                file.display(),
                row.line,
                row.assignment.service_id,
                others.join(", ")
            ));
            continue;
        }
        match ctx.store.check_assignment(&row.assignment).await {
            Ok(()) => checked.push(row),
            Err(e) => refused.push(format!("{}:{}: {e}", file.display(), row.line)),
        }
    }
    // Autotask's choices last, once the rows are otherwise good: one read per contract, product
    // and material code the file names.
    if checked.iter().any(|r| r.assignment.coding.is_some()) {
        let client = AutotaskClient::new(&ctx.config.autotask, ctx.store.clone()).await?;
        let mut check = CodingCheck::new(&client);
        for row in &checked {
            let (Some(coding), BillingTarget::Autotask { company_id }) =
                (row.assignment.coding, &row.customer.target)
            else {
                continue;
            };
            let on = Period::of_date(row.assignment.starts_on).first_day();
            match check.check(*company_id, &coding, on).await {
                Ok(_) => {}
                Err(crate::autotask::AutotaskError::InvalidCoding(why)) => refused.push(format!(
                    "{}:{}: service {} for customer {} ({}): {why}",
                    file.display(),
                    row.line,
                    row.assignment.service_id,
                    row.customer.id,
                    row.customer.name
                )),
                // Autotask could not answer: nothing can be judged, nothing is written.
                Err(other) => return Err(other.into()),
            }
        }
    }
    if !refused.is_empty() {
        refused.sort_by_key(|r| line_of(r));
        for r in &refused {
            eprintln!("refused: {r}");
        }
        bail!(
            "{} of {} row(s) refused; nothing was assigned (fix them and import the file again)",
            refused.len(),
            records.len()
        );
    }
    let all: Vec<NewAssignment> = checked.iter().map(|r| r.assignment).collect();
    let ids = ctx.store.assign_all(&ctx.actor, &all).await?;
    say(
        ctx,
        &format!("{} service(s) assigned from {}", ids.len(), file.display()),
        json!({"assigned": ids.len(), "assignments": ids}),
    );
    Ok(())
}

/// The line number in a "file:line: …" refusal, to list them in file order.
fn line_of(refusal: &str) -> u64 {
    refusal
        .split(": ")
        .next()
        .and_then(|p| p.rsplit(':').next())
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

async fn read_row(ctx: &Ctx, r: &Record, default_starts_on: NaiveDate) -> anyhow::Result<Row> {
    let f = Fields(&r.fields);
    if let Some(e) = f.error() {
        bail!(e);
    }
    let service = f.required("service").map_err(anyhow::Error::msg)?;
    let service_id = match ctx.store.service_by_ref(&service).await? {
        Some(s) => s.id,
        None => match service
            .parse::<i64>()
            .ok()
            .and_then(|n| ServiceId::new(n).ok())
        {
            Some(id) => ctx.store.service(id).await?.id,
            None => bail!("no service has the external reference or id {service:?}"),
        },
    };
    let customer = f.required("customer").map_err(anyhow::Error::msg)?;
    let customer = match ctx.store.customer_by_ref(&customer).await? {
        Some(c) => c,
        None => match customer
            .parse::<i64>()
            .ok()
            .and_then(|n| CustomerId::new(n).ok())
        {
            Some(id) => ctx.store.customer(id).await?,
            None => bail!("no customer has the external reference or id {customer:?}"),
        },
    };
    let starts_on = match f.str("starts_on") {
        Some(s) => s
            .parse::<NaiveDate>()
            .map_err(|e| anyhow::anyhow!("`starts_on`: {s:?} is not a date (YYYY-MM-DD): {e}"))?,
        None => default_starts_on,
    };
    let id = |key: &str| -> anyhow::Result<Option<i64>> {
        f.str(key)
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| anyhow::anyhow!("`{key}`: {s:?} is not an Autotask id"))
            })
            .transpose()
    };
    let coding = match (id("contract")?, id("product")?, id("material_code")?) {
        (None, None, None) => None,
        (Some(c), Some(p), Some(m)) => Some(AutotaskCoding {
            contract_id: ContractId::new(c).map_err(|e| anyhow::anyhow!("`contract`: {e}"))?,
            product_id: ProductId::new(p).map_err(|e| anyhow::anyhow!("`product`: {e}"))?,
            material_code_id: MaterialCodeId::new(m)
                .map_err(|e| anyhow::anyhow!("`material_code`: {e}"))?,
        }),
        _ => bail!("give all three of `contract`, `product` and `material_code`, or none"),
    };
    Ok(Row {
        line: r.line,
        assignment: NewAssignment {
            service_id,
            customer_id: customer.id,
            starts_on,
            coding,
        },
        customer,
    })
}
