//! What the requests that change a stored message (edits, reactions) check alike: a
//! v2 member that may speak now, and a message that is stored and not deleted.

use crate::protocol::error_kind::ErrorKind;
use crate::protocol::version::Version;
use crate::room::session::ConnId;
use crate::room::storage::{Storage, StoredMessage};
use crate::room::Room;

impl<S: Storage> Room<S> {
    /// Whether `conn` is a member that may change messages at `now_ms`: `Ok(false)` if
    /// it is gone, `needs_v2` for a v1 session (which never sees the v2 frame that would
    /// tell of the change), `Muted` for a muted user or address.
    pub(crate) fn may_change_messages(
        &self,
        conn: ConnId,
        now_ms: u64,
        needs_v2: ErrorKind,
    ) -> Result<bool, ErrorKind> {
        let Some(session) = self.sessions.get(&conn) else {
            return Ok(false);
        };
        if session.version != Version::V2 {
            return Err(needs_v2);
        }
        if session.is_muted(now_ms) {
            return Err(ErrorKind::Muted);
        }
        Ok(true)
    }

    /// Message `seq` as stored, if it is retained and not deleted (`no_such` if not;
    /// `failed` if storage cannot be read).
    pub(crate) fn live_message(
        &mut self,
        seq: u64,
        no_such: ErrorKind,
        failed: ErrorKind,
    ) -> Result<StoredMessage, ErrorKind> {
        let rows = self
            .storage
            .after(seq.saturating_sub(1), 1)
            .map_err(|_| failed)?;
        rows.into_iter()
            .next()
            .filter(|m| m.seq == seq && !m.deleted)
            .ok_or(no_such)
    }
}
