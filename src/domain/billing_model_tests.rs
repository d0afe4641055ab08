//! A model-based test of "who owes what" over six months: random sequences of assignments (late,
//! back-dated, reassigned mid-month to another customer), unassignments with end dates, calls made
//! in past months and imported late, price changes of services and recurring items with effective
//! dates (back-dated, mid-month, ahead), runs and resyncs. The system under test is
//! `compute_invoices` with the recording a run and a resync do (`diff_lines`); after ops resync
//! every month, what every document bills must equal what a plain oracle written here says each
//! customer owes — day by day and call by call — and a second resync must change nothing.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use proptest::prelude::*;
use rust_decimal::{Decimal, RoundingStrategy};

use super::*;
use crate::domain::customer::BusinessDetails;
use crate::domain::invoice::{StoredLine, diff_lines};
use crate::domain::owed::{Charge, PriceChange, PriceHistory};
use crate::domain::{AssignmentState, Email, InvoiceId, LineId, NonEmpty};

const CUSTOMERS: i64 = 3;
const PRICES: [&str; 3] = ["30.00", "49.95", "17.33"];
/// Every customer has one recurring item (its id is the customer's), active from the first month.
const ITEM_PRICE: &str = "25.00";
/// The prices a price change picks from.
const NEW_PRICES: [&str; 4] = ["35.00", "12.34", "0.00", "99.99"];
const MONTHS: usize = 6;

fn first_month() -> Period {
    Period::parse("2026-11").unwrap()
}

fn month(k: usize) -> Period {
    (0..k).fold(first_month(), |p, _| p.next())
}

#[derive(Debug, Clone)]
enum Op {
    /// Assign `service` to `customer` from `day` days after the 1st of the previous month.
    Assign {
        service: usize,
        customer: i64,
        day: i64,
    },
    /// Unassign `service`, ending `day` days after the 1st of the previous month.
    Unassign { service: usize, day: i64 },
    /// A call on `service`, `day` days after the 1st of the month before the previous one.
    Call {
        service: usize,
        day: i64,
        micros: i64,
    },
    /// Ops resync the period `back` months before the one about to run.
    Resync { back: usize },
    /// `service`'s price is `NEW_PRICES[price]` from `day` days after the 1st of the previous
    /// month.
    Price {
        service: usize,
        day: i64,
        price: usize,
    },
    /// `customer`'s recurring item costs `NEW_PRICES[price]` from `day` days after the 1st of the
    /// previous month.
    ItemPrice {
        customer: i64,
        day: i64,
        price: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..=CUSTOMERS, 0..60i64).prop_map(|(service, customer, day)| Op::Assign {
            service,
            customer,
            day
        }),
        (0..3usize, 0..60i64).prop_map(|(service, day)| Op::Unassign { service, day }),
        (0..3usize, 0..59i64, 1..5_000_000i64).prop_map(|(service, day, micros)| Op::Call {
            service,
            day,
            micros
        }),
        (1..4usize).prop_map(|back| Op::Resync { back }),
        (0..3usize, 0..60i64, 0..NEW_PRICES.len()).prop_map(|(service, day, price)| Op::Price {
            service,
            day,
            price
        }),
        (1..=CUSTOMERS, 0..60i64, 0..NEW_PRICES.len()).prop_map(|(customer, day, price)| {
            Op::ItemPrice {
                customer,
                day,
                price,
            }
        }),
    ]
}

/// The world as ops have entered it so far, and the documents made from it.
#[derive(Default)]
struct Model {
    holdings: Vec<Holding>,
    /// (service index, day, price in micro-units)
    calls: Vec<(usize, NaiveDate, i64)>,
    /// Price changes as entered: (service index, first day, index in NEW_PRICES).
    prices: Vec<(usize, NaiveDate, usize)>,
    /// Price changes of the customers' recurring items: (customer, first day, index in NEW_PRICES).
    item_prices: Vec<(i64, NaiveDate, usize)>,
    /// The recorded invoices: lines per customer and period.
    docs: BTreeMap<(CustomerId, Period), Vec<StoredLine>>,
    next_line: i64,
    billing_start: Option<Period>,
}

fn sid(i: usize) -> ServiceId {
    ServiceId::new(i as i64 + 1).unwrap()
}

fn cid(i: i64) -> CustomerId {
    CustomerId::new(i).unwrap()
}

