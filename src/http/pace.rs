//! Pacing a client to a remote's rate limits, on an injected clock. The limits belong to the
//! remote tenant (Xero's organisation, Autotask's tenant) and are shared by every process on the
//! database, so the count is kept there (`store::budget`, which the client hands in as `take`);
//! this module only waits for the turn. A request waits when the wait is short, and is refused
//! with the wait when it is longer than `max_wait`, so that its work can be parked instead of
//! holding a connection for hours. Waits are measured on the clock and slept in real time
//! ([`Clock::real_duration`]), so on a scaled clock a day's pacing passes in seconds. Every wait
//! and refusal is counted in [`super::stats`].

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

/// Sleeps a retry's wait, measured on `clock`, in real time (the retry loop's sleeper).
pub struct ClockSleeper(pub std::sync::Arc<dyn Clock>);

impl backon::Sleeper for ClockSleeper {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, dur: Duration) -> Self::Sleep {
        tokio::time::sleep(self.0.real_duration(dur))
    }
}

/// How long `real` (real time) lasts on `clock`: longer on a scaled clock. A request's lease is
/// its timeout, which is real time, but it is counted on the clock.
pub fn on_clock(clock: &dyn Clock, real: Duration) -> Duration {
    let one = clock.real_duration(Duration::from_secs(1)).as_secs_f64();
    if one > 0.0 && one.is_finite() {
        Duration::try_from_secs_f64(real.as_secs_f64() / one).unwrap_or(Duration::MAX)
    } else {
        real
    }
}

/// The least real time slept between two asks, so that a fast clock cannot spin on the database.
const LEAST_REAL_SLEEP: Duration = Duration::from_millis(5);

/// Waits on `clock` for the turn `take` grants. `take(now)` answers Ok(turn), or Err(wait): how
/// long, on the clock, until there is room. Returns Ok(Err(wait)) without waiting when the wait
/// is longer than `max_wait` (nothing was taken then); an error of `take` is returned as is.
/// `api` names the client in the counters of waits.
pub async fn turn<T, E, F, Fut>(
    clock: &dyn Clock,
    max_wait: Duration,
    api: &'static str,
    mut take: F,
) -> Result<Result<T, Duration>, E>
where
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: Future<Output = Result<Result<T, Duration>, E>>,
{
    let started = clock.now();
    let mut waited = false;
    loop {
        match take(clock.now()).await? {
            Ok(t) => {
                if waited {
                    let secs = (clock.now() - started).num_milliseconds().max(0) as f64 / 1000.0;
                    super::stats::rate_limit_wait(api, secs);
                }
                return Ok(Ok(t));
            }
            Err(wait) if wait > max_wait => {
                super::stats::rate_limit_wait(api, 0.0);
                return Ok(Err(wait));
            }
            Err(wait) => {
                waited = true;
                tokio::time::sleep(clock.real_duration(wait).max(LEAST_REAL_SLEEP)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::clock::ScaledClock;

    #[tokio::test]
    async fn a_short_wait_is_waited_on_the_clock_and_a_long_one_refused_with_its_length() {
        let clock = ScaledClock::new(Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap(), 600.0);
        let free_at = clock.now() + chrono::Duration::seconds(30);
        let asks = Mutex::new(0);
        let got: Result<Result<DateTime<Utc>, Duration>, ()> =
            turn(&clock, Duration::from_secs(60), "test", |now| {
                *asks.lock().unwrap() += 1;
                let r = if now >= free_at {
                    Ok(now)
                } else {
                    Err((free_at - now).to_std().unwrap())
                };
                async move { Ok(r) }
            })
            .await;
        let at = got.unwrap().unwrap();
        assert!(at >= free_at, "let through at {at}, room from {free_at}");
        assert!(*asks.lock().unwrap() >= 2);

        let refused: Result<Result<(), Duration>, ()> =
            turn(&clock, Duration::from_secs(60), "test", |_| async {
                Ok(Err(Duration::from_secs(3_600)))
            })
            .await;
        assert_eq!(refused, Ok(Err(Duration::from_secs(3_600))));
    }
}
