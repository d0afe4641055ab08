//! The remote limits, enforced by the stand-ins on an injected clock, and a counter of every
//! request by kind (method and path, ids replaced by `{id}`).
//!
//! Xero allows an organisation 60 calls a minute, 5,000 a day (emails count) and 5 at once;
//! Autotask a tenant 10,000 calls an hour and 3 at once per endpoint. Windows are fixed and
//! aligned on the clock (a day resets at UTC midnight, an hour on the hour), so on a
//! [`crate::clock::ScaledClock`] a simulated day passes in seconds. A request over a limit is
//! answered 429 with `Retry-After` in seconds of that clock (the client converts them to real
//! time with [`crate::clock::Clock::real_duration`]) and Xero's `X-Rate-Limit-Problem`; it does
//! not count against the windows. Limits are off unless asked for ([`Limiter::enforcing`]): the
//! counter always counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::clock::{Clock, SystemClock};

/// At most `max` requests in each aligned window of `secs` seconds; `problem` names it in
/// `X-Rate-Limit-Problem` ("minute", "day", "hour").
#[derive(Debug, Clone)]
pub struct Window {
    pub max: u64,
    pub secs: u64,
    pub problem: &'static str,
}

/// The limits of one remote.
#[derive(Debug, Clone)]
pub struct LimitRules {
    pub windows: Vec<Window>,
    /// Requests in flight at once: per tenant, or per endpoint when `per_endpoint`.
    pub concurrent: usize,
    pub per_endpoint: bool,
    /// Only paths that start with this (ASCII case ignored) are limited.
    pub limited_prefix: &'static str,
}

impl LimitRules {
    /// Xero's: 60 a minute, 5,000 a day, 5 at once, for the Accounting API (not the identity
    /// endpoints).
    pub fn xero() -> Self {
        LimitRules {
            windows: vec![
                Window {
                    max: 60,
                    secs: 60,
                    problem: "minute",
                },
                Window {
                    max: 5_000,
                    secs: 86_400,
                    problem: "day",
                },
            ],
            concurrent: 5,
            per_endpoint: false,
            limited_prefix: "/api.xro/",
        }
    }

    /// Autotask's: 10,000 an hour per tenant, 3 at once per endpoint (the zone look-up is on
    /// another host in production, and is not limited).
    pub fn autotask() -> Self {
        LimitRules {
            windows: vec![Window {
                max: 10_000,
                secs: 3_600,
                problem: "hour",
            }],
            concurrent: 3,
            per_endpoint: true,
            limited_prefix: "/atservicesrest/v1.0/",
        }
    }

    fn limits(&self, path: &str) -> bool {
        let p = path.to_ascii_lowercase();
        p.starts_with(self.limited_prefix) && !p.contains("zoneinformation")
    }
}

#[derive(Default)]
struct LimitState {
    /// Per window of the rules: the index of the current window and its count.
    windows: Vec<(i64, u64)>,
    in_flight: HashMap<String, usize>,
    requests: BTreeMap<String, u64>,
    throttled: BTreeMap<String, u64>,
}

/// Counts every request by kind and, when enforcing, applies the rules on its clock.
pub struct Limiter {
    clock: Arc<dyn Clock>,
    rules: Option<LimitRules>,
    state: Mutex<LimitState>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::counting_only()
    }
}

impl Limiter {
    /// Counts requests, enforces nothing (the stand-ins' default).
    pub fn counting_only() -> Self {
        Limiter {
            clock: Arc::new(SystemClock),
            rules: None,
            state: Mutex::default(),
        }
    }

