//! The sample world's data: one catalogue, [`SAMPLE`], and its month of calls.

use chrono::Duration;
use rust_decimal::Decimal;
use std::io::Write;

use super::{
    Catalogue, SAMPLE_COMPANY, SampleAccount, SampleAssignment, SampleCustomer, SampleDates,
    SampleDay, SampleItem, SampleRatePlan, SampleService, SampleUser, WorldError,
};
use crate::domain::{AutotaskCoding, Customer, ItemKind, Period, ServiceId};
use crate::sandbox::autotask::AutotaskSandbox;
use crate::sandbox::xero::XeroSandbox;
use crate::store::{Actor, Store};

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

/// The sample world, one customer per rule of a billing run; `rebilld demo` bills it and the
/// integration tests assert its figures.
///
/// - **Acme Plumbing** (Xero): a SIP trunk of 49.95 with two numbers, rated per minute; a once-off
///   handset installation of 150.00; an old hosted PBX of 99.00 in the trash can, so left out.
/// - **Beta Cafe** (Xero, disabled): a trunk of 30.00 with cost-plus calls: invoiced, never emailed.
/// - **Autotask Corporation** ([`SAMPLE_COMPANY`]): a hosted network service of 120.00 with a 1300
///   number (inbound calls free), cost-plus calls, and a recurring item of 30.00 from mid-month:
///   contract charges.
/// - **Delta Dental** (Xero, no contact): nothing billable, so skipped.
/// - A service not enabled for rebilling, held by no one.
///
/// Its calls: [`write_sample_calls`].
pub const SAMPLE: Catalogue<'static> = Catalogue {
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
            "pbx-acme-old",
            None,
            "Hosted PBX (old)",
            ("99.00", "60.00"),
            &[user("0299990004", "Old line")],
        ),
        voip(
            "sip-beta",
            PROVIDERS,
            "SIP Trunk 2 channels",
            ("30.00", "18.00"),
            &[user("0299990003", "Front counter")],
        ),
        voip(
            "hns-auto",
            None,
            "Hosted Network Service",
            ("120.00", "80.00"),
            &[
                user("0299990005", "Head office"),
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
    ],
    assignments: &[
        assign("sip-acme", "acme", SampleDay::Since),
        SampleAssignment {
            excluded: Some(SampleDay::Mid),
            ..assign("pbx-acme-old", "acme", SampleDay::Since)
        },
        assign("sip-beta", "beta", SampleDay::Since),
        assign("hns-auto", "autotask:174", SampleDay::Since),
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
            customer: "autotask:174",
            kind: ItemKind::Recurring,
            description: "After-hours support",
            amount: "30.00",
            starts: Some(SampleDay::Mid),
        },
    ],
    rate_plans: &[
        SampleRatePlan {
            service: "sip-acme",
            toml: PER_MINUTE,
        },
        SampleRatePlan {
            service: "sip-beta",
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

/// Writes a month of the sample's calls as a CDR file in the standard mapping, deterministically:
/// 240 outbound calls of the sample's numbers (every 17th not answered), an inbound call to the 1300
/// number (free unless the plan charges it) and one call of a number no service has.
pub fn write_sample_calls(mut w: impl Write, month: Period) -> std::io::Result<()> {
    writeln!(
        w,
        "call_id,user,start,duration,destination,call_type,cost,direction,disposition"
    )?;
    let users = ["0299990001", "0299990002", "0299990003", "0299990005"];
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

/// [`SAMPLE`] seeded, by role: the names the tests use.
#[derive(Debug, Clone)]
pub struct Sample {
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

impl Sample {
    /// Seeds [`SAMPLE`] with its contacts (added to the Xero stand-in directly) and its company on
    /// the Autotask stand-in.
    pub async fn seed(
        store: &Store,
        actor: &Actor,
        dates: SampleDates,
        xero: &XeroSandbox,
        autotask: &AutotaskSandbox,
    ) -> Result<Sample, WorldError> {
        let w = SAMPLE
            .seed(store, actor, dates, Some(autotask), xero)
            .await?;
        Ok(Sample {
            enabled: w.customer("acme")?.clone(),
            disabled: w.customer("beta")?.clone(),
            autotask: w.customer("autotask:174")?.clone(),
            idle: w.customer("delta")?.clone(),
            sip: w.service("sip-acme")?,
            trunk: w.service("sip-beta")?,
            excluded: w.service("pbx-acme-old")?,
            at_service: w.service("hns-auto")?,
            coding: w.coding().ok_or_else(|| WorldError::NoAutotask {
                customer: SAMPLE_COMPANY.1.to_string(),
            })?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn the_sample_catalogue_parses_and_names_only_what_it_holds() {
        SAMPLE.check().unwrap();
    }

    #[test]
    fn a_catalogue_naming_a_service_it_does_not_hold_is_caught() {
        let broken = Catalogue {
            assignments: &[assign("no-such-service", "acme", SampleDay::Since)],
            ..SAMPLE
        };
        assert!(matches!(
            broken.check(),
            Err(WorldError::Unknown { what: "service", reference }) if reference == "no-such-service"
        ));
    }

    #[test]
    fn the_sample_dates_put_mid_month_on_the_16th_and_since_two_months_back() {
        let d = SampleDates::for_period(Period::parse("2026-03").unwrap());
        assert_eq!(d.since, "2026-01-01".parse::<NaiveDate>().unwrap());
        assert_eq!(d.mid, "2026-03-16".parse::<NaiveDate>().unwrap());
    }

    #[test]
    fn the_sample_calls_are_the_same_every_time_with_exact_costs() {
        let month = Period::parse("2026-10").unwrap();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_sample_calls(&mut a, month).unwrap();
        write_sample_calls(&mut b, month).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 240 + 2);
        // The figures `rebilld demo` prints rest on these calls: the first two, pinned.
        assert_eq!(
            lines[1..3],
            [
                "demo-0,0299990003,2026-10-15T17:46:38+00:00,316,0412345678,mobile,0.6320,out,NO ANSWER",
                "demo-1,0299990003,2026-10-07T05:31:00+00:00,7,0011441234567,international,0.0525,out,ANSWERED",
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
