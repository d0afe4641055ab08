//! The remote tenants' rate limits, shared by every process on the database: Xero's per
//! organisation (60 a minute, 5,000 a day, 5 at once) and Autotask's share of the tenant's hourly
//! budget. Two daemons, or a daemon and a CLI command, each pacing itself in memory would
//! together send twice what the tenant allows; here they take their turns from one count.
//!
//! The count is a log of the requests let through (`remote_requests`). A request counts in every
//! window of its budget from when it was let through until a window after it ended: answered
//! ([`Store::budget_answered`]), or else its lease ran out (a dead process, a lost answer). The
//! remote saw it somewhere between the two, so counting it over the whole stretch keeps every
//! window of the remote's, rolling or fixed, within the limit however long the request took on
//! the way; a request not yet ended counts as in flight for the "at once" limit. Each take runs in
//! one write transaction that first updates the budget's row (`remote_budgets`): on PostgreSQL the
//! row lock, on SQLite `BEGIN IMMEDIATE`, make two processes' takes one after the other, so the
//! count a take reads cannot change before its own row is written.
//!
//! Times are whole milliseconds of the caller's clock (the injected one: the bench's scaled clock,
//! a test's), never the wall clock.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{BeginWrite, Store, StoreError, on_db};

/// At most `max` requests in any window of `per`, of which `reserve` are kept back for more
/// important requests (a request that may use them asks with a reserve of 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub max: u64,
    pub per: Duration,
    pub reserve: u64,
}

impl Window {
    pub fn new(max: u64, per: Duration) -> Self {
        Window {
            max: max.max(1),
            per,
            reserve: 0,
        }
    }

    /// The same window with `reserve` requests kept back.
    pub fn keeping(self, reserve: u64) -> Self {
        Window { reserve, ..self }
    }
}

/// One request asking for its turn.
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// Whose limits: `xero:<organisation>`, `autotask:<API user>`.
    pub budget: &'a str,
    /// Who asks (process and client), for the log.
    pub holder: &'a str,
    pub windows: &'a [Window],
    /// At most this many in flight at once, when the remote limits it.
    pub at_once: Option<u64>,
    /// How long the request may stay in flight before it is taken as ended (longer than the
    /// request's timeout, so that an answer always comes first).
    pub lease: Duration,
}

/// How long an ended request is kept at least: longer than any remote's window (Xero's day).
const KEPT_FOR: Duration = Duration::from_secs(2 * 86_400);

/// The longest wait answered while part of a window is kept back (the creates it is kept for may
/// be sent sooner than the window frees up).
pub const RESERVE_RECHECK: Duration = Duration::from_secs(600);

/// How long to look again when only requests still in flight stand in the way (on the clock).
pub const IN_FLIGHT_WAIT: Duration = Duration::from_millis(100);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Where this process runs, as the holders of its turns name it: the kernel's boot id and the host
/// name (two containers of one kernel have different host names; two machines, different boot
/// ids). None where it cannot be known (no `/proc`): then no holder is ever taken for dead.
fn machine() -> Option<&'static str> {
    static MACHINE: std::sync::LazyLock<Option<String>> = std::sync::LazyLock::new(|| {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let boot = read("/proc/sys/kernel/random/boot_id").filter(|b| !b.is_empty())?;
        let host = read("/proc/sys/kernel/hostname").unwrap_or_default();
        Some(format!("{boot}/{host}"))
    });
    MACHINE.as_deref()
}

/// The name of this process's turns, for `Ask::holder`: its machine, its process id and `tag` (the
/// client). A process on the same machine can then tell when the holder died.
pub fn holder_name(tag: &str) -> String {
    format!("{}:{}:{tag}", machine().unwrap_or("?"), std::process::id())
}

