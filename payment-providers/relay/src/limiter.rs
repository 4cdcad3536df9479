//! A client-side sliding-window limit on quotes, so a burst of buyers cannot spend the
//! operator's Relay quota (Relay counts quotes per minute per key).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most `limit` quotes in any `window`.
pub(crate) struct QuoteLimiter {
    limit: usize,
    window: Duration,
    recent: Mutex<VecDeque<Instant>>,
}

impl QuoteLimiter {
    pub(crate) fn per_minute(limit: u32) -> Self {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
        Self {
            limit,
            window: Duration::from_secs(60),
            recent: Mutex::new(VecDeque::with_capacity(limit.min(1024))),
        }
    }

    /// Takes one quote from the window, or says in how many seconds one frees up.
    pub(crate) fn try_acquire(&self) -> Result<(), u64> {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> Result<(), u64> {
        // The queue is consistent after every statement, so a poisoned lock is still usable.
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        while recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            recent.pop_front();
        }
        if recent.len() < self.limit {
            recent.push_back(now);
            return Ok(());
        }
        let oldest = recent.front().copied().unwrap_or(now);
        let wait = self
            .window
            .saturating_sub(now.saturating_duration_since(oldest));
        Err((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_limit_until_the_window_moves() {
        let l = QuoteLimiter::per_minute(2);
        let t0 = Instant::now();
        assert_eq!(l.try_acquire_at(t0), Ok(()));
        assert_eq!(l.try_acquire_at(t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(
            l.try_acquire_at(t0 + Duration::from_millis(20_500)),
            Err(40)
        );
        assert_eq!(l.try_acquire_at(t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(l.try_acquire_at(t0 + Duration::from_secs(61)), Err(9));
        assert_eq!(l.try_acquire_at(t0 + Duration::from_secs(70)), Ok(()));
    }
}
