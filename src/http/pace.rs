//! Pacing a client to a remote's rate limits, on an injected clock: at most `max` requests in any
//! rolling window of `per`, for each limit at once (Xero's 60 a minute and 5,000 a day, Autotask's
//! share of the hourly budget). A request waits for its turn when the wait is short, and is
//! refused with the wait when it is longer than `max_wait`, so that its work can be parked instead
//! of holding a connection for hours. A rolling window is stricter than the remote's own (fixed or
//! rolling) window, so a client that paces itself is never answered 429 for these limits. Waits
//! are measured on the clock and slept in real time ([`Clock::real_duration`]), so on a scaled
//! clock a day's pacing passes in seconds.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// At most `max` requests in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub max: usize,
    pub per: Duration,
}

impl Rate {
    pub fn new(max: usize, per: Duration) -> Self {
        Rate {
            max: max.max(1),
            per,
        }
    }
}

/// A request inside a window: let through at `sent`, answered at `done`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u64,
    done: Option<DateTime<Utc>>,
}

struct Limit {
    rate: Rate,
    /// The requests still inside the window: in flight, or answered less than `per` ago.
    entries: VecDeque<Entry>,
}

struct State {
    limits: Vec<Limit>,
    next_id: u64,
}

/// The pace of one client: every limit applies to every request.
pub struct Pace {
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    max_wait: Duration,
}

/// A request let through; its window is counted until `per` after it is answered (dropped).
pub struct Paced<'a> {
    pace: &'a Pace,
    id: u64,
}

impl Drop for Paced<'_> {
    fn drop(&mut self) {
        self.pace.done(self.id, self.pace.clock.now());
    }
}

/// Sleeps a retry's wait, measured on `clock`, in real time (the retry loop's sleeper).
pub struct ClockSleeper(pub Arc<dyn Clock>);

impl backon::Sleeper for ClockSleeper {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        tokio::time::sleep(self.0.real_duration(dur))
    }
}

/// How long to look again when only requests still in flight stand in the way.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(1);

