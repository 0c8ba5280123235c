//! The per-address limit on opening rooms (`room_open_burst`, `room_open_per_sec`): a
//! token bucket per client address, server-wide, charged when a connection would start
//! a room that is not open (no connection in it). Rooms are cheap while empty, but one
//! client opening them as fast as it can would still cost memory and CPU; this bounds
//! that to the bucket's rate per address (and per IPv6 /48, see [`OpenLimit`]).

use chat_handler::edge::wide_key;
use chat_handler::{Bucket, Config};
use std::collections::HashMap;

/// Tracked addresses below which pruning is not worth its scan.
const PRUNE_FLOOR: usize = 1024;

/// The per-address opens: one bucket per address key (IPv4 address, IPv6 /64), and
/// one per IPv6 /48 with `address_48_factor` times the burst and rate, so a site with a
/// /48 cannot open 65,536 times the rooms of one address.
pub(crate) struct OpenLimit {
    narrow: Buckets,
    wide: Buckets,
}

impl OpenLimit {
    pub(crate) fn new(config: &Config) -> Self {
        let f = config.address_48_factor;
        OpenLimit {
            narrow: Buckets::new(config.room_open_burst, config.room_open_per_sec),
            wide: Buckets::new(
                config.room_open_burst.saturating_mul(f),
                config.room_open_per_sec * f64::from(f),
            ),
        }
    }

    /// Charges one room opening to `addr` (an address key), and to its /48 if it has
    /// one. `Err` holds the milliseconds until the address may open one again. (A token
    /// taken from the address before its /48 refused stays taken: the open is refused
    /// either way.)
    pub(crate) fn charge(&mut self, addr: &str, now_ms: u64) -> Result<(), u64> {
        self.narrow.charge(addr, now_ms)?;
        match wide_key(addr) {
            Some(wide) => self.wide.charge(&wide, now_ms),
            None => Ok(()),
        }
    }

    /// Addresses tracked (for tests).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.narrow.buckets.len() + self.wide.buckets.len()
    }
}

/// Token buckets by key, pruned as they refill.
struct Buckets {
    burst: u32,
    per_sec: f64,
    buckets: HashMap<String, Bucket>,
    /// Prune when the map reaches this size: twice its size after the last prune, so
    /// pruning costs O(1) per charge however many addresses come and go.
    prune_at: usize,
}

impl Buckets {
    fn new(burst: u32, per_sec: f64) -> Self {
        Buckets {
            burst,
            per_sec,
            buckets: HashMap::new(),
            prune_at: PRUNE_FLOOR,
        }
    }

    fn charge(&mut self, key: &str, now_ms: u64) -> Result<(), u64> {
        let (burst, per_sec) = (self.burst, self.per_sec);
        if self.buckets.len() >= self.prune_at {
            // A bucket that has refilled is the same as none.
            self.buckets
                .retain(|_, b| !b.is_full_at(burst, per_sec, now_ms));
            self.prune_at = (self.buckets.len() * 2).max(PRUNE_FLOOR);
        }
        let bucket = match self.buckets.get_mut(key) {
            Some(bucket) => bucket,
            None => self
                .buckets
                .entry(key.to_owned())
                .or_insert_with(|| Bucket::full(burst, now_ms)),
        };
        if bucket.try_take(burst, per_sec, now_ms) {
            Ok(())
        } else {
            Err(bucket.ms_until_token(per_sec))
        }
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

    /// IPv6 cannot be tested over loopback beyond `::1`, so the /48 cap is tested here.
    #[test]
    fn opens_also_count_per_48_with_a_larger_bucket() {
        let mut l = OpenLimit::new(&Config {
            room_open_burst: 2,
            room_open_per_sec: 1.0,
            address_48_factor: 2,
            ..Config::default()
        });
        // Two /64s of one /48 take its four opens, two each.
        for net in ["2001:db8:7:1::/64", "2001:db8:7:2::/64"] {
            assert_eq!(l.charge(net, 0), Ok(()));
            assert_eq!(l.charge(net, 0), Ok(()));
            assert!(l.charge(net, 0).is_err(), "the /64's own cap");
        }
        assert_eq!(
            l.charge("2001:db8:7:3::/64", 0),
            Err(500),
            "a fresh /64 of a drained /48 waits for the /48's refill (2 per second)"
        );
        assert_eq!(l.charge("2001:db8:8:3::/64", 0), Ok(()), "another /48");
        assert_eq!(l.charge("10.0.0.1", 0), Ok(()), "IPv4 has no /48");
        assert_eq!(l.charge("2001:db8:7:4::/64", 500), Ok(()));
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