impl Model {
    fn apply(&mut self, op: &Op, k: usize) {
        let base = month(k).previous().first_day();
        let latest = month(k).last_day();
        match *op {
            Op::Assign {
                service,
                customer,
                day,
            } => {
                let held = self
                    .holdings
                    .iter()
                    .any(|h| h.service_id == sid(service) && h.ends_on.is_none());
                let free_from = self
                    .holdings
                    .iter()
                    .filter(|h| h.service_id == sid(service))
                    .filter_map(|h| h.ends_on)
                    .max();
                let start = (base + Duration::days(day)).min(latest);
                if held || free_from.is_some_and(|f| start < f) {
                    return;
                }
                self.holdings.push(Holding {
                    service_id: sid(service),
                    customer_id: cid(customer),
                    state: AssignmentState::Assigned,
                    starts_on: start,
                    ends_on: None,
                    restored_on: None,
                    autotask: None,
                });
            }
            Op::Unassign { service, day } => {
                let end = (base + Duration::days(day)).min(latest + Duration::days(1));
                if let Some(h) = self
                    .holdings
                    .iter_mut()
                    .find(|h| h.service_id == sid(service) && h.ends_on.is_none())
                    && end > h.starts_on
                {
                    h.ends_on = Some(end);
                    h.state = AssignmentState::Unassigned;
                }
            }
            Op::Call {
                service,
                day,
                micros,
            } => {
                // Calls are made in the past (up to two months back) and imported now.
                let from = month(k)
                    .previous()
                    .previous()
                    .first_day()
                    .max(first_month().previous().first_day());
                let on = (from + Duration::days(day)).min(month(k).first_day() - Duration::days(1));
                self.calls.push((service, on, micros));
            }
            Op::Resync { back } => {
                if back <= k {
                    self.resync(month(k - back));
                }
            }
            Op::Price {
                service,
                day,
                price,
            } => {
                let from = (base + Duration::days(day)).min(latest);
                self.prices.push((service, from, price));
            }
            Op::ItemPrice {
                customer,
                day,
                price,
            } => {
                let from = (base + Duration::days(day)).min(latest);
                self.item_prices.push((customer, from, price));
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let customers = (1..=CUSTOMERS)
            .map(|i| Customer {
                id: cid(i),
                external_ref: None,
                name: NonEmpty::parse("n", &format!("Customer {i}")).unwrap(),
                enabled: true,
                target: BillingTarget::Xero { contact_id: None },
                email: Some(Email::parse("ops@example.com").unwrap()),
                details: BusinessDetails::default(),
                payment_terms_days: None,
            })
            .collect();
        let services = PRICES
            .iter()
            .enumerate()
            .map(|(i, price)| Service {
                id: sid(i),
                external_ref: format!("s{i}"),
                parent_id: None,
                name: NonEmpty::parse("n", &format!("SIP {i}")).unwrap(),
                kind: "voip".into(),
                rebill_enabled: true,
                is_parent: false,
                monthly_price: Money::parse(price).unwrap(),
                monthly_cost: Money::parse("10").unwrap(),
                xero_account_code: None,
                xero_tax_type: None,
                xero_item_code: None,
                users: vec![],
            })
            .collect();
        // Calls by the holder on their day, summed per service, customer and month (as the
        // snapshot's query does); calls made while nobody held the service belong to nobody.
        let mut usage: BTreeMap<(ServiceId, CustomerId, Period), (i64, i64)> = BTreeMap::new();
        for &(s, day, micros) in &self.calls {
            if let Some(h) = self
                .holdings
                .iter()
                .find(|h| h.service_id == sid(s) && h.held_on(day))
            {
                let e = usage
                    .entry((sid(s), h.customer_id, period_of(day)))
                    .or_default();
                e.0 += 1;
                e.1 += micros;
            }
        }
        Snapshot {
            // The oracle models no extension prices.
            extensions: Default::default(),
            customers,
            services,
            assignments: self.holdings.clone(),
            items: (1..=CUSTOMERS)
                .map(|c| Item {
                    id: ItemId::new(c).unwrap(),
                    customer_id: cid(c),
                    kind: ItemKind::Recurring,
                    description: NonEmpty::parse("d", "Support").unwrap(),
                    amount: Money::parse(ITEM_PRICE).unwrap(),
                    starts_on: Some(first_month().first_day()),
                    autotask: None,
                    status: ItemStatus::Active,
                    invoiced_period: None,
                })
                .collect(),
            usage: usage
                .into_iter()
                .map(
                    |((service_id, customer_id, period), (calls, micros))| UsageTotal {
                        service_id,
                        customer_id,
                        period,
                        calls,
                        seconds: calls * 60,
                        cost: Money::ZERO,
                        price: Money::from_micros(micros),
                    },
                )
                .collect(),
            billed: self
                .docs
                .iter()
                .flat_map(|((c, p), lines)| {
                    lines.iter().map(move |l| BilledCharge {
                        customer_id: *c,
                        on_invoice: *p,
                        charge: Charge::from_key(&l.charge_key, *p).unwrap(),
                        amount: l.amount,
                        removed: l.removed,
                    })
                })
                .collect(),
            billing_start: self.billing_start,
            prices: Prices {
                services: (0..PRICES.len())
                    .map(|i| {
                        let base = PriceChange {
                            from: None,
                            amount: Money::parse(PRICES[i]).unwrap(),
                        };
                        let changes =
                            self.prices
                                .iter()
                                .filter(|c| c.0 == i)
                                .map(|c| PriceChange {
                                    from: Some(c.1),
                                    amount: Money::parse(NEW_PRICES[c.2]).unwrap(),
                                });
                        (sid(i), PriceHistory::new([base].into_iter().chain(changes)))
                    })
                    .collect(),
                items: (1..=CUSTOMERS)
                    .map(|c| {
                        let base = PriceChange {
                            from: None,
                            amount: Money::parse(ITEM_PRICE).unwrap(),
                        };
                        let changes =
                            self.item_prices
                                .iter()
                                .filter(|x| x.0 == c)
                                .map(|x| PriceChange {
                                    from: Some(x.1),
                                    amount: Money::parse(NEW_PRICES[x.2]).unwrap(),
                                });
                        (
                            ItemId::new(c).unwrap(),
                            PriceHistory::new([base].into_iter().chain(changes)),
                        )
                    })
                    .collect(),
            },
        }
    }

    fn stored(&mut self, l: &Line) -> StoredLine {
        self.next_line += 1;
        StoredLine {
            id: LineId::new(self.next_line).unwrap(),
            invoice_id: InvoiceId::new(1).unwrap(),
            charge_key: l.charge_key.clone(),
            position: 0,
            kind: l.kind,
            description: l.description.clone(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            amount: l.amount,
            unit_cost: l.unit_cost,
            autotask: l.autotask,
            account_code: l.account_code.clone(),
            tax_type: l.tax_type.clone(),
            item_code: l.item_code.clone(),
            source_item: l.source_item,
            autotask_charge_id: None,
            removed: false,
        }
    }

    /// A scheduled run: records the invoices of customers that have none for the period yet.
    fn run(&mut self, p: Period) {
        let computed = compute_invoices(&self.snapshot(), p, &settings());
        for inv in computed.invoices {
            if self.docs.contains_key(&(inv.customer_id, p)) {
                continue;
            }
            let lines = inv.lines.iter().map(|l| self.stored(l)).collect();
            self.docs.insert((inv.customer_id, p), lines);
        }
        self.billing_start.get_or_insert(p);
    }

    /// A resync: recomputes the period and applies the difference to each recorded invoice.
    /// Returns how many lines it changed, added or removed.
    fn resync(&mut self, p: Period) -> usize {
        let computed = compute_invoices(&self.snapshot(), p, &settings());
        let mut wanted: BTreeMap<CustomerId, Vec<Line>> = computed
            .invoices
            .into_iter()
            .map(|i| (i.customer_id, i.lines))
            .collect();
        let mut touched = 0;
        for c in (1..=CUSTOMERS).map(cid) {
            let new = wanted.remove(&c).unwrap_or_default();
            let Some(old) = self.docs.get(&(c, p)).cloned() else {
                if !new.is_empty() {
                    touched += new.len();
                    let lines = new.iter().map(|l| self.stored(l)).collect();
                    self.docs.insert((c, p), lines);
                }
                continue;
            };
            let changes = diff_lines(&old, &new);
            touched += changes.changed.len() + changes.added.len() + changes.removed.len();
            let added: Vec<StoredLine> = changes.added.iter().map(|l| self.stored(l)).collect();
            let doc = self.docs.get_mut(&(c, p)).unwrap();
            for (id, l) in &changes.changed {
                let line = doc.iter_mut().find(|x| x.id == *id).unwrap();
                line.amount = l.amount;
                line.unit_price = l.unit_price;
                line.description = l.description.clone();
                line.unit_cost = l.unit_cost;
                line.removed = false;
            }
            for id in &changes.removed {
                doc.iter_mut().find(|x| x.id == *id).unwrap().removed = true;
            }
            doc.extend(added);
        }
        touched
    }

    /// What every document bills, per customer and charge.
    fn billed(&self) -> BTreeMap<(CustomerId, Charge), Money> {
        let mut out: BTreeMap<(CustomerId, Charge), Money> = BTreeMap::new();
        for ((c, p), lines) in &self.docs {
            for l in lines.iter().filter(|l| !l.removed) {
                let charge = Charge::from_key(&l.charge_key, *p).unwrap();
                *out.entry((*c, charge)).or_default() += l.amount;
            }
        }
        out.retain(|_, m| !m.is_zero());
        out
    }
}

fn period_of(day: NaiveDate) -> Period {
    Period::parse(&format!("{:04}-{:02}", day.year(), day.month())).unwrap()
}

fn settings() -> BillingSettings {
    BillingSettings {
        payment_terms_days: 14,
        auto_send: true,
        currency: "AUD".into(),
        number_prefix: "RB-".into(),
        default_account_code: None,
        default_tax_type: None,
        catch_up_months: 3,
    }
}

/// The oracle, written plainly: for each day of each billed month, who held each service and at
/// what price (the last change entered whose first day is on or before it, else the catalogue
/// price); a fee is the sum of those days' prices ÷ days in the month (price × days held ÷ days
/// in the month, for one price), rounded once; a call is owed by whoever held its
/// service that day, and a month's calls are summed, then rounded once.
fn oracle(m: &Model) -> BTreeMap<(CustomerId, Charge), Money> {
    let round = |d: Decimal| {
        Money::new(d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
    };
    let holder = |s: usize, day: NaiveDate| {
        m.holdings
            .iter()
            .find(|h| {
                h.service_id == sid(s) && day >= h.starts_on && h.ends_on.is_none_or(|e| day < e)
            })
            .map(|h| h.customer_id)
    };
    let mut out: BTreeMap<(CustomerId, Charge), Money> = BTreeMap::new();
    for k in 0..MONTHS {
        let p = month(k);
        let days_in_month = p.days();
        for (s, catalogue) in PRICES.iter().enumerate() {
            let price_on = |day: NaiveDate| -> Decimal {
                let mut price: Decimal = catalogue.parse().unwrap();
                let mut since: Option<NaiveDate> = None;
                for &(service, from, new) in &m.prices {
                    if service == s && from <= day && since.is_none_or(|d| from >= d) {
                        price = NEW_PRICES[new].parse().unwrap();
                        since = Some(from);
                    }
                }
                price
            };
            let mut sums: BTreeMap<CustomerId, Decimal> = BTreeMap::new();
            let mut day = p.first_day();
            while day <= p.last_day() {
                if let Some(c) = holder(s, day) {
                    *sums.entry(c).or_default() += price_on(day);
                }
                day += Duration::days(1);
            }
            for (c, sum) in sums {
                let owed = round(sum / Decimal::from(days_in_month));
                out.insert(
                    (
                        c,
                        Charge::Fee {
                            service: sid(s),
                            period: p,
                        },
                    ),
                    owed,
                );
            }
        }
    }
    let mut calls: BTreeMap<(CustomerId, Charge), i64> = BTreeMap::new();
    for &(s, day, micros) in &m.calls {
        let home = period_of(day).next();
        if home < first_month() || home > month(MONTHS - 1) {
            continue;
        }
        if let Some(c) = holder(s, day) {
            *calls
                .entry((
                    c,
                    Charge::Usage {
                        service: sid(s),
                        month: period_of(day),
                    },
                ))
                .or_default() += micros;
        }
    }
    for (k, micros) in calls {
        out.insert(k, round(Decimal::new(micros, 6)));
    }
    // Each customer's recurring item, active every day of every month, at the price of the day.
    for c in 1..=CUSTOMERS {
        let price_on = |day: NaiveDate| -> Decimal {
            let mut price: Decimal = ITEM_PRICE.parse().unwrap();
            let mut since: Option<NaiveDate> = None;
            for &(customer, from, new) in &m.item_prices {
                if customer == c && from <= day && since.is_none_or(|d| from >= d) {
                    price = NEW_PRICES[new].parse().unwrap();
                    since = Some(from);
                }
            }
            price
        };
        for k in 0..MONTHS {
            let p = month(k);
            let mut sum = Decimal::ZERO;
            let mut day = p.first_day();
            while day <= p.last_day() {
                sum += price_on(day);
                day += Duration::days(1);
            }
            out.insert(
                (
                    cid(c),
                    Charge::Item {
                        item: ItemId::new(c).unwrap(),
                        period: p,
                    },
                ),
                round(sum / Decimal::from(p.days())),
            );
        }
    }
    out.retain(|_, m| !m.is_zero());
    out
}

fn simulate(steps: &[Vec<Op>]) -> Model {
    let mut model = Model::default();
    for (k, ops) in steps.iter().enumerate() {
        for op in ops {
            model.apply(op, k);
        }
        model.run(month(k));
    }
    model
}

/// After the runs, ops resync every month in order; then the documents must bill exactly what
/// is owed, and resyncing again must change nothing.
fn check(steps: &[Vec<Op>]) -> Result<(), TestCaseError> {
    let mut model = simulate(steps);
    for k in 0..MONTHS {
        model.resync(month(k));
    }
    let billed = model.billed();
    let owed = oracle(&model);
    prop_assert_eq!(&billed, &owed, "documents: {:#?}", model.docs);
    for k in 0..MONTHS {
        let again = model.resync(month(k));
        prop_assert_eq!(again, 0, "a second resync of {} changed lines", month(k));
    }
    Ok(())
}

/// Without any resync: starts and calls entered late (back-dated into the previous month), ends
/// entered before their month's run. The scheduled runs alone must then bill exactly what is owed:
/// whatever a run could not see goes on the customer's next invoice, once.
fn check_runs_alone(steps: &[Vec<Op>]) -> Result<(), TestCaseError> {
    let steps: Vec<Vec<Op>> = steps
        .iter()
        .enumerate()
        .map(|(k, ops)| {
            let previous_month_days = month(k).previous().days() as i64;
            ops.iter()
                .filter(|op| !matches!(op, Op::Resync { .. }))
                .map(|op| match *op {
                    // An end entered before its month's run: never earlier than this month.
                    Op::Unassign { service, day } => Op::Unassign {
                        service,
                        day: previous_month_days + day % 28,
                    },
                    // A price change never reaches into a month already run (that is what a
                    // resync of it is for): from this month on.
                    Op::Price {
                        service,
                        day,
                        price,
                    } => Op::Price {
                        service,
                        day: previous_month_days + day % 28,
                        price,
                    },
                    Op::ItemPrice {
                        customer,
                        day,
                        price,
                    } => Op::ItemPrice {
                        customer,
                        day: previous_month_days + day % 28,
                        price,
                    },
                    ref other => other.clone(),
                })
                .collect()
        })
        .collect();
    let model = simulate(&steps);
    let billed = model.billed();
    let owed = oracle(&model);
    prop_assert_eq!(&billed, &owed, "documents: {:#?}", model.docs);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_charge_is_billed_once_to_who_owed_it_after_ops_resync(
        steps in proptest::collection::vec(proptest::collection::vec(op(), 0..5), MONTHS)
    ) {
        check(&steps)?;
    }

    #[test]
    fn scheduled_runs_alone_bill_late_entries_once_on_the_next_invoice(
        steps in proptest::collection::vec(proptest::collection::vec(op(), 0..5), MONTHS)
    ) {
        check_runs_alone(&steps)?;
    }
}

#[test]
fn a_service_reassigned_mid_month_bills_each_holder_its_days_and_calls() {
    let steps = vec![
        vec![Op::Assign {
            service: 0,
            customer: 1,
            day: 0,
        }],
        vec![
            Op::Call {
                service: 0,
                day: 40,
                micros: 1_234_567,
            },
            Op::Unassign {
                service: 0,
                day: 45,
            },
            Op::Assign {
                service: 0,
                customer: 2,
                day: 45,
            },
            Op::Call {
                service: 0,
                day: 50,
                micros: 2_000_000,
            },
        ],
        vec![],
        vec![],
        vec![],
        vec![],
    ];
    check(&steps).unwrap();
}
