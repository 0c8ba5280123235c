//! The per-address cap on open connections (`--max-connections-per-address`): how many
//! HTTP connections (an upgraded WebSocket keeps its connection's place) one client
//! address may hold at once, so that one address cannot take every place under
//! `--max-connections` and lock everyone else out.
//!
//! Addresses are keyed as every per-address limit is (`edge::address_key`: IPv4 /32,
//! IPv6 /64). Which address a connection counts against is decided by `server` (the TCP
//! peer, at accept time) and `http` (the forwarded client of a WebSocket that came
//! through a trusted proxy); see "HTTP limits of the local runner" in docs/operating.md.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The open connections of every address that holds one.
pub(crate) struct AddressCap {
    max: usize,
    held: Mutex<HashMap<String, usize>>,
}

/// One connection's place in its address's count, given back when dropped.
pub(crate) struct AddressSlot {
    cap: Arc<AddressCap>,
    key: String,
}

impl AddressCap {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(AddressCap {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // A count is changed in one step, so a poisoned lock still holds whole counts.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection from `key`, or `None` if it holds the most.
    pub(crate) fn try_take(self: &Arc<Self>, key: String) -> Option<AddressSlot> {
        let mut held = self.lock();
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            if *count == 0 {
                held.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            cap: self.clone(),
            key,
        })
    }

    /// Connections `key` holds (tests).
    #[cfg(test)]
    fn held(&self, key: &str) -> usize {
        self.lock().get(key).copied().unwrap_or(0)
    }

    /// Addresses holding a connection (tests).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.cap.lock();
        if let Some(count) = held.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            // An address with nothing open is forgotten: the map holds only addresses
            // with a connection, however many have come and gone.
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The cap when none is given: 64, but never more than half of `max_connections`
/// (and at least 1), so that one address can never hold every place whatever the
/// connection cap is.
pub(crate) fn default_per_address(max_connections: usize) -> usize {
    (max_connections / 2).clamp(1, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_count_and_places_come_back() {
        let cap = AddressCap::new(2);
        let a1 = cap.try_take("a".into()).unwrap();
        let _a2 = cap.try_take("a".into()).unwrap();
        assert!(cap.try_take("a".into()).is_none());
        let _b = cap.try_take("b".into()).expect("another address");
        assert_eq!(cap.held("a"), 2);
        drop(a1);
        assert_eq!(cap.held("a"), 1);
        let _a3 = cap.try_take("a".into()).expect("a freed place");
        assert_eq!(cap.addresses(), 2);
    }

    #[test]
    fn addresses_with_nothing_open_are_forgotten() {
        let cap = AddressCap::new(1);
        for i in 0..100 {
            drop(cap.try_take(format!("10.0.0.{i}")).unwrap());
        }
        assert_eq!(cap.addresses(), 0);
        let zero = AddressCap::new(0);
        assert!(zero.try_take("a".into()).is_none());
        assert_eq!(zero.addresses(), 0);
    }

    #[test]
    fn the_default_is_64_or_half_the_connection_cap() {
        assert_eq!(default_per_address(20_000), 64);
        assert_eq!(default_per_address(128), 64);
        assert_eq!(default_per_address(20), 10);
        assert_eq!(default_per_address(1), 1);
    }
}
