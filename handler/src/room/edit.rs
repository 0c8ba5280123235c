//! v2 edits: `{"edit": {"seq": N, "message": "…"}}` replaces the text of a message by
//! its author, within `edit_window_secs` of its storing. Every v2 member gets
//! `{"edited": {"seq", "message", "edited_at"}}`; history, backlog and resumed gaps
//! carry the latest text with `edited_at`, and a resume first replays the edits of
//! messages the client already had (as it replays deletions, see `backlog_for`).
//!
//! The author is the verified user where the message has one; an anonymous message
//! can be edited only by the connection that sent it ([`Session::author_key`]), since
//! anyone may take any name.

use crate::protocol::client_frame;
use crate::protocol::error_kind::ErrorKind;
use crate::protocol::server_frame::{EditedMessage, ServerFrame};
use crate::room::action::{Audience, Effect};
use crate::room::session::{ConnId, Session};
use crate::room::storage::{Storage, StoredMessage};
use crate::room::Room;

impl<S: Storage> Room<S> {
    /// An edit request arrived (its rate-limit token is already paid, as for a message).
    pub(crate) fn edit(
        &mut self,
        conn: ConnId,
        seq: u64,
        raw: String,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        if let Err(e) = self.try_edit(conn, seq, &raw, now_ms, out) {
            self.send_error(out, conn, e);
        }
    }

    fn try_edit(
        &mut self,
        conn: ConnId,
        seq: u64,
        raw: &str,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ErrorKind> {
        if !self.may_change_messages(conn, now_ms, ErrorKind::EditNeedsV2)? {
            return Ok(());
        }
        let text = client_frame::validate_message(raw, &self.config)?;
        // Read before writing: who wrote it and when decide, and neither changes.
        let original =
            self.live_message(seq, ErrorKind::EditNoSuchMessage, ErrorKind::EditNotStored)?;
        let Some(session) = self.sessions.get(&conn) else {
            return Ok(());
        };
        if !may_edit(session, &original) {
            return Err(ErrorKind::EditNotYours);
        }
        let window_ms = self.config.edit_window_secs.saturating_mul(1000);
        if self.config.edit_window_secs == 0
            || now_ms > original.timestamp.saturating_add(window_ms)
        {
            return Err(ErrorKind::EditTooLate);
        }
        match self.storage.edit_message(seq, text, now_ms, self.last_seq) {
            Ok(true) => {}
            // Pruned or deleted between the read and the write: not on any backend
            // today (one room, one thread), but the answer would be this.
            Ok(false) => return Err(ErrorKind::EditNoSuchMessage),
            Err(_) => return Err(ErrorKind::EditNotStored),
        }
        // Durable before anyone sees it, as a message.
        out.push(Effect::Commit);
        out.push(Effect::Broadcast {
            frame: ServerFrame::Edited {
                edited: EditedMessage {
                    seq,
                    message: text,
                    edited_at: now_ms,
                },
            }
            .encode(),
            audience: Audience::V2Members,
        });
        Ok(())
    }
}

/// Whether `session` wrote `m`: the same verified user, or, for a message without one,
/// the same connection. A service's message (server-side publish) was written by no
/// session, whatever user id the service token had.
fn may_edit(session: &Session, m: &StoredMessage) -> bool {
    if m.role.is_some() {
        return false;
    }
    match (&session.verified, &m.user) {
        (Some(v), Some(user)) => v.user == *user,
        (None, None) => m.author.as_deref() == Some(session.author_key().as_str()),
        _ => false,
    }
}

/// The `{"edited": …}` frame of a stored message that was edited, for a resume.
pub(crate) fn edited_frame(m: &StoredMessage) -> Option<crate::protocol::server_frame::Frame> {
    let edited_at = m.edited_at?;
    Some(
        ServerFrame::Edited {
            edited: EditedMessage {
                seq: m.seq,
                message: &m.message,
                edited_at,
            },
        }
        .encode(),
    )
}
