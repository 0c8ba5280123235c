//! What the room tells its backend to do: [`Action`]s, complete as data.
//!
//! An action carries everything needed to carry it out: a broadcast its recipients, a
//! save the session to save, a refusal its error frame and its close. A backend only
//! executes them in order, and never calls back into the room to interpret one (the
//! model is quinn-proto's `Transmit`, which carries its destination). So a new kind of
//! broadcast or refusal is a change to the handler alone.
//!
//! Inside the room, while an event is handled, effects are [`Effect`]s: a broadcast
//! names its [`Audience`], because who is in the room may still change during the event
//! (a join, a close). [`Room::finish`](crate::Room) turns them into actions once the
//! event is done, resolving each audience to the room's members as they are then.

use crate::protocol::close::Close;
use crate::protocol::server_frame::Frame;
use crate::protocol::version::Version;
use crate::room::session::{ConnId, Session};
use std::sync::Arc;

/// What the backend must do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a frame to one connection.
    Send { to: ConnId, frame: Frame },
    /// Send one frame to each of `to`, in order. The frame is encoded once, and `to` is
    /// shared (a broadcast to the whole room clones a pointer to the room's member list,
    /// rebuilt only when someone joins or leaves): backends send the same bytes to each.
    Broadcast { to: Arc<[ConnId]>, frame: Frame },
    /// Close a connection. The room has already forgotten it (and announced its quit).
    /// A connection the room refused at [`Room::connect`](crate::Room::connect) gets
    /// this too: the room never knew it.
    Close { conn: ConnId, close: Close },
    /// The session's state changed: backends that persist sessions (the Durable
    /// Object's socket attachments) save `session` (as it is after the event).
    Save { conn: ConnId, session: Box<Session> },
    /// A moderator acted: write `line` (one JSON object, see
    /// [`crate::room::moderation::audit_line`]) to the server's log. The room has stored it in
    /// its audit table already.
    Audit { line: String },
    /// A commit barrier: what the room wrote to storage so far must be durable before
    /// any later action is carried out (they may depend on it: the broadcast of a
    /// stored message, the close of a kick). A backend whose writes are durable when
    /// they return, or held by the platform until they are (the Durable Object's output
    /// gate), has nothing to do; the local runner commits its storage thread's
    /// transaction and holds every later action until the commit is on disk.
    Commit,
}

impl Action {
    /// True if this closes `conn`: how a backend sees that [`Room::connect`]
    /// (crate::Room::connect) refused a connection (a refusal is an error frame, then
    /// this close).
    pub fn closes(&self, conn: ConnId) -> bool {
        matches!(self, Action::Close { conn: c, .. } if *c == conn)
    }
}

/// One effect of the event being handled (see the module comment).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    Send {
        to: ConnId,
        frame: Frame,
    },
    /// A frame for every member of `audience` as the room is when the event is done.
    /// Batch sessions get it through the batcher instead (see `batch.rs`).
    Broadcast {
        frame: Frame,
        audience: Audience,
    },
    /// [`Effect::Broadcast`] to every member of `audience` but `except`: a member's
    /// own typing is not echoed to it (`typing.rs`).
    BroadcastOthers {
        frame: Frame,
        audience: Audience,
        except: ConnId,
    },
    /// One frame (a batch) to each listed connection: from the batcher.
    Multicast {
        to: Vec<ConnId>,
        frame: Frame,
    },
    Close {
        conn: ConnId,
        close: Close,
    },
    /// Save the session as it is when the event is done.
    Save {
        conn: ConnId,
    },
    Audit {
        line: String,
    },
    Commit,
}

/// Who receives an [`Effect::Broadcast`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every member (a session that sent its hello), whatever its protocol version.
    Members,
    /// Members that opted in to protocol v2: frame kinds v1 does not have.
    V2Members,
}

impl Audience {
    /// Every audience, for per-audience bookkeeping.
    pub(crate) const ALL: [Audience; 2] = [Audience::Members, Audience::V2Members];

    /// Whether `session` is in the audience (batched or not).
    pub(crate) fn includes(self, session: &Session) -> bool {
        match self {
            Audience::Members => session.is_joined(),
            Audience::V2Members => session.is_joined() && session.version == Version::V2,
        }
    }

    /// A distinct bit per audience (the batcher keeps each member's audiences as bits).
    pub(crate) const fn bit(self) -> u8 {
        match self {
            Audience::Members => 1,
            Audience::V2Members => 2,
        }
    }

    /// The index of the audience's cached recipient list in the room.
    pub(crate) const fn index(self) -> usize {
        match self {
            Audience::Members => 0,
            Audience::V2Members => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Room::actions` collects actions in place of the effects they come from, which
    /// the standard library does when both are aligned alike, and without even a
    /// shrinking `realloc` when they are the same size. A change that breaks this costs
    /// an allocation per event, not correctness: this test says so.
    #[test]
    fn an_action_takes_the_place_of_an_effect() {
        use std::mem::{align_of, size_of};
        assert_eq!(size_of::<Action>(), size_of::<Effect>());
        assert_eq!(align_of::<Action>(), align_of::<Effect>());
    }
}
