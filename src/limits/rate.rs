//! Per-tenant requests-per-minute and tokens-per-minute limits as token buckets.
//!
//! A bucket holds up to one minute's allowance and refills continuously. Tokens are reserved
//! at admission (the prompt estimate plus the output limit) and reconciled when the response
//! ends: unused tokens go back, tokens beyond the reservation are taken (the bucket may go
//! into debt, which delays the next requests instead of letting the tenant overshoot).
//! Because a reservation is only granted from tokens the bucket holds, concurrent requests
//! can never together overshoot the limit by more than the reconciliation of one request.
//!
//! This is the same short per-tenant mutex as the budget ledger: two floats updated
//! together, never held across an await.
#![deny(clippy::arithmetic_side_effects)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct Bucket {
    capacity: f64,
    per_second: f64,
    state: Mutex<(f64, Instant)>,
}

/// A refused take: how long until it would fit, and the state for the headers.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    pub retry_after: Duration,
}

/// What the `x-ratelimit-*` headers report for one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketStatus {
    pub limit: u64,
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

impl Bucket {
    pub fn per_minute(limit: u32, now: Instant) -> Bucket {
        let capacity = f64::from(limit);
        Bucket {
            capacity,
            per_second: capacity / 60.0,
            state: Mutex::new((capacity, now)),
        }
    }

    pub fn limit(&self) -> u64 {
        self.capacity as u64
    }

    fn refill(&self, state: &mut (f64, Instant), now: Instant) {
        let elapsed = now.saturating_duration_since(state.1).as_secs_f64();
        state.0 = (state.0 + elapsed * self.per_second).min(self.capacity);
        state.1 = now;
    }

    /// Takes `n` if the bucket holds them; otherwise says how long until it would.
    pub fn take(&self, n: u64, now: Instant) -> Result<BucketStatus, Wait> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut state, now);
        let n = n as f64;
        if n > state.0 {
            // More than a full bucket can never fit: report the time to a full bucket.
            let missing = n.min(self.capacity) - state.0;
            let secs = (missing / self.per_second).max(0.001);
            return Err(Wait {
                retry_after: seconds(secs),
            });
        }
        state.0 -= n;
        Ok(self.status_of(&state))
    }

    /// Settles a reservation of `reserved` tokens that used `actual`.
    pub fn reconcile(&self, reserved: u64, actual: u64, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut state, now);
        state.0 = (state.0 + reserved as f64 - actual as f64).min(self.capacity);
    }

    pub fn status(&self, now: Instant) -> BucketStatus {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.refill(&mut state, now);
        self.status_of(&state)
    }

    fn status_of(&self, state: &(f64, Instant)) -> BucketStatus {
        let missing = (self.capacity - state.0).max(0.0);
        BucketStatus {
            limit: self.capacity as u64,
            remaining: state.0.max(0.0) as u64,
            reset: seconds(missing / self.per_second),
        }
    }
}

/// A wait in seconds as a `Duration`; a debt so deep that the wait does not fit (a provider
/// reporting absurd usage) is the longest wait, never a panic.
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// A tenant's two buckets (either may be absent).
#[derive(Debug)]
pub struct RateLimiter {
    pub requests: Option<Bucket>,
    pub tokens: Option<Bucket>,
}

/// Tokens held for one request; reconciled with the real count when it ends.
#[derive(Debug)]
pub struct TokenHold {
    limiter: Arc<RateLimiter>,
    reserved: u64,
    done: bool,
    /// Taken from the tenant's buckets in Redis: reconciled there.
    shared: Option<Arc<super::TenantLimits>>,
}

impl TokenHold {
    pub fn new(limiter: Arc<RateLimiter>, reserved: u64) -> TokenHold {
        TokenHold {
            limiter,
            reserved,
            done: false,
            shared: None,
        }
    }

    /// Tokens the tenant's shared bucket in Redis granted.
    pub fn in_shared(limits: Arc<super::TenantLimits>, reserved: u64) -> TokenHold {
        TokenHold {
            limiter: limits.rate.clone(),
            reserved,
            done: false,
            shared: Some(limits),
        }
    }

    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    pub fn reconcile(mut self, actual: u64) {
        self.finish(actual);
    }

    fn finish(&mut self, actual: u64) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        if let Some(limits) = self.shared.take() {
            let (Some(shared), Some(per_minute)) =
                (limits.shared.clone(), limits.limits.tokens_per_minute)
            else {
                return;
            };
            let reserved = self.reserved;
            // After the response; if Redis does not answer, the difference is lost to the
            // shared bucket (it refills within the minute anyway).
            shared.clone().spawn(async move {
                crate::limits::redis_rate::give_back(
                    &shared,
                    &limits.name,
                    per_minute,
                    reserved,
                    actual,
                )
                .await;
            });
            return;
        }
        if let Some(tokens) = &self.limiter.tokens {
            tokens.reconcile(self.reserved, actual, Instant::now());
        }
    }
}

impl Drop for TokenHold {
    /// Unreconciled (the request failed before any usage): nothing was used.
    fn drop(&mut self) {
        self.finish(0);
    }
}

/// Formats a duration like OpenAI's `x-ratelimit-reset-*` headers: `1s`, `6m0s`, `250ms`.
pub fn reset_header(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64().ceil() as u64;
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{}s", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_until_empty_then_says_when() {
        let t0 = Instant::now();
        let bucket = Bucket::per_minute(60, t0);
        assert_eq!(bucket.take(50, t0).unwrap().remaining, 10);
        let wait = bucket.take(20, t0).unwrap_err();
        // 10 missing at 1 per second.
        assert_eq!(wait.retry_after.as_secs(), 10);
        // After 10 s the 20 fit.
        assert!(bucket.take(20, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn reconcile_returns_unused_and_takes_overuse() {
        let t0 = Instant::now();
        let bucket = Bucket::per_minute(100, t0);
        bucket.take(80, t0).unwrap();
        bucket.reconcile(80, 30, t0);
        assert_eq!(bucket.status(t0).remaining, 70);
        bucket.reconcile(0, 90, t0);
        // In debt: nothing remains, and a request must wait for the debt to refill too.
        assert_eq!(bucket.status(t0).remaining, 0);
        assert!(bucket.take(1, t0).is_err());
    }

    #[test]
    fn larger_than_the_bucket_reports_time_to_full() {
        let t0 = Instant::now();
        let bucket = Bucket::per_minute(60, t0);
        bucket.take(60, t0).unwrap();
        assert_eq!(bucket.take(1000, t0).unwrap_err().retry_after.as_secs(), 60);
    }

    #[test]
    fn absurd_usage_puts_the_bucket_in_debt_without_a_panic() {
        let now = Instant::now();
        let bucket = Bucket::per_minute(2_000_000, now);
        bucket.take(10, now).unwrap();
        bucket.reconcile(10, u64::MAX, now);
        let status = bucket.status(now);
        assert_eq!(status.remaining, 0);
        assert!(status.reset > Duration::from_secs(3600));
        let wait = bucket.take(1, now).unwrap_err();
        assert!(wait.retry_after > Duration::from_secs(3600));
        assert_eq!(seconds(f64::INFINITY), Duration::MAX);
        assert_eq!(seconds(f64::NAN), Duration::ZERO);
        assert!(!reset_header(Duration::MAX).is_empty());
    }

    #[test]
    fn reset_header_format() {
        assert_eq!(reset_header(Duration::from_millis(250)), "250ms");
        assert_eq!(reset_header(Duration::from_millis(1500)), "2s");
        assert_eq!(reset_header(Duration::from_secs(360)), "6m0s");
    }
}
