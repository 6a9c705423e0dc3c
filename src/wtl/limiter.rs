//! Outbound rate limit: at most `WTL_RATE_LIMIT` calls per second across the process.
//!
//! Calls are spaced evenly (one every `1 / rate` seconds) in the order they ask. A caller whose
//! turn would come after its event's deadline is refused at once instead of queueing in vain, so
//! waiting for the limiter always counts against `WTL_TOTAL_TIMEOUT`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Option<Instant>>,
}

/// The caller's turn would come after its deadline.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLate;

impl RateLimiter {
    pub fn per_second(rate: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / rate),
            next_slot: Mutex::new(None),
        }
    }

    /// Waits for this caller's slot. Returns how long it waited.
    pub async fn acquire(&self, deadline: Instant) -> Result<Duration, TooLate> {
        let now = Instant::now();
        let slot = {
            // A poisoned lock only means another caller panicked between two lines that cannot
            // panic; the slot it holds is still a valid instant.
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let slot = next.map_or(now, |n| n.max(now));
            if slot > deadline {
                return Err(TooLate);
            }
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
        Ok(slot - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn burst_is_spread_at_the_configured_rate() {
        let limiter = Arc::new(RateLimiter::per_second(10.0));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for _ in 0..25 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire(deadline).await.expect("in time");
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.expect("task") - start);
        }
        times.sort();
        // 25 calls at 10/s: the last one goes 2.4 s after the first; no two share a 100 ms slot.
        assert_eq!(times[0], Duration::ZERO);
        assert_eq!(times[24], Duration::from_millis(2400));
        for pair in times.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(100), "{pair:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_past_the_deadline_is_refused_without_waiting() {
        let limiter = RateLimiter::per_second(1.0);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(1500);
        assert_eq!(limiter.acquire(deadline).await, Ok(Duration::ZERO));
        assert_eq!(limiter.acquire(deadline).await, Ok(Duration::from_secs(1)));
        assert_eq!(limiter.acquire(deadline).await, Err(TooLate));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }
}
