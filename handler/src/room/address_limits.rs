//! What a room limits per client address: its seats (open connections) and its two
//! token buckets, one for frames after the hello and one for hellos (joins).
//!
//! An IPv6 address is keyed by its /64, and its seats and joins also count for its /48
//! ([`wide_key`]) with caps `address_48_factor` times larger, so a site with a /48 does
//! not get 65,536 times the seats and joins of one address. The /48 is an entry of the
//! same map under its own key (`2001:db8:1::/48`), holding the connections of all its
//! /64s and a join bucket of its own.
//!
//! The buckets live in storage. A join bucket is written through on every token taken.
//! A frame bucket, charged on every frame, is written at most once per
//! `rate_persist_ms`: a charge marks it changed ("dirty"), and the room writes every
//! changed bucket when the oldest change is that old ([`Addresses::persist_due`], from
//! the room's timer: [`crate::Room::next_flush`]), when the address's last connection
//! leaves, and before the room is dropped ([`crate::Room::flush`]; a room with a changed
//! bucket is not quiet). So a busy address costs one storage write per interval instead
//! of one per frame (on the Durable Object a SQL statement per message), and only a
//! crash loses up to `rate_persist_ms` of its spending. With `rate_persist_ms` 0 every
//! charge is written through. None is written for a refused frame (a refusal leaves
//! the bucket as it was), and one write serves all of an address's sockets. A rebuilt
//! room (a Durable Object after eviction) reads the buckets back from storage the first
//! time it needs them, so nothing about a bucket is kept in a session, and a
//! reconnecting address finds its bucket where it left it. In memory the room keeps
//! the buckets it has read; apart from the changed ones not yet written, what it keeps
//! equals what storage holds (see [`Addresses::prune`]).
//!
//! Pruning is lazy: at most once per [`Addresses::prune_every_ms`] (the slower full
//! refill, at least [`PRUNE_EVERY_MIN_MS`]), when an address's last connection leaves.
//! A connect-then-close loop into an open room would otherwise cost a `DELETE` per
//! close; a bucket that stays in storage a little longer is full when read back, which
//! is what a pruned one reads as, so only the number of rows kept changes: at most the
//! addresses charged within two such intervals.

use crate::edge::address::wide_key;
use crate::protocol::config::Config;
use crate::room::ratelimit::Bucket;
use crate::room::session::ConnId;
use crate::room::storage::Storage;
use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

/// Which bucket of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Every frame a joined session sends (`rate_burst`, `rate_per_sec`).
    Frames,
    /// Every accepted hello (`join_burst`, `join_per_sec`).
    Joins,
    /// Every accepted hello, per /48 (`address_48_factor` × `join_burst`, ×
    /// `join_per_sec`). Kept in the joins slot of the /48's entry.
    WideJoins,
}

impl Limit {
    /// The bucket's storage key. Message buckets keep the bare address, as stored
    /// before join buckets existed; a space never occurs in an address key.
    /// Borrowed for a message bucket, which is charged on every frame.
    fn key(self, addr: &str) -> Cow<'_, str> {
        match self {
            Limit::Frames => Cow::Borrowed(addr),
            Limit::Joins | Limit::WideJoins => Cow::Owned(format!("join {addr}")),
        }
    }

    fn burst_and_rate(self, config: &Config) -> (u32, f64) {
        match self {
            Limit::Frames => (config.rate_burst, config.rate_per_sec),
            Limit::Joins => (config.join_burst, config.join_per_sec),
            Limit::WideJoins => {
                let f = config.address_48_factor;
                (
                    config.join_burst.saturating_mul(f),
                    config.join_per_sec * f64::from(f),
                )
            }
        }
    }
}

/// The least time between two prunes of the stored buckets, whatever the refill rates:
/// with both rates near their maximum a full refill takes a millisecond, and pruning
/// that often would put a `DELETE` back on nearly every close.
pub(crate) const PRUNE_EVERY_MIN_MS: u64 = 1_000;

/// The addresses with at least one open connection in the room.
#[derive(Default)]
pub(crate) struct Addresses {
    map: HashMap<String, Address>,
    /// When the stored buckets were last pruned by this instance (`None`: not yet; a
    /// rebuilt room prunes at the first leave, which is once per rebuild).
    pruned_ms: Option<u64>,
    /// Addresses whose frame bucket changed since it was last written, and when the
    /// oldest of those changes happened (`None` when there are none).
    dirty: BTreeSet<String>,
    dirty_since: Option<u64>,
}

