//! The per-address limit on opening rooms (`room_open_burst`, `room_open_per_sec`): a
//! token bucket per client address, server-wide, charged when a connection would start
//! a room that is not open (no connection in it). Rooms are cheap while empty, but one
//! client opening them as fast as it can would still cost memory and CPU; this bounds
//! that to the bucket's rate per address.

use chat_handler::{Bucket, Config};
use std::collections::HashMap;

/// Tracked addresses below which pruning is not worth its scan.
const PRUNE_FLOOR: usize = 1024;

pub(crate) struct OpenLimit {
    burst: u32,
    per_sec: f64,
    buckets: HashMap<String, Bucket>,
    /// Prune when the map reaches this size: twice its size after the last prune, so
    /// pruning costs O(1) per charge however many addresses come and go.
    prune_at: usize,
}

impl OpenLimit {
    pub(crate) fn new(config: &Config) -> Self {
        OpenLimit {
            burst: config.room_open_burst,
            per_sec: config.room_open_per_sec,
            buckets: HashMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }

    /// Charges one room opening to `addr`. `Err` holds the milliseconds until the
    /// address may open one again.
    pub(crate) fn charge(&mut self, addr: &str, now_ms: u64) -> Result<(), u64> {
        let (burst, per_sec) = (self.burst, self.per_sec);
        if self.buckets.len() >= self.prune_at {
            // A bucket that has refilled is the same as none.
            self.buckets
                .retain(|_, b| !b.is_full_at(burst, per_sec, now_ms));
            self.prune_at = (self.buckets.len() * 2).max(PRUNE_FLOOR);
        }
        let bucket = match self.buckets.get_mut(addr) {
            Some(bucket) => bucket,
            None => self
                .buckets
                .entry(addr.to_owned())
                .or_insert_with(|| Bucket::full(burst, now_ms)),
        };
        if bucket.try_take(burst, per_sec, now_ms) {
            Ok(())
        } else {
            Err(bucket.ms_until_token(per_sec))
        }
    }

    /// Addresses tracked (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(burst: u32, per_sec: f64) -> OpenLimit {
        OpenLimit::new(&Config {
            room_open_burst: burst,
            room_open_per_sec: per_sec,
            ..Config::default()
        })
    }

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let mut l = limit(3, 0.5);
        for _ in 0..3 {
            assert_eq!(l.charge("a", 0), Ok(()));
        }
        assert_eq!(l.charge("a", 0), Err(2000));
        assert_eq!(l.charge("a", 1_000), Err(1_000));
        assert_eq!(l.charge("b", 1_000), Ok(()), "another address has its own");
        assert_eq!(l.charge("a", 2000), Ok(()));
        assert_eq!(l.charge("a", 2000), Err(2000));
    }

    #[test]
    fn refilled_addresses_are_forgotten() {
        let mut l = limit(2, 1.0);
        for i in 0..PRUNE_FLOOR {
            l.charge(&format!("10.0.{}.{}", i / 256, i % 256), 0)
                .unwrap();
        }
        assert_eq!(l.tracked(), PRUNE_FLOOR);
        // Two seconds later every one of them has refilled: the next charge prunes.
        l.charge("fresh", 2000).unwrap();
        assert_eq!(l.tracked(), 1);
    }
}
