//! What a room sends, as the actor carries it out: right away, or held until the room's
//! stored messages are durable.
//!
//! The handler stores a message before it returns the broadcast of it. With SQLite
//! the store is only queued for the storage thread's next group commit, so the actor
//! holds every action from that point (later ones too, to keep the order) until the
//! commit is on disk: nobody sees a message that a crash could still take back. A held
//! broadcast keeps the recipients it had when the handler returned it, as
//! [`Action::Broadcast`] requires, not those of the room when it is finally sent.

use chat_handler::{Action, Audience, Close, ConnId, Frame, Room, Storage};

/// One action, resolved enough to carry out later.
#[derive(Debug)]
pub(super) enum Delivery {
    Send {
        to: ConnId,
        frame: Frame,
    },
    Broadcast {
        frame: Frame,
        audience: Audience,
        /// `None`: the room's recipients now (carried out at once). `Some`: as they
        /// were when the handler returned it.
        to: Option<Vec<ConnId>>,
    },
    /// One frame (a batch shared by sessions with the same pending frames) to each of
    /// `to`, in order.
    Multicast {
        to: Vec<ConnId>,
        frame: Frame,
    },
    Close {
        conn: ConnId,
        close: Close,
    },
    /// A moderator action's audit line, logged once its row is as durable as what it
    /// caused.
    Audit {
        line: String,
    },
}

impl Delivery {
    /// An action to carry out at once; `None` for what the actor has nothing to do
    /// about.
    pub(super) fn now(action: Action) -> Option<Self> {
        Some(match action {
            Action::Send { to, frame } => Delivery::Send { to, frame },
            Action::Broadcast { frame, audience } => Delivery::Broadcast {
                frame,
                audience,
                to: None,
            },
            Action::Multicast { to, frame } => Delivery::Multicast { to, frame },
            Action::Close { conn, close } => Delivery::Close { conn, close },
            // Only the Durable Object persists sessions as they change; here they are
            // serialized when the room hibernates.
            Action::Save { .. } => return None,
            Action::Audit { line } => Delivery::Audit { line },
        })
    }
}

/// Deliveries waiting for the room's commit, in order.
#[derive(Default)]
pub(super) struct Outbox {
    held: Vec<Delivery>,
}

impl Outbox {
    /// Whether anything is held: then later actions must wait behind it.
    pub(super) fn is_holding(&self) -> bool {
        !self.held.is_empty()
    }

    /// Holds `actions`, fixing each broadcast's recipients as `room` has them now.
    pub(super) fn hold<S: Storage>(&mut self, actions: Vec<Action>, room: &Room<S>) {
        for action in actions {
            let Some(mut delivery) = Delivery::now(action) else {
                continue;
            };
            if let Delivery::Broadcast { audience, to, .. } = &mut delivery {
                *to = Some(room.recipients(*audience).collect());
            }
            self.held.push(delivery);
        }
    }

    /// Everything held, to carry out now that it is durable.
    pub(super) fn release(&mut self) -> Vec<Delivery> {
        std::mem::take(&mut self.held)
    }

    /// Forgets everything held: the commit failed, so none of it may go out.
    pub(super) fn discard(&mut self) -> usize {
        let n = self.held.len();
        self.held.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_handler::{Config, MemoryStorage, Peer};

    #[test]
    fn a_held_broadcast_keeps_the_recipients_it_had() {
        let mut room = Room::open(Config::default(), MemoryStorage::new(), "e").unwrap();
        let peer = Peer { addr: "a".into() };
        room.connect(1, peer.clone(), 0).unwrap();
        room.on_text(1, r#"{"name":"alice"}"#, 0);
        let said = room.on_text(1, r#"{"message":"hi"}"#, 1);
        let mut outbox = Outbox::default();
        outbox.hold(said, &room);
        assert!(outbox.is_holding());
        // Bob joins after the message: he gets it in his backlog, not as a broadcast.
        room.connect(2, peer, 2).unwrap();
        room.on_text(2, r#"{"name":"bob"}"#, 2);
        let held = outbox.release();
        assert!(!outbox.is_holding());
        let to: Vec<_> = held
            .iter()
            .filter_map(|d| match d {
                Delivery::Broadcast { to, .. } => to.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(to, [vec![1]]);
    }
}
