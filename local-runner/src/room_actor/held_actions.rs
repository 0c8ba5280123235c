//! What a room sends, held until the room's stored messages are durable.
//!
//! The handler returns [`Action::Commit`] after each durable write, before whatever
//! depends on it (the broadcast of a stored message, the close of a kick). With SQLite
//! the write is only queued for the storage thread's next group commit, so the actor
//! holds every action from the barrier on (later events' too, to keep the order) until
//! the commit is on disk: nobody sees a message that a crash could still take back.
//! Held actions are complete data (a broadcast carries its recipients as they were when
//! the handler returned it), so holding them needs nothing from the room.

use chat_handler::Action;

/// Actions waiting for the room's commit, in order.
#[derive(Default)]
pub(super) struct HeldActions {
    /// A barrier was met and its commit not yet done.
    awaiting_commit: bool,
    held: Vec<Action>,
}

impl HeldActions {
    /// Whether a commit is awaited: then every action waits behind it.
    pub(super) fn awaiting_commit(&self) -> bool {
        self.awaiting_commit
    }

    /// Splits `actions` at the first commit barrier (unless one is awaited already):
    /// returns those to carry out now, and holds the rest. The barriers among the held
    /// ones are covered by the one commit to come, which the actor asks for only after
    /// the events that produced them.
    pub(super) fn split(&mut self, actions: Vec<Action>) -> Vec<Action> {
        let mut actions = actions.into_iter();
        let mut now = Vec::new();
        if !self.awaiting_commit {
            for action in actions.by_ref() {
                if action == Action::Commit {
                    self.awaiting_commit = true;
                    break;
                }
                now.push(action);
            }
        }
        self.held
            .extend(actions.filter(|action| *action != Action::Commit));
        now
    }

    /// Everything held, to carry out now that it is durable.
    pub(super) fn release(&mut self) -> Vec<Action> {
        self.awaiting_commit = false;
        std::mem::take(&mut self.held)
    }

    /// Forgets everything held: the commit failed, so none of it may go out.
    pub(super) fn discard(&mut self) -> usize {
        self.awaiting_commit = false;
        let n = self.held.len();
        self.held.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_handler::{Close, ErrorKind, ServerFrame};

    fn send(to: u64) -> Action {
        Action::Send {
            to,
            frame: ServerFrame::error(ErrorKind::Binary).encode(),
        }
    }

    #[test]
    fn actions_after_a_barrier_wait_for_the_commit_and_keep_their_order() {
        let mut held = HeldActions::default();
        assert_eq!(held.split(vec![send(1), send(2)]), [send(1), send(2)]);
        assert!(!held.awaiting_commit());
        let close = Action::Close {
            conn: 3,
            close: Close::Kicked,
        };
        let now = held.split(vec![send(1), Action::Commit, close.clone(), send(4)]);
        assert_eq!(now, [send(1)]);
        assert!(held.awaiting_commit());
        // A later event's actions, barrier or not, wait behind the held ones.
        assert!(held
            .split(vec![send(5), Action::Commit, send(6)])
            .is_empty());
        assert_eq!(held.release(), [close, send(4), send(5), send(6)]);
        assert!(!held.awaiting_commit());
        held.split(vec![Action::Commit, send(7)]);
        assert_eq!(held.discard(), 1);
        assert!(!held.awaiting_commit());
        assert!(held.release().is_empty());
    }
}
