//! What a room limits per client address: its seats (open connections) and its two
//! token buckets, one for frames after the hello and one for hellos (joins).
//!
//! The buckets live in storage, written through on every token taken: one storage
//! write per charged frame, however many sockets the address has, and none for a
//! refused frame (a refusal leaves the bucket as it was). A rebuilt room (a Durable
//! Object after eviction) reads them back from storage the first time it needs them,
//! so nothing about a bucket is kept in a session, and a reconnecting address finds
//! its bucket where it left it. In memory the room keeps the buckets it has read, and
//! what it keeps always equals what storage holds (see [`Addresses::prune`]).

use crate::config::Config;
use crate::ratelimit::Bucket;
use crate::session::ConnId;
use crate::storage::Storage;
use std::collections::{BTreeSet, HashMap};

/// Which bucket of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// Every frame a joined session sends (`rate_burst`, `rate_per_sec`).
    Frames,
    /// Every accepted hello (`join_burst`, `join_per_sec`).
    Joins,
}

impl Limit {
    /// The bucket's storage key. Message buckets keep the bare address, as stored
    /// before join buckets existed; a space never occurs in an address key.
    fn key(self, addr: &str) -> String {
        match self {
            Limit::Frames => addr.to_owned(),
            Limit::Joins => format!("join {addr}"),
        }
    }

    fn burst_and_rate(self, config: &Config) -> (u32, f64) {
        match self {
            Limit::Frames => (config.rate_burst, config.rate_per_sec),
            Limit::Joins => (config.join_burst, config.join_per_sec),
        }
    }
}

/// The addresses with at least one open connection in the room.
#[derive(Default)]
pub(crate) struct Addresses {
    map: HashMap<String, Address>,
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
            Limit::Joins => &mut self.joins,
        }
    }
}

impl Addresses {
    /// Open connections from `addr`.
    pub(crate) fn seats(&self, addr: &str) -> usize {
        self.map.get(addr).map_or(0, |a| a.conns.len())
    }

    pub(crate) fn add(&mut self, addr: &str, conn: ConnId) {
        self.map
            .entry(addr.to_owned())
            .or_default()
            .conns
            .insert(conn);
    }

    /// Forgets a connection. When it was the address's last, the address goes from
    /// memory (its buckets stay in storage, so reconnecting does not refill them) and
    /// buckets that have refilled by now are pruned from storage.
    pub(crate) fn remove(
        &mut self,
        addr: &str,
        conn: ConnId,
        config: &Config,
        storage: &mut impl Storage,
        now_ms: u64,
    ) {
        let Some(address) = self.map.get_mut(addr) else {
            return;
        };
        address.conns.remove(&conn);
        if address.conns.is_empty() {
            self.map.remove(addr);
            self.prune(config, storage, now_ms);
        }
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
        let kept = if allowed {
            // A failed write only forgives the client should the room be rebuilt.
            let _ = storage.save_bucket(&key, &next);
            next
        } else {
            current
        };
        *slot = Some(kept);
        allowed
    }

    /// Deletes the stored buckets that are full by now, whatever their kind, and lets
    /// go of the same ones in memory, so that memory and storage keep agreeing: a
    /// forgotten bucket is read back as full, which it is.
    fn prune(&mut self, config: &Config, storage: &mut impl Storage, now_ms: u64) {
        let refill_ms = [Limit::Frames, Limit::Joins]
            .iter()
            .map(|l| {
                let (burst, rate) = l.burst_and_rate(config);
                Bucket::full_refill_ms(burst, rate)
            })
            .max()
            .unwrap_or(0);
        let before = now_ms.saturating_sub(refill_ms);
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