/// One address: its connections and the buckets read from storage so far (`None`: not
/// read yet).
#[derive(Default)]
struct Address {
    conns: BTreeSet<ConnId>,
    frames: Option<Bucket>,
    joins: Option<Bucket>,
}

impl Address {
    fn slot(&mut self, limit: Limit) -> &mut Option<Bucket> {
        match limit {
            Limit::Frames => &mut self.frames,
            Limit::Joins | Limit::WideJoins => &mut self.joins,
        }
    }
}

impl Addresses {
    /// Open connections from `addr`.
    pub(crate) fn seats(&self, addr: &str) -> usize {
        self.map.get(addr).map_or(0, |a| a.conns.len())
    }

    /// True when `addr` (or its /48) holds all the seats it may: `seats_per_address`
    /// (`address_48_factor` times that for the /48).
    pub(crate) fn seats_full(&self, addr: &str, config: &Config) -> bool {
        let wide_cap = config
            .seats_per_address
            .saturating_mul(config.address_48_factor as usize);
        self.seats(addr) >= config.seats_per_address
            || wide_key(addr).is_some_and(|wide| self.seats(&wide) >= wide_cap)
    }

    /// Seats `conn` for `addr` and its /48.
    pub(crate) fn add(&mut self, addr: &str, conn: ConnId) {
        for key in std::iter::once(addr.to_owned()).chain(wide_key(addr)) {
            self.map.entry(key).or_default().conns.insert(conn);
        }
    }

    /// Takes a join token from `addr` and then from its /48. False if either bucket is
    /// empty (a token taken from the /64 before the /48 refused stays taken: the hello
    /// is refused either way).
    pub(crate) fn take_join(
        &mut self,
        addr: &str,
        config: &Config,
        storage: &mut impl Storage,
        now_ms: u64,
    ) -> bool {
        self.take(Limit::Joins, addr, config, storage, now_ms)
            && wide_key(addr)
                .is_none_or(|wide| self.take(Limit::WideJoins, &wide, config, storage, now_ms))
    }

    /// Forgets a connection, for its address and its /48. When it was the address's
    /// last, the address goes from memory (its buckets stay in storage, so reconnecting
    /// does not refill them) and, if the last prune is [`Addresses::prune_every_ms`]
    /// old, buckets that have refilled by now are pruned from storage.
    pub(crate) fn remove(
        &mut self,
        addr: &str,
        conn: ConnId,
        config: &Config,
        storage: &mut impl Storage,
        now_ms: u64,
    ) {
        let mut emptied = false;
        for key in std::iter::once(addr.to_owned()).chain(wide_key(addr)) {
            let Some(address) = self.map.get_mut(&key) else {
                continue;
            };
            address.conns.remove(&conn);
            if address.conns.is_empty() {
                // Its changed bucket goes to storage before the address leaves memory,
                // so a reconnect reads it back.
                if self.dirty.remove(&key) {
                    if let Some(bucket) = &address.frames {
                        // A failed write only forgives the client.
                        let _ = storage.save_bucket(&key, bucket);
                    }
                    if self.dirty.is_empty() {
                        self.dirty_since = None;
                    }
                }
                self.map.remove(&key);
                emptied = true;
            }
        }
        if emptied {
            let every = Self::prune_every_ms(config);
            // A clock that stepped back prunes too, rather than waiting for it to catch up.
            let due = self
                .pruned_ms
                .is_none_or(|at| now_ms < at || now_ms - at >= every);
            if due {
                self.prune(config, storage, now_ms);
            }
        }
    }

    /// Milliseconds from empty to full for the slower kind of bucket: older buckets are
    /// full, so they can go.
    fn refill_ms(config: &Config) -> u64 {
        [Limit::Frames, Limit::Joins, Limit::WideJoins]
            .iter()
            .map(|l| {
                let (burst, rate) = l.burst_and_rate(config);
                Bucket::full_refill_ms(burst, rate)
            })
            // The publish buckets of service tokens (`publish.rs`) share the table:
            // a prune must not forgive one before it has refilled either.
            .chain([Bucket::full_refill_ms(
                config.publish_burst,
                config.publish_per_sec,
            )])
            .max()
            .unwrap_or(0)
    }

    /// The least time between two prunes: the slower full refill, at least
    /// [`PRUNE_EVERY_MIN_MS`]. Pruning more often would find little new to delete.
    pub(crate) fn prune_every_ms(config: &Config) -> u64 {
        Self::refill_ms(config).max(PRUNE_EVERY_MIN_MS)
    }

