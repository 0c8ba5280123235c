//! A connection's place under `--max-connections` (and under its address's
//! `--max-connections-per-address`), taken by `server` at accept time and held by the
//! connection's requests and, after an upgrade, by its WebSocket (see `http`).

use crate::address_cap::AddressSlot;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// A connection's place under the cap (and in its address's count). Requests carry it
/// as an extension; the WebSocket endpoint moves it into the upgraded socket's task, so
/// the place is held until the socket closes.
#[derive(Clone)]
pub(crate) struct ConnPermit(Arc<ConnHold>);

struct ConnHold {
    _place: OwnedSemaphorePermit,
    _slot: Option<AddressSlot>,
    /// Set at the upgrade: the socket's HTTP timeouts stop (see `timed_io`).
    upgraded: AtomicBool,
}

impl ConnPermit {
    pub(crate) fn new(place: OwnedSemaphorePermit, slot: Option<AddressSlot>) -> Self {
        ConnPermit(Arc::new(ConnHold {
            _place: place,
            _slot: slot,
            upgraded: AtomicBool::new(false),
        }))
    }

    /// The connection is a WebSocket from now on.
    pub(crate) fn upgraded(&self) {
        self.0.upgraded.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_upgraded(&self) -> bool {
        self.0.upgraded.load(Ordering::Relaxed)
    }
}
