//! v2 reactions: `{"react": {"seq": N, "emoji": "👍"}}` toggles the sender's reaction
//! with that emoji on message N. Every v2 member gets the message's new counts,
//! `{"reactions": {"seq": N, "counts": {"👍": 2}}}`; backlogs, gaps and history pages
//! carry the counts on the chat frame, and a resume replays the counts of messages the
//! client already had whose reactions changed meanwhile (as for edits).
//!
//! A reactor is the verified user where there is one, otherwise the connection (the
//! same key as an anonymous author, see `Session::author_key`): one reaction per
//! reactor per emoji. The counts live on the message row (JSON), the reactors in a
//! table of their own, both bounded by `max_reactions_per_message` (different emoji)
//! and `max_reaction_count_per_message` (all reactions).

use crate::protocol::error_kind::ErrorKind;
use crate::protocol::server_frame::{Frame, RawJson, ReactionCounts, ServerFrame};
use crate::room::action::{Audience, Effect};
use crate::room::session::{ConnId, Session};
use crate::room::storage::{Storage, StoredMessage};
use crate::room::Room;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use unicode_segmentation::UnicodeSegmentation;

/// The most bytes (UTF-8) of one reaction's emoji.
pub(crate) const MAX_EMOJI_BYTES: usize = 16;

impl<S: Storage> Room<S> {
    /// A reaction arrived (its rate-limit token is already paid, as for a message).
    pub(crate) fn react(
        &mut self,
        conn: ConnId,
        seq: u64,
        emoji: String,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        if let Err(e) = self.try_react(conn, seq, &emoji, now_ms, out) {
            self.send_error(out, conn, e);
        }
    }

    fn try_react(
        &mut self,
        conn: ConnId,
        seq: u64,
        emoji: &str,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ErrorKind> {
        if !self.may_change_messages(conn, now_ms, ErrorKind::ReactNeedsV2)? {
            return Ok(());
        }
        if !is_one_emoji(emoji) {
            return Err(ErrorKind::ReactEmoji);
        }
        let message = self.live_message(
            seq,
            ErrorKind::ReactNoSuchMessage,
            ErrorKind::ReactNotStored,
        )?;
        let Some(session) = self.sessions.get(&conn) else {
            return Ok(());
        };
        let reactor = reactor_key(session);
        let had = self
            .storage
            .has_reaction(seq, emoji, &reactor)
            .map_err(|_| ErrorKind::ReactNotStored)?;
        let mut counts = counts_of(&message);
        if had {
            if let Some(n) = counts.get_mut(emoji) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(emoji);
                }
            }
        } else {
            if !counts.contains_key(emoji) && counts.len() >= self.config.max_reactions_per_message
            {
                return Err(ErrorKind::ReactionsFull);
            }
            let total: u64 = counts.values().sum();
            if total >= self.config.max_reaction_count_per_message as u64 {
                return Err(ErrorKind::ReactionCountFull);
            }
            *counts.entry(emoji.to_owned()).or_default() += 1;
        }
        // Strings and integers: serializing cannot fail.
        let json = serde_json::to_string(&counts).map_err(|_| ErrorKind::ReactNotStored)?;
        let stored = if counts.is_empty() {
            None
        } else {
            Some(json.as_str())
        };
        match self
            .storage
            .set_reaction(seq, emoji, &reactor, !had, stored, self.last_seq)
        {
            Ok(true) => {}
            Ok(false) => return Err(ErrorKind::ReactNoSuchMessage),
            Err(_) => return Err(ErrorKind::ReactNotStored),
        }
        out.push(Effect::Commit);
        if let Some(frame) = reactions_frame(seq, &json) {
            out.push(Effect::Broadcast {
                frame,
                audience: Audience::V2Members,
            });
        }
        Ok(())
    }
}

/// One extended grapheme cluster of at most [`MAX_EMOJI_BYTES`], and not white space
/// or a control character (which would show as nothing, or break a line). Any such
/// cluster is taken: telling emoji from other symbols needs Unicode's emoji tables, and
/// the bounds are what protect the room.
pub(crate) fn is_one_emoji(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EMOJI_BYTES
        && s.graphemes(true).count() == 1
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Who reacts: the verified user, or else the connection. The prefixes keep a user id
/// from ever equalling a connection's key.
fn reactor_key(session: &Session) -> String {
    match &session.verified {
        Some(v) => format!("u:{}", v.user),
        None => session.author_key(),
    }
}

/// A stored message's counts (none when it has none or they do not parse).
fn counts_of(m: &StoredMessage) -> BTreeMap<String, u64> {
    m.reactions
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// Stored counts as JSON to put in a chat frame: `None` when there are none.
pub(crate) fn counts_json(json: &str) -> Option<RawJson<'_>> {
    let raw: &RawValue = serde_json::from_str(json).ok()?;
    (raw.get() != "{}").then_some(RawJson(raw))
}

/// `{"reactions": {"seq", "counts"}}` for counts given as JSON text.
fn reactions_frame(seq: u64, json: &str) -> Option<Frame> {
    let counts: &RawValue = serde_json::from_str(json).ok()?;
    Some(
        ServerFrame::Reactions {
            reactions: ReactionCounts {
                seq,
                counts: RawJson(counts),
            },
        }
        .encode(),
    )
}

/// The `{"reactions": …}` frame of a stored message, for a resume (`{}` once none
/// are left).
pub(crate) fn resumed_frame(m: &StoredMessage) -> Option<Frame> {
    reactions_frame(m.seq, m.reactions.as_deref().unwrap_or("{}"))
}