    /// Takes one token from `addr`'s bucket of kind `limit`. False (and no change) if
    /// the bucket is empty.
    pub(crate) fn take(
        &mut self,
        limit: Limit,
        addr: &str,
        config: &Config,
        storage: &mut impl Storage,
        now_ms: u64,
    ) -> bool {
        let Some(address) = self.map.get_mut(addr) else {
            return false;
        };
        let (burst, rate) = limit.burst_and_rate(config);
        let key = limit.key(addr);
        let slot = address.slot(limit);
        let current = match slot.take() {
            Some(b) => b,
            // Unknown to storage (or unreadable, which only forgives the client): full.
            None => storage
                .load_bucket(&key)
                .ok()
                .flatten()
                .unwrap_or_else(|| Bucket::full(burst, now_ms)),
        };
        let mut next = current.clone();
        let allowed = next.try_take(burst, rate, now_ms);
        let kept = if !allowed {
            current
        } else if limit == Limit::Frames && config.rate_persist_ms > 0 {
            // Written later (see the module comment).
            if self.dirty.insert(key.into_owned()) && self.dirty_since.is_none() {
                self.dirty_since = Some(now_ms);
            }
            next
        } else {
            // A failed write only forgives the client should the room be rebuilt.
            let _ = storage.save_bucket(&key, &next);
            next
        };
        *slot = Some(kept);
        allowed
    }

    /// When the changed frame buckets are due to be written: `rate_persist_ms` after
    /// the oldest change; `None` when none has changed.
    pub(crate) fn persist_at(&self, config: &Config) -> Option<u64> {
        self.dirty_since
            .map(|since| since.saturating_add(config.rate_persist_ms))
    }

    /// True when a frame bucket has changed since it was last written.
    pub(crate) fn has_unwritten(&self) -> bool {
        self.dirty_since.is_some()
    }

    /// Writes the changed frame buckets if the oldest change is `rate_persist_ms` old
    /// (or the clock stepped back past it).
    pub(crate) fn persist_due(&mut self, config: &Config, storage: &mut impl Storage, now_ms: u64) {
        if let Some(since) = self.dirty_since {
            if now_ms < since || now_ms - since >= config.rate_persist_ms {
                self.persist(storage);
            }
        }
    }

