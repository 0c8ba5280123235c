//! What travels into a room actor: joins, socket events, and the handle that holds
//! both inboxes. Shared by the registry (which sends joins), connections (which send
//! events) and the actor (which receives both), so none of them needs another's module
//! for these types.

use crate::link::ConnLink;
use chat_handler::{Close, ConnId, Peer, PublishAnswer};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A connection asking to enter a room.
pub(crate) struct Join {
    pub(crate) conn: ConnId,
    pub(crate) peer: Peer,
    pub(crate) link: ConnLink,
}

/// A server-side publish (`POST /api/room/{room}/messages`), already checked at the
/// edge (`publish::check_request`), waiting for its room's answer.
pub(crate) struct Publish {
    /// The `Authorization` header.
    pub(crate) authorization: Option<String>,
    pub(crate) body: String,
    /// Answered once the message is committed (or refused).
    pub(crate) reply: oneshot::Sender<PublishAnswer>,
}

/// What enters a room through its arrivals inbox: a connection, or a publish. Both
/// come the same way so that an actor retiring under the registry lock finds either
/// waiting (see `Retire`) and never drops one.
pub(crate) enum Arrival {
    Join(Join),
    Publish(Publish),
}

/// What a connection reports to its room.
#[derive(Debug)]
pub(crate) enum Event {
    Text {
        conn: ConnId,
        text: Utf8Bytes,
    },
    Binary {
        conn: ConnId,
        len: usize,
    },
    /// The WebSocket library refused a message over `max_frame_bytes`.
    TooBig {
        conn: ConnId,
    },
    /// The connection decided to go (missed pongs).
    Kick {
        conn: ConnId,
        close: Close,
    },
    /// The socket is gone (or failed), or its reader stopped: the room lets it go.
    Disconnect {
        conn: ConnId,
    },
    /// The client sent a close frame: the room lets it go as for [`Event::Disconnect`],
    /// then says so through `done`. Only then does the connection complete the close
    /// handshake, so a client that reconnects once its close is answered always finds
    /// its quit processed (docs/protocol.md, "Closing").
    Leave {
        conn: ConnId,
        done: oneshot::Sender<()>,
    },
}

impl Event {
    /// The connection the event is about.
    pub(crate) fn conn(&self) -> ConnId {
        match self {
            Event::Text { conn, .. }
            | Event::Binary { conn, .. }
            | Event::TooBig { conn }
            | Event::Kick { conn, .. }
            | Event::Disconnect { conn }
            | Event::Leave { conn, .. } => *conn,
        }
    }
}

/// A running actor's inboxes. Joins get an unbounded channel of their own so that
/// joining never waits while the registry lock is held; they are bounded in practice
/// by the number of sockets.
#[derive(Clone)]
pub(crate) struct RoomHandle {
    /// Tells actors apart, so a retiring actor removes its own entry only.
    pub(crate) id: u64,
    pub(crate) joins: mpsc::UnboundedSender<Arrival>,
    pub(crate) events: mpsc::Sender<Event>,
}
