//! Where "now" comes from. Every decision that depends on the time (is a period due, is an
//! outbox entry due, when to retry, which date a credit note carries) takes it from a `Clock`,
//! so that tests pin it and the suite passes on any date. Only the binary's edge uses the
//! system clock.

use chrono::{DateTime, Utc};

/// Where time comes from: the system clock, or a test's.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// How long `d` of this clock's time lasts in real time: what to sleep to let `d` pass on it.
    /// The same for the system clock; shorter on a [`ScaledClock`].
    fn real_duration(&self, d: std::time::Duration) -> std::time::Duration {
        d
    }
}

/// The real clock, for the daemon and the CLI.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock a test sets by hand. It never falls back to the wall clock.
pub struct TestClock(std::sync::Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        TestClock(std::sync::Mutex::new(t))
    }
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: chrono::Duration) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g += d;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A clock whose time runs `factor` times faster than real time from `start`, so that a simulated
/// day passes in seconds (the bench runs the pipeline and the stand-ins' limits on it). Every wait
/// measured on it is turned back into real time by [`Clock::real_duration`].
pub struct ScaledClock {
    /// The clock's time at the real instant.
    at: std::sync::Mutex<(DateTime<Utc>, std::time::Instant)>,
    factor: f64,
}

impl ScaledClock {
    /// Starts at `start` now, running `factor` (at least 1) times faster than real time.
    pub fn new(start: DateTime<Utc>, factor: f64) -> Self {
        ScaledClock {
            at: std::sync::Mutex::new((start, std::time::Instant::now())),
            factor: if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            },
        }
    }

    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Sets the clock to `start` now (it runs on from there at the same speed).
    pub fn reset(&self, start: DateTime<Utc>) {
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = (start, std::time::Instant::now());
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> DateTime<Utc> {
        let (start, origin) = *self.at.lock().unwrap_or_else(|p| p.into_inner());
        let d = chrono::Duration::from_std(origin.elapsed().mul_f64(self.factor))
            .unwrap_or(chrono::Duration::MAX);
        start.checked_add_signed(d).unwrap_or(start)
    }

    fn real_duration(&self, d: std::time::Duration) -> std::time::Duration {
        d.div_f64(self.factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_clock_converts_its_durations_to_shorter_real_ones() {
        let c = ScaledClock::new(DateTime::<Utc>::UNIX_EPOCH, 3600.0);
        assert_eq!(
            c.real_duration(std::time::Duration::from_secs(3600)),
            std::time::Duration::from_secs(1)
        );
        assert!(c.now() >= DateTime::<Utc>::UNIX_EPOCH);
        let s = SystemClock;
        assert_eq!(
            s.real_duration(std::time::Duration::from_secs(5)),
            std::time::Duration::from_secs(5)
        );
    }

    #[test]
    fn a_factor_below_one_is_taken_as_real_time() {
        assert_eq!(
            ScaledClock::new(DateTime::<Utc>::UNIX_EPOCH, 0.0).factor(),
            1.0
        );
        assert_eq!(
            ScaledClock::new(DateTime::<Utc>::UNIX_EPOCH, f64::NAN).factor(),
            1.0
        );
    }
}