impl Pace {
    pub fn new(rates: &[Rate], max_wait: Duration, clock: Arc<dyn Clock>) -> Self {
        Pace {
            clock,
            state: Mutex::new(State {
                limits: rates
                    .iter()
                    .map(|r| Limit {
                        rate: *r,
                        entries: VecDeque::new(),
                    })
                    .collect(),
                next_id: 0,
            }),
            max_wait,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Sets the most requests of limit `i` (Autotask's share, once the tenant's use is known).
    pub fn set_max(&self, i: usize, max: usize) {
        self.with(|s| {
            if let Some(x) = s.limits.get_mut(i) {
                x.rate.max = max.max(1);
            }
        })
    }

    /// The most requests of limit `i`.
    pub fn max(&self, i: usize) -> Option<usize> {
        self.with(|s| s.limits.get(i).map(|x| x.rate.max))
    }

    /// At `now`: lets one request through (counted against every limit) and returns its id, or
    /// says how long until every limit has room. A request stays in a window until `per` after
    /// its answer ([`Pace::done`]): the remote saw it somewhere between the two, so counting it
    /// from the answer keeps any window of the remote's within the limit however long the
    /// request took on the way.
    pub fn try_take(&self, now: DateTime<Utc>) -> Result<u64, Duration> {
        self.with(|s| {
            let mut wait = Duration::ZERO;
            for l in s.limits.iter_mut() {
                let per = chrono::Duration::from_std(l.rate.per).unwrap_or(chrono::Duration::MAX);
                l.entries
                    .retain(|e| e.done.is_none_or(|d| now.signed_duration_since(d) < per));
                if l.entries.len() >= l.rate.max {
                    // The `len - max + 1`-th answered request to leave the window makes room.
                    let need = l.entries.len() - l.rate.max + 1;
                    let mut leaving: Vec<DateTime<Utc>> =
                        l.entries.iter().filter_map(|e| e.done).collect();
                    leaving.sort_unstable();
                    let w = match leaving.get(need - 1) {
                        Some(d) => (*d + per - now).to_std().unwrap_or(IN_FLIGHT_POLL),
                        None => IN_FLIGHT_POLL,
                    };
                    wait = wait.max(w.max(IN_FLIGHT_POLL));
                }
            }
            if wait > Duration::ZERO {
                return Err(wait);
            }
            s.next_id += 1;
            let id = s.next_id;
            for l in s.limits.iter_mut() {
                l.entries.push_back(Entry { id, done: None });
            }
            Ok(id)
        })
    }

    /// Request `id` was answered (or abandoned) at `at`.
    pub fn done(&self, id: u64, at: DateTime<Utc>) {
        self.with(|s| {
            for l in s.limits.iter_mut() {
                if let Some(e) = l.entries.iter_mut().rev().find(|e| e.id == id) {
                    e.done = Some(at);
                }
            }
        })
    }

    /// Waits for the request's turn; Err(wait), on the clock, when it would be longer than
    /// `max_wait` (nothing is counted then). Keep the permit until the answer is in.
    pub async fn acquire(&self) -> Result<Paced<'_>, Duration> {
        loop {
            match self.try_take(self.clock.now()) {
                Ok(id) => return Ok(Paced { pace: self, id }),
                Err(wait) if wait > self.max_wait => return Err(wait),
                Err(wait) => {
                    // At least a millisecond of real time, so that a fast clock cannot spin.
                    let real = self.clock.real_duration(wait).max(Duration::from_millis(1));
                    tokio::time::sleep(real).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::clock::TestClock;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn pace(rates: &[Rate]) -> Pace {
        Pace::new(
            rates,
            Duration::from_secs(60),
            Arc::new(TestClock::at(at(0))),
        )
    }

    /// Sends requests answered at once, as fast as the pace allows; returns when each went.
    fn send(p: &Pace, n: usize) -> Vec<i64> {
        let mut sent = Vec::new();
        let mut t = 0i64;
        while sent.len() < n {
            match p.try_take(at(t)) {
                Ok(id) => {
                    p.done(id, at(t));
                    sent.push(t);
                }
                Err(w) => t += w.as_secs().max(1) as i64,
            }
        }
        sent
    }

    #[test]
    fn never_more_than_max_in_any_window_of_per() {
        let p = pace(&[Rate::new(3, Duration::from_secs(10))]);
        let sent = send(&p, 10);
        for s in &sent {
            let inside = sent.iter().filter(|u| **u >= *s && **u < *s + 10).count();
            assert!(inside <= 3, "{sent:?}: {inside} in the window from {s}");
        }
        assert_eq!(
            sent[3], 10,
            "the fourth waits for the first to leave the window"
        );
    }

    #[test]
    fn a_request_counts_from_its_answer_not_from_when_it_left() {
        let p = pace(&[Rate::new(1, Duration::from_secs(60))]);
        let id = p.try_take(at(0)).unwrap();
        assert!(p.try_take(at(100)).is_err(), "still in flight");
        p.done(id, at(30));
        assert_eq!(p.try_take(at(60)).unwrap_err(), Duration::from_secs(30));
        assert!(p.try_take(at(90)).is_ok());
    }

    #[test]
    fn the_wait_is_the_longest_of_every_limit() {
        let p = pace(&[
            Rate::new(60, Duration::from_secs(60)),
            Rate::new(2, Duration::from_secs(86_400)),
        ]);
        assert_eq!(send(&p, 2), vec![0, 0]);
        let wait = p.try_take(at(2)).unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(86_400 - 2),
            "the day's budget is spent"
        );
        assert!(p.try_take(at(86_400)).is_ok(), "a day later there is room");
    }

    #[tokio::test]
    async fn a_wait_longer_than_max_wait_is_refused_with_its_length() {
        let p = pace(&[Rate::new(1, Duration::from_secs(3_600))]);
        drop(p.acquire().await.unwrap());
        let wait = p.acquire().await.err().unwrap();
        assert_eq!(wait, Duration::from_secs(3_600));
    }

    #[test]
    fn a_lower_max_applies_to_the_next_request() {
        let p = pace(&[Rate::new(10, Duration::from_secs(60))]);
        assert!(p.try_take(at(0)).is_ok());
        p.set_max(0, 1);
        assert_eq!(p.max(0), Some(1));
        assert!(p.try_take(at(1)).is_err());
    }
}
