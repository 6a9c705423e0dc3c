//! Outbound rate limit: at most `WTL_RATE_LIMIT` calls per second across the process.
//!
//! Calls are spaced evenly (one every `1 / rate` seconds) in the order they ask. A caller whose
//! turn would come after its event's deadline is refused at once instead of queueing in vain, so
//! waiting for the limiter always counts against `WTL_TOTAL_TIMEOUT`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Option<Instant>>,
}

/// The caller's turn would come after its deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLate;

impl RateLimiter {
    /// `rate` calls per second. Start-up keeps `WTL_RATE_LIMIT` within sane bounds; a value
    /// outside them still gives a usable limiter (at most one call in 1000 s).
    pub(crate) fn per_second(rate: f64) -> Self {
        let slowest = Duration::from_secs(1000);
        let interval = Duration::try_from_secs_f64(1.0 / rate).map_or(slowest, |d| d.min(slowest));
        Self {
            interval,
            next_slot: Mutex::new(None),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        // A poisoned lock only means another caller panicked between two lines that cannot
        // panic; the slot it holds is still a valid instant.
        self.next_slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for this caller's slot. Returns how long it waited.
    ///
    /// Cancellation: a caller dropped while it waits gives its slot back when no later caller
    /// has booked one after it (the usual case: the limiter is idle again). Otherwise the slot
    /// stays unused, which only spaces the later callers by one more interval; nothing blocks.
    pub(crate) async fn acquire(&self, deadline: Instant) -> Result<Duration, TooLate> {
        let now = Instant::now();
        let slot = {
            let mut next = self.slots();
            let slot = next.map_or(now, |n| n.max(now));
            if slot > deadline {
                return Err(TooLate);
            }
            *next = Some(slot + self.interval);
            slot
        };
        let booking = Booking {
            limiter: self,
            slot,
            used: false,
        };
        tokio::time::sleep_until(slot).await;
        booking.keep();
        Ok(slot - now)
    }
}

/// A booked slot, given back if the caller is dropped before using it.
struct Booking<'a> {
    limiter: &'a RateLimiter,
    slot: Instant,
    used: bool,
}

impl Booking<'_> {
    fn keep(mut self) {
        self.used = true;
    }
}

impl Drop for Booking<'_> {
    fn drop(&mut self) {
        if self.used {
            return;
        }
        let mut next = self.limiter.slots();
        if *next == Some(self.slot + self.limiter.interval) {
            *next = Some(self.slot);
        }
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
    async fn a_caller_dropped_while_waiting_gives_its_slot_back() {
        let limiter = RateLimiter::per_second(1.0);
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        assert_eq!(limiter.acquire(deadline).await, Ok(Duration::ZERO));
        // The next slot is 1 s away; this caller is cut off after 0.5 s.
        let cut = tokio::time::timeout(Duration::from_millis(500), limiter.acquire(deadline)).await;
        assert!(cut.is_err());
        // The slot it booked (at 1 s) is free again: the next caller waits 0.5 s, not 1.5 s.
        assert_eq!(limiter.acquire(deadline).await, Ok(Duration::from_millis(500)));
        assert_eq!(Instant::now() - start, Duration::from_secs(1));
    }

    #[test]
    fn an_absurd_rate_gives_a_usable_limiter() {
        assert_eq!(RateLimiter::per_second(1e-300).interval, Duration::from_secs(1000));
        assert_eq!(RateLimiter::per_second(0.0).interval, Duration::from_secs(1000));
        assert_eq!(RateLimiter::per_second(1e300).interval, Duration::ZERO);
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