    /// Enforces `rules` on `clock`.
    pub fn enforcing(rules: LimitRules, clock: Arc<dyn Clock>) -> Self {
        Limiter {
            clock,
            state: Mutex::new(LimitState {
                windows: vec![(i64::MIN, 0); rules.windows.len()],
                ..LimitState::default()
            }),
            rules: Some(rules),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut LimitState) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Every request received, by kind ("PUT /api.xro/2.0/Invoices").
    pub fn requests_by_kind(&self) -> BTreeMap<String, u64> {
        self.with(|s| s.requests.clone())
    }

    /// Every request received.
    pub fn requests(&self) -> u64 {
        self.with(|s| s.requests.values().sum())
    }

    /// The requests answered 429 by kind.
    pub fn throttled_by_kind(&self) -> BTreeMap<String, u64> {
        self.with(|s| s.throttled.clone())
    }

    /// The requests answered 429.
    pub fn throttled(&self) -> u64 {
        self.with(|s| s.throttled.values().sum())
    }

    /// The requests in flight now (admitted, not yet answered).
    pub fn in_flight(&self) -> usize {
        self.with(|s| s.in_flight.values().sum())
    }

    /// The most requests the window named `problem` ("hour") allows, when enforcing.
    pub fn max_of(&self, problem: &str) -> Option<u64> {
        let rules = self.rules.as_ref()?;
        rules
            .windows
            .iter()
            .find(|w| w.problem == problem)
            .map(|w| w.max)
    }

    /// The requests counted in the current window named `problem` ("hour"), when enforcing.
    pub fn used_in(&self, problem: &str) -> Option<u64> {
        let rules = self.rules.as_ref()?;
        let now = self.clock.now().timestamp();
        let i = rules.windows.iter().position(|w| w.problem == problem)?;
        let secs = rules.windows[i].secs.max(1) as i64;
        self.with(|s| {
            s.windows
                .get(i)
                .map(|(idx, n)| if *idx == now.div_euclid(secs) { *n } else { 0 })
        })
    }

    /// Counts the request and admits it, or answers it 429.
    #[allow(clippy::result_large_err)] // the 429 is the early answer of the middleware
    fn admit(self: &Arc<Self>, method: &str, path: &str) -> Result<Ticket, Response> {
        let kind = kind_of(method, path);
        let now = self.clock.now();
        self.with(|s| {
            *s.requests.entry(kind.clone()).or_default() += 1;
            let Some(rules) = self.rules.as_ref().filter(|r| r.limits(path)) else {
                return Ok(Ticket(None));
            };
            let slot = if rules.per_endpoint {
                endpoint_of(path)
            } else {
                "tenant".to_string()
            };
            let mut refusal = None;
            if s.in_flight.get(&slot).copied().unwrap_or(0) >= rules.concurrent {
                refusal = Some((1, "concurrent"));
            }
            let t = now.timestamp();
            for (i, w) in rules.windows.iter().enumerate() {
                let secs = w.secs.max(1) as i64;
                let idx = t.div_euclid(secs);
                let entry = &mut s.windows[i];
                if entry.0 != idx {
                    *entry = (idx, 0);
                }
                if refusal.is_none() && entry.1 >= w.max {
                    // Whole seconds of the clock until the window resets (at least one).
                    let end = (idx + 1) * secs;
                    let nanos = i64::from(now.timestamp_subsec_nanos());
                    let left = (end - t) * 1_000_000_000 - nanos;
                    let secs_left = (left + 999_999_999) / 1_000_000_000;
                    refusal = Some((secs_left.max(1) as u64, w.problem));
                }
            }
            if let Some((after, problem)) = refusal {
                *s.throttled.entry(kind).or_default() += 1;
                return Err(too_many(after, problem));
            }
            for e in s.windows.iter_mut() {
                e.1 += 1;
            }
            *s.in_flight.entry(slot.clone()).or_default() += 1;
            Ok(Ticket(Some((self.clone(), slot))))
        })
    }
}

/// A request in flight: leaving its slot when dropped (answered or abandoned).
struct Ticket(Option<(Arc<Limiter>, String)>);

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some((l, slot)) = self.0.take() {
            l.with(|s| {
                if let Some(n) = s.in_flight.get_mut(&slot) {
                    *n = n.saturating_sub(1);
                }
            });
        }
    }
}

fn too_many(after: u64, problem: &str) -> Response {
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "Title": "Too Many Requests",
            "Detail": format!("rate limit exceeded ({problem})"),
            "errors": [format!("Rate limit exceeded ({problem}); retry after {after} s")]
        })),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert("Retry-After", HeaderValue::from(after));
    if let Ok(v) = HeaderValue::from_str(problem) {
        h.insert("X-Rate-Limit-Problem", v);
    }
    r
}

/// The axum middleware of a stand-in: counts, limits, and keeps the request's slot until it is
/// answered.
pub async fn enforce(State(l): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    match l.admit(&method, &path) {
        Err(r) => r,
        Ok(ticket) => {
            let r = next.run(req).await;
            drop(ticket);
            r
        }
    }
}

/// The kind of a request: its method and path, with numeric and UUID segments as `{id}`.
pub fn kind_of(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path
        .split('/')
        .map(|seg| {
            let is_id = !seg.is_empty()
                && (seg.bytes().all(|b| b.is_ascii_digit())
                    || (seg.len() == 36 && uuid::Uuid::parse_str(seg).is_ok()));
            if is_id { "{id}" } else { seg }
        })
        .collect();
    format!("{method} {}", segments.join("/"))
}