/// True when `holder` names a process of this machine that no longer runs (its `/proc` entry is
/// gone). A holder of another machine, of this process, or not named by [`holder_name`] is never
/// taken for dead: its turn ends with its lease.
fn holder_is_gone(holder: &str) -> bool {
    let Some(machine) = machine() else {
        return false;
    };
    let Some(pid) = holder
        .strip_prefix(machine)
        .and_then(|r| r.strip_prefix(':'))
        .and_then(|r| r.split(':').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The requests of a budget in its longest window now, and that window's limit: what the metrics
/// show of every process's use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetUse {
    pub budget: String,
    pub window: Duration,
    pub max: u64,
    pub used: u64,
}

impl Store {
    /// Lets one request through at `now` (Ok: its ticket, to be handed to
    /// [`Store::budget_answered`]) or says how long until every window has room (Err: nothing was
    /// counted). A window with no room left that only time cannot free (its whole limit kept back)
    /// answers its full length: the caller parks the work.
    pub async fn take_budget(
        &self,
        ask: &Ask<'_>,
        now: DateTime<Utc>,
    ) -> Result<Result<i64, Duration>, StoreError> {
        let now_ms = now.timestamp_millis();
        let longest = ask.windows.iter().map(|w| w.per).max().unwrap_or_default();
        let (window_ms, window_max) = ask
            .windows
            .iter()
            .max_by_key(|w| w.per)
            .map_or((0, 0), |w| (ms(w.per), w.max as i64));
        Ok(on_db!(self, p => {
            let mut tx = p.begin_write().await?;
            // The budget's row first: it serialises the takes of every process.
            let locked = sqlx::query(
                "UPDATE remote_budgets SET takes = takes + 1, window_ms = $2, window_max = $3 WHERE budget = $1")
                .bind(ask.budget)
                .bind(window_ms)
                .bind(window_max)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if locked == 0 {
                sqlx::query(
                    "INSERT INTO remote_budgets (budget, takes, window_ms, window_max) VALUES ($1, 1, $2, $3) \
                     ON CONFLICT (budget) DO UPDATE SET takes = remote_budgets.takes + 1")
                    .bind(ask.budget)
                    .bind(window_ms)
                    .bind(window_max)
                    .execute(&mut *tx)
                    .await?;
            }
            // What left every window is forgotten: every window of this ask's, and of any other
            // process's that might count longer ones (a different configuration).
            sqlx::query("DELETE FROM remote_requests WHERE budget = $1 AND ends_ms <= $2")
                .bind(ask.budget)
                .bind(now_ms.saturating_sub(ms(longest.max(KEPT_FOR))))
                .execute(&mut *tx)
                .await?;
            let mut wait = Duration::ZERO;
            if let Some(at_once) = ask.at_once {
                let in_flight: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, holder FROM remote_requests WHERE budget = $1 AND ends_ms > $2")
                    .bind(ask.budget)
                    .bind(now_ms)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut n = in_flight.len() as u64;
                if n >= at_once.max(1) {
                    // A process of this machine that died mid-request gives its turn back now,
                    // not when the lease ends (a restarted daemon is not held up by its own ghost).
                    for (id, _) in in_flight.iter().filter(|(_, h)| holder_is_gone(h)) {
                        sqlx::query("UPDATE remote_requests SET ends_ms = $2 WHERE id = $1")
                            .bind(id)
                            .bind(now_ms)
                            .execute(&mut *tx)
                            .await?;
                        n -= 1;
                    }
                }
                if n >= at_once.max(1) {
                    wait = IN_FLIGHT_WAIT;
                }
            }
            for w in ask.windows {
                let since = now_ms.saturating_sub(ms(w.per));
                let counted: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM remote_requests WHERE budget = $1 AND ends_ms > $2")
                    .bind(ask.budget)
                    .bind(since)
                    .fetch_one(&mut *tx)
                    .await?;
                let room = w.max.saturating_sub(w.reserve);
                let counted = counted as u64;
                if counted < room {
                    continue;
                }
                // The `counted - room + 1`-th request to leave the window makes room: among those
                // that ended, in the order they leave; else one still in flight must end first.
                let need = (counted - room) as i64;
                let leaving: Option<i64> = sqlx::query_scalar(
                    "SELECT ends_ms FROM remote_requests WHERE budget = $1 AND ends_ms > $2 AND ends_ms <= $3 \
                     ORDER BY ends_ms LIMIT 1 OFFSET $4")
                    .bind(ask.budget)
                    .bind(since)
                    .bind(now_ms)
                    .bind(need)
                    .fetch_optional(&mut *tx)
                    .await?;
                let this = match leaving {
                    Some(ends) => Duration::from_millis(
                        u64::try_from(ends.saturating_add(ms(w.per)) - now_ms).unwrap_or(0),
                    )
                    .max(Duration::from_millis(1)),
                    None if counted > 0 && room > 0 => IN_FLIGHT_WAIT,
                    // The whole window is kept back: time alone frees nothing.
                    None => w.per,
                };
                // What is kept back is freed as the requests it is kept for are sent, not only
                // as time passes: ask again within a few minutes.
                let this = if w.reserve > 0 {
                    this.min(RESERVE_RECHECK)
                } else {
                    this
                };
                wait = wait.max(this);
            }
            if wait > Duration::ZERO {
                tx.rollback().await?;
                return Ok(Err(wait));
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO remote_requests (budget, holder, taken_ms, ends_ms) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(ask.budget)
                .bind(ask.holder)
                .bind(now_ms)
                .bind(now_ms.saturating_add(ms(ask.lease)))
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(id)
        }))
    }

    /// Request `ticket` ended (answered, or given up) at `at`: it leaves the windows a window later.
    pub async fn budget_answered(&self, ticket: i64, at: DateTime<Utc>) -> Result<(), StoreError> {
        on_db!(self, p => sqlx::query("UPDATE remote_requests SET ends_ms = $2 WHERE id = $1")
            .bind(ticket)
            .bind(at.timestamp_millis())
            .execute(p)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The requests of `budget` counted in a window of `per` at `now`, by every process.
    pub async fn budget_used(
        &self,
        budget: &str,
        per: Duration,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n: i64 = on_db!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM remote_requests WHERE budget = $1 AND ends_ms > $2")
            .bind(budget)
            .bind(now.timestamp_millis().saturating_sub(ms(per)))
            .fetch_one(p)
            .await?);
        Ok(n as u64)
    }

    /// Every budget's use of its longest window at `now` (for `/metrics`).
    pub async fn budget_uses(&self, now: DateTime<Utc>) -> Result<Vec<BudgetUse>, StoreError> {
        let rows: Vec<(String, i64, i64)> = on_db!(self, p => sqlx::query_as(
            "SELECT budget, window_ms, window_max FROM remote_budgets ORDER BY budget")
            .fetch_all(p)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for (budget, window_ms, max) in rows {
            let window = Duration::from_millis(u64::try_from(window_ms).unwrap_or(0));
            let used = self.budget_used(&budget, window, now).await?;
            out.push(BudgetUse {
                budget,
                window,
                max: u64::try_from(max).unwrap_or(0),
                used,
            });
        }
        Ok(out)
    }

    /// Xero invoice creates still to be sent (pending or in flight, not skipped): what the day's
    /// budget keeps back for them before any other request, such as an email, may use it.
    pub async fn xero_creates_waiting(&self) -> Result<u64, StoreError> {
        let n: i64 = on_db!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE action = 'xero_invoice' \
             AND status IN ('pending', 'in_flight') AND skipped_at IS NULL")
            .fetch_one(p)
            .await?);
        Ok(n as u64)
    }
}
