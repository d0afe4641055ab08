//! Pacing: this daemon sends at most `limit` requests per rolling window, so that it never uses
//! more than its share of the tenant's hourly budget (shared with every other integration). A
//! request that would have to wait longer than `max_wait` is refused with `BudgetSpent` instead, and
//! its work waits in the outbox for the next window.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct Pacer {
    limit: Mutex<usize>,
    window: Duration,
    max_wait: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl Pacer {
    pub fn new(limit: usize, window: Duration, max_wait: Duration) -> Self {
        Pacer {
            limit: Mutex::new(limit.max(1)),
            window,
            max_wait,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    pub async fn set_limit(&self, limit: usize) {
        *self.limit.lock().await = limit.max(1);
    }

    pub async fn limit(&self) -> usize {
        *self.limit.lock().await
    }

    /// Waits for a slot in the window; Err(wait) when the wait would exceed `max_wait`.
    pub async fn acquire(&self) -> Result<(), Duration> {
        loop {
            let limit = *self.limit.lock().await;
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    sent.pop_front();
                }
                if sent.len() < limit {
                    sent.push_back(now);
                    return Ok(());
                }
                let oldest = *sent.front().expect("non-empty when full");
                self.window.saturating_sub(now.duration_since(oldest))
            };
            if wait > self.max_wait {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_more_than_the_limit_in_any_window() {
        let p = Pacer::new(3, Duration::from_secs(10), Duration::from_secs(60));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..7 {
            p.acquire().await.unwrap();
            at.push(start.elapsed());
        }
        for (i, t) in at.iter().enumerate() {
            let in_window = at
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(10))
                .count();
            assert!(
                in_window <= 3,
                "request {i} at {t:?}: {in_window} in its window"
            );
        }
        assert!(at[6] >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_is_refused_so_the_work_can_be_parked() {
        let p = Pacer::new(1, Duration::from_secs(3600), Duration::from_secs(30));
        p.acquire().await.unwrap();
        let wait = p.acquire().await.unwrap_err();
        assert!(wait > Duration::from_secs(3000));
    }
}