/// Autotask's endpoint of a path: the entity after `V1.0/` ("contracts", "contractcharges").
fn endpoint_of(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let p = lower.split("v1.0/").nth(1).unwrap_or(&lower);
    p.split('/').next().unwrap_or(p).to_string()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::clock::TestClock;

    fn retry_after(r: &Response) -> u64 {
        r.headers()["Retry-After"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn autotask_answers_429_past_10000_in_an_hour_until_the_hour_turns() {
        let clock = Arc::new(TestClock::at(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 15, 0).unwrap(),
        ));
        let l = Arc::new(Limiter::enforcing(LimitRules::autotask(), clock.clone()));
        for _ in 0..10_000 {
            drop(
                l.admit("POST", "/ATServicesRest/V1.0/Contracts/1/Charges")
                    .unwrap(),
            );
        }
        let r = l
            .admit("POST", "/ATServicesRest/V1.0/ContractCharges/query")
            .err()
            .expect("the 10,001st of the hour is refused");
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry_after(&r), 45 * 60, "seconds until 10:00");
        assert_eq!(r.headers()["X-Rate-Limit-Problem"], "hour");
        assert_eq!(l.used_in("hour"), Some(10_000));
        clock.set(Utc.with_ymd_and_hms(2026, 11, 2, 10, 0, 0).unwrap());
        assert!(l.admit("GET", "/ATServicesRest/V1.0/Contracts/1").is_ok());
        assert_eq!(l.used_in("hour"), Some(1));
        assert_eq!(l.requests(), 10_002, "every request is counted");
        assert_eq!(l.throttled(), 1);
    }

    #[test]
    fn autotask_allows_3_at_once_per_endpoint_and_the_zone_lookup_is_free() {
        let clock = Arc::new(TestClock::at(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
        ));
        let l = Arc::new(Limiter::enforcing(LimitRules::autotask(), clock));
        let held: Vec<Ticket> = (0..3)
            .map(|_| {
                l.admit("POST", "/ATServicesRest/V1.0/Contracts/1/Charges")
                    .unwrap()
            })
            .collect();
        let r = l
            .admit("POST", "/ATServicesRest/V1.0/Contracts/2/Charges")
            .err()
            .expect("a fourth on the endpoint is refused");
        assert_eq!(r.headers()["X-Rate-Limit-Problem"], "concurrent");
        assert!(retry_after(&r) >= 1);
        assert!(
            l.admit("POST", "/ATServicesRest/V1.0/ContractCharges/query")
                .is_ok()
        );
        assert!(
            l.admit("GET", "/atservicesrest/v1.0/zoneInformation")
                .is_ok()
        );
        drop(held);
        assert!(
            l.admit("POST", "/ATServicesRest/V1.0/Contracts/2/Charges")
                .is_ok()
        );
    }

    #[test]
    fn xero_allows_60_a_minute_and_5000_a_day() {
        let clock = Arc::new(TestClock::at(
            Utc.with_ymd_and_hms(2026, 11, 2, 23, 0, 30).unwrap(),
        ));
        let l = Arc::new(Limiter::enforcing(LimitRules::xero(), clock.clone()));
        for _ in 0..60 {
            drop(l.admit("GET", "/api.xro/2.0/Invoices").unwrap());
        }
        let r = l.admit("GET", "/api.xro/2.0/Invoices").err().unwrap();
        assert_eq!(r.headers()["X-Rate-Limit-Problem"], "minute");
        assert_eq!(retry_after(&r), 30);
        clock.advance(chrono::Duration::seconds(30));
        assert!(
            l.admit("GET", "/api.xro/2.0/Invoices").is_ok(),
            "a new minute"
        );

        // 5,000 in a day, 60 a minute from 22:00: the 5,001st waits for midnight.
        let clock2 = Arc::new(TestClock::at(
            Utc.with_ymd_and_hms(2026, 11, 2, 22, 0, 0).unwrap(),
        ));
        let l2 = Arc::new(Limiter::enforcing(LimitRules::xero(), clock2.clone()));
        for i in 0..5_000 {
            if i % 60 == 0 {
                clock2.advance(chrono::Duration::seconds(60));
            }
            drop(l2.admit("GET", "/api.xro/2.0/Invoices").unwrap());
        }
        clock2.advance(chrono::Duration::seconds(60));
        let r = l2.admit("GET", "/api.xro/2.0/Invoices").err().unwrap();
        assert_eq!(r.headers()["X-Rate-Limit-Problem"], "day");
        let at = clock2.now();
        let midnight = Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap();
        assert!(at < midnight, "the day's 5,000 went before midnight ({at})");
        assert_eq!(retry_after(&r) as i64, (midnight - at).num_seconds());
    }

    #[test]
    fn the_identity_endpoints_are_counted_but_not_limited() {
        let clock = Arc::new(TestClock::at(
            Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(),
        ));
        let l = Arc::new(Limiter::enforcing(LimitRules::xero(), clock));
        for _ in 0..100 {
            drop(l.admit("POST", "/connect/token").unwrap());
        }
        assert_eq!(l.requests_by_kind()["POST /connect/token"], 100);
        assert_eq!(l.throttled(), 0);
    }

    #[test]
    fn a_kind_names_the_method_and_the_path_without_its_ids() {
        assert_eq!(
            kind_of(
                "POST",
                "/api.xro/2.0/Invoices/0f4c8a1e-5b0e-4c1a-9d55-5a6b1f2e3d4c/Email"
            ),
            "POST /api.xro/2.0/Invoices/{id}/Email"
        );
        assert_eq!(
            kind_of("POST", "/ATServicesRest/V1.0/Contracts/17401/Charges"),
            "POST /ATServicesRest/V1.0/Contracts/{id}/Charges"
        );
        assert_eq!(
            endpoint_of("/ATServicesRest/V1.0/ContractCharges/query"),
            "contractcharges"
        );
    }
}