    /// Writes every changed frame bucket now, whatever its age: for a room about to be
    /// dropped. A failed write only forgives the client should the room be rebuilt.
    pub(crate) fn persist(&mut self, storage: &mut impl Storage) {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(bucket) = self.map.get(&key).and_then(|a| a.frames.as_ref()) {
                let _ = storage.save_bucket(&key, bucket);
            }
        }
        self.dirty_since = None;
    }

    /// Deletes the stored buckets that are full by now, whatever their kind, and lets
    /// go of the same ones in memory, so that memory and storage keep agreeing: a
    /// forgotten bucket is read back as full, which it is.
    fn prune(&mut self, config: &Config, storage: &mut impl Storage, now_ms: u64) {
        let before = now_ms.saturating_sub(Self::refill_ms(config));
        // Attempted, whatever the outcome: a failing store is not retried on every close.
        self.pruned_ms = Some(now_ms);
        if storage.prune_buckets(before).is_err() {
            // Nothing was deleted, so memory still agrees with storage.
            return;
        }
        for address in self.map.values_mut() {
            for limit in [Limit::Frames, Limit::Joins] {
                let slot = address.slot(limit);
                if slot.as_ref().is_some_and(|b| b.updated_ms < before) {
                    *slot = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::storage::MemoryStorage;

    /// One token per bucket, refilled in one second (every kind), so a second frame in
    /// the same millisecond is refused and a bucket is full again 1000 ms after its
    /// last charge. Frame buckets are written through, as join buckets are.
    fn one_token() -> Config {
        Config {
            rate_burst: 1,
            rate_per_sec: 1.0,
            join_burst: 1,
            join_per_sec: 1.0,
            publish_burst: 1,
            publish_per_sec: 1.0,
            rate_persist_ms: 0,
            ..Config::default()
        }
    }

    #[test]
    fn a_frame_bucket_is_written_once_per_interval_and_when_its_address_leaves() {
        let cfg = Config {
            rate_burst: 100,
            rate_persist_ms: 1000,
            ..Config::default()
        };
        let mut storage = MemoryStorage::new();
        let mut addrs = Addresses::default();
        addrs.add("a", 1);
        addrs.add("b", 2);
        for t in 1_000..1_005 {
            assert!(addrs.take(Limit::Frames, "a", &cfg, &mut storage, t));
        }
        assert_eq!(storage.load_bucket("a").unwrap(), None, "not written yet");
        assert_eq!(
            addrs.persist_at(&cfg),
            Some(2_000),
            "due after the first change"
        );
        addrs.persist_due(&cfg, &mut storage, 1_999);
        assert_eq!(storage.load_bucket("a").unwrap(), None, "not due at 1999");
        addrs.persist_due(&cfg, &mut storage, 2_000);
        let charged = addrs.map.get("a").unwrap().frames.clone();
        assert_eq!(
            storage.load_bucket("a").unwrap(),
            charged,
            "written when due"
        );
        assert!(!addrs.has_unwritten());
        assert_eq!(addrs.persist_at(&cfg), None);
        // A join bucket is still written at once.
        assert!(addrs.take(Limit::Joins, "b", &cfg, &mut storage, 2_050));
        assert!(storage.load_bucket("join b").unwrap().is_some());
        // Charged again, then the address's last connection leaves before the interval
        // is over: its bucket is written as it leaves.
        assert!(addrs.take(Limit::Frames, "a", &cfg, &mut storage, 2_100));
        let charged = addrs.map.get("a").unwrap().frames.clone();
        assert_ne!(storage.load_bucket("a").unwrap(), charged);
        addrs.remove("a", 1, &cfg, &mut storage, 2_200);
        assert_eq!(
            storage.load_bucket("a").unwrap(),
            charged,
            "written on leaving"
        );
        assert!(!addrs.has_unwritten());
        // `persist` writes whatever changed, due or not (a room about to be dropped).
        addrs.add("a", 3);
        assert!(addrs.take(Limit::Frames, "a", &cfg, &mut storage, 2_300));
        addrs.persist(&mut storage);
        let charged = addrs.map.get("a").unwrap().frames.clone();
        assert_eq!(
            storage.load_bucket("a").unwrap(),
            charged,
            "written by persist"
        );
    }

    #[test]
    fn a_drained_bucket_limits_its_address_even_when_its_write_was_lost() {
        let cfg = one_token();
        let mut storage = MemoryStorage::new();
        let mut addrs = Addresses::default();
        addrs.add("a", 1);
        addrs.add("b", 2);
        assert!(addrs.take(Limit::Frames, "a", &cfg, &mut storage, 5_000));
        // The write of the drained bucket is lost (a failed save): storage would read
        // it back as full. The room keeps the bucket it charged, so the client is only
        // forgiven if the room is rebuilt, not on its very next frame.
        storage.prune_buckets(u64::MAX).unwrap();
        assert_eq!(storage.kept_buckets(), 0, "storage has no bucket of \"a\"");
        assert!(!addrs.take(Limit::Frames, "a", &cfg, &mut storage, 5_000));
        // Another address leaving prunes the buckets that have refilled; "a"'s was
        // charged just now, so the room keeps it and goes on refusing.
        addrs.remove("b", 2, &cfg, &mut storage, 5_500);
        assert!(!addrs.take(Limit::Frames, "a", &cfg, &mut storage, 5_500));
        // Once refilled, "a" is served again.
        assert!(addrs.take(Limit::Frames, "a", &cfg, &mut storage, 6_000));
    }

    #[test]
    fn a_prune_keeps_in_memory_exactly_the_buckets_storage_keeps() {
        let cfg = one_token();
        let mut storage = MemoryStorage::new();
        let mut addrs = Addresses::default();
        for (conn, addr) in ["old", "edge", "new", "leaving"].iter().enumerate() {
            addrs.add(addr, conn as ConnId);
        }
        // "old" is charged long before the prune (full again by then), "edge" exactly
        // one full refill before it, "new" just before it.
        for limit in [Limit::Frames, Limit::Joins] {
            assert!(addrs.take(limit, "old", &cfg, &mut storage, 1_000));
            assert!(addrs.take(limit, "edge", &cfg, &mut storage, 4_000));
            assert!(addrs.take(limit, "new", &cfg, &mut storage, 4_900));
        }
        // The last connection of "leaving" goes at 5000: buckets last updated before
        // 4000 are full, so they go from storage.
        addrs.remove("leaving", 3, &cfg, &mut storage, 5_000);
        for addr in ["old", "edge", "new"] {
            for limit in [Limit::Frames, Limit::Joins] {
                let stored = storage.load_bucket(&limit.key(addr)).unwrap();
                let kept = addrs.map.get_mut(addr).unwrap().slot(limit).clone();
                assert_eq!(kept, stored, "{addr} {limit:?}: memory agrees with storage");
                assert_eq!(
                    kept.is_some(),
                    addr != "old",
                    "{addr} {limit:?}: only the refilled bucket is let go"
                );
            }
        }
    }
}
