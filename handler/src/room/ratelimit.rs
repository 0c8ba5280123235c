//! A token bucket per client address. Pure arithmetic on times passed in.

use serde::{Deserialize, Serialize};

/// The state of one address's bucket at `updated_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub updated_ms: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn full(burst: u32, now_ms: u64) -> Self {
        Bucket {
            tokens: f64::from(burst),
            updated_ms: now_ms,
        }
    }

    /// Refills for the time since the last update, capped at `burst`. A clock that
    /// steps backwards refills nothing rather than draining the bucket.
    pub fn refill(&mut self, burst: u32, per_sec: f64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.updated_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * per_sec).min(f64::from(burst));
        self.updated_ms = self.updated_ms.max(now_ms);
    }

    /// Refills, then takes one token if there is one.
    pub fn try_take(&mut self, burst: u32, per_sec: f64, now_ms: u64) -> bool {
        self.refill(burst, per_sec, now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Milliseconds until the bucket holds a whole token again (0 if it does now), as of
    /// its last update: what a refusal's `Retry-After` is computed from.
    pub fn ms_until_token(&self, per_sec: f64) -> u64 {
        let missing = 1.0 - self.tokens;
        if missing <= 0.0 {
            return 0;
        }
        (missing / per_sec * 1000.0).ceil().min(u64::MAX as f64) as u64
    }

    /// Milliseconds an empty bucket takes to refill completely.
    pub fn full_refill_ms(burst: u32, per_sec: f64) -> u64 {
        (f64::from(burst) / per_sec * 1000.0)
            .ceil()
            .min(u64::MAX as f64) as u64
    }

    /// True once the bucket has refilled completely, so forgetting it changes nothing.
    pub fn is_full_at(&self, burst: u32, per_sec: f64, now_ms: u64) -> bool {
        let mut b = self.clone();
        b.refill(burst, per_sec, now_ms);
        b.tokens >= f64::from(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let mut b = Bucket::full(10, 0);
        for _ in 0..10 {
            assert!(b.try_take(10, 1.0, 0));
        }
        assert!(!b.try_take(10, 1.0, 999));
        assert!(b.try_take(10, 1.0, 1000));
        assert!(!b.try_take(10, 1.0, 1500));
        // Long idle refills to the burst, not beyond.
        b.refill(10, 1.0, 1_000_000);
        assert_eq!(b.tokens, 10.0);
    }

    #[test]
    fn time_until_the_next_token() {
        let mut b = Bucket::full(2, 0);
        assert_eq!(b.ms_until_token(0.5), 0);
        assert!(b.try_take(2, 0.5, 0) && b.try_take(2, 0.5, 0));
        assert!(!b.try_take(2, 0.5, 0));
        assert_eq!(b.ms_until_token(0.5), 2000);
        // Half a second later, a quarter of a token has come back.
        b.refill(2, 0.5, 500);
        assert_eq!(b.ms_until_token(0.5), 1500);
        assert!(!b.try_take(2, 0.5, 1999));
        assert!(b.try_take(2, 0.5, 2000));
    }

    #[test]
    fn refill_follows_the_rate() {
        // Four tokens a second: one every 250 ms.
        let mut b = Bucket::full(2, 0);
        assert!(b.try_take(2, 4.0, 0));
        assert!(b.try_take(2, 4.0, 0));
        assert!(!b.try_take(2, 4.0, 249));
        assert!(b.try_take(2, 4.0, 250));
        b.refill(2, 4.0, 375);
        assert_eq!(b.tokens, 0.5);
        // Half a token a second: one every 2 s.
        let mut b = Bucket::full(1, 0);
        assert!(b.try_take(1, 0.5, 0));
        assert!(!b.try_take(1, 0.5, 1999));
        assert!(b.try_take(1, 0.5, 2000));
    }

    #[test]
    fn full_refill_time_and_fullness() {
        assert_eq!(Bucket::full_refill_ms(10, 1.0), 10_000);
        assert_eq!(Bucket::full_refill_ms(10, 4.0), 2_500);
        // Rounded up: a third of a second is 334 ms, not 333.
        assert_eq!(Bucket::full_refill_ms(1, 3.0), 334);
        let mut b = Bucket::full(4, 1000);
        assert!(b.is_full_at(4, 2.0, 1000));
        assert!(b.try_take(4, 2.0, 1000));
        assert!(!b.is_full_at(4, 2.0, 1000));
        assert!(!b.is_full_at(4, 2.0, 1499));
        assert!(b.is_full_at(4, 2.0, 1500));
        // Asking does not refill the bucket itself.
        assert_eq!(b.tokens, 3.0);
    }

    #[test]
    fn clock_going_backwards_is_harmless() {
        let mut b = Bucket::full(2, 5000);
        assert!(b.try_take(2, 1.0, 5000));
        assert!(b.try_take(2, 1.0, 1000));
        assert!(!b.try_take(2, 1.0, 1000));
        assert_eq!(b.updated_ms, 5000);
    }
}
