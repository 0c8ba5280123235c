//! Per-connection state: small and serde-serializable, so a Durable Object can keep it
//! in the socket's attachment (16 KiB at most) and rebuild the room after hibernation.

use crate::protocol::user::Role;
use crate::protocol::version::Version;
use serde::{Deserialize, Serialize};

/// A connection id, chosen by the backend and unique within the room for the life of
/// the connection (the local runner counts; the Durable Object draws random ids, which
/// stay unique across hibernation without stored counters).
pub type ConnId = u64;

/// The longest client address kept (IPv6 text is at most 45 bytes).
pub(crate) const MAX_ADDR_LEN: usize = 64;

/// What a backend knows about the peer when the socket opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The client address (the TCP peer IP on the local runner, or the client behind
    /// a trusted proxy, see [`crate::edge::TrustedProxies`]; `CF-Connecting-IP` on
    /// Cloudflare). The session keys its limits by [`crate::edge::address_key`] of it.
    pub addr: String,
}

/// One connection's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub(crate) id: ConnId,
    /// The key of the per-address limits (seats, rate buckets):
    /// [`crate::edge::address_key`] of [`Peer::addr`].
    pub(crate) addr: String,
    /// `None` until the hello arrives: the session is not in the room yet.
    pub(crate) name: Option<String>,
    /// Frames rejected in a row by the rate limit. (The buckets themselves are the
    /// address's, kept in storage once per address, not per session.)
    pub(crate) strikes: u32,
    /// When the connection opened (ms since the Unix epoch): the hello deadline counts
    /// from here.
    #[serde(default)]
    pub(crate) opened_ms: u64,
    /// The protocol version the hello asked for (see [`Version`]).
    #[serde(default, skip_serializing_if = "Version::is_v1")]
    pub(crate) version: Version,
    /// The room's epoch when the session opened in a room that had stored nothing yet
    /// (so storage had no epoch either): a room rebuilt from its sessions then keeps
    /// the epoch its clients were told. `None` in a room with history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) room_epoch: Option<String>,
    /// Who a valid join token says this is; `None` for an anonymous session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) verified: Option<Verified>,
    /// The v2 hello asked for batched delivery (`"batch": true`). Kept in the session, so
    /// the opt-in survives hibernation; left out of the serialized form when off, to keep
    /// attachments small.
    #[serde(default, skip_serializing_if = "is_false")]
    pub(crate) batch: bool,
    /// Until when (ms since the Unix epoch) the session's address is muted
    /// (`moderation_binds_address`): read from storage at the hello and updated by
    /// later mutes, so a chat message needs no storage read. Never set for a moderator.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) addr_muted_until: u64,
    /// The session's place in the room's join order, from 1, given at its hello: what
    /// member pages are ordered by and what their cursors name (`roster.rs`). 0 before
    /// the hello.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) rank: u64,
    /// While the session's paged roster is incomplete: the rank of the last member
    /// listed to it so far (`roster.rs`). `None` once the roster was sent whole or
    /// paged to its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) listed_through: Option<u64>,
}

/// A verified session's identity, from its join token. At most a user id of 64
/// characters, a role and a time: small enough for a socket attachment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// The token's `sub`.
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Until when (ms since the Unix epoch) the user is muted: read from storage at
    /// the hello and updated by later mutes, so a chat message needs no storage read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub muted_until: u64,
}

impl Verified {
    pub fn is_moderator(&self) -> bool {
        self.role == Some(Role::Moderator)
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Session {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Whether the session may not chat at `now_ms`: its user, or its address, is muted.
    pub(crate) fn is_muted(&self, now_ms: u64) -> bool {
        self.verified
            .as_ref()
            .is_some_and(|v| v.muted_until > now_ms)
            || self.addr_muted_until > now_ms
    }

    /// What an anonymous message stores as its author (`StoredMessage::author`): the
    /// connection, as its id and the time it opened. The id alone is unique only for
    /// the connection's life (the local runner counts from 1 again after a restart);
    /// with its opening time it names this one connection.
    /// Built on every anonymous message, so without `format!`: its machinery cost a
    /// chat message about 700 instructions (a tenth of the handler's time), `itoa` a
    /// few dozen.
    pub(crate) fn author_key(&self) -> String {
        let mut digits = itoa::Buffer::new();
        // "c", two u64s of at most 20 digits and ".".
        let mut key = String::with_capacity(42);
        key.push('c');
        key.push_str(digits.format(self.id));
        key.push('.');
        key.push_str(digits.format(self.opened_ms));
        key
    }

    /// The key of the address's limits ([`crate::edge::address_key`]).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The display name, once the hello is accepted.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Frames rejected in a row by the rate limit.
    pub fn strikes(&self) -> u32 {
        self.strikes
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Who a valid join token says this is; `None` when anonymous.
    pub fn verified(&self) -> Option<&Verified> {
        self.verified.as_ref()
    }

    pub fn new(id: ConnId, peer: Peer, opened_ms: u64) -> Self {
        let mut addr = crate::edge::address::address_key(&peer.addr);
        if addr.len() > MAX_ADDR_LEN {
            let mut cut = MAX_ADDR_LEN;
            while !addr.is_char_boundary(cut) {
                cut -= 1;
            }
            addr.truncate(cut);
        }
        Session {
            id,
            addr,
            name: None,
            strikes: 0,
            opened_ms,
            version: Version::V1,
            room_epoch: None,
            verified: None,
            batch: false,
            addr_muted_until: 0,
            rank: 0,
            listed_through: None,
        }
    }

    /// True once the session has sent its hello and is in the room.
    pub fn is_joined(&self) -> bool {
        self.name.is_some()
    }

    /// True for a joined v2 session that opted in to batching: its broadcast frames go
    /// through the room's batcher instead of [`crate::Action::Broadcast`].
    pub fn is_batched(&self) -> bool {
        self.batch && self.version == Version::V2 && self.is_joined()
    }
}
