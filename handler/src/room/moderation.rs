//! Verified sessions and what moderators do to them: admitting a hello with a join
//! token (and refusing a kicked user), and the moderator frames `{"delete": seq}`,
//! `{"kick": {"user", "secs"}}` and `{"mute": {"user", "secs"}}`.
//!
//! Kicks and mutes are stored with the room (one row per user, see
//! [`Storage::restriction`]), so they hold across reconnects, restarts and
//! hibernation. A mute is also copied into the sessions of its user
//! ([`Verified::muted_until`]), so a chat message is checked without a storage read.
//! Every action is stored in the audit table and logged ([`crate::Action::Audit`]).
//! A deleted message is a tombstone: its text is overwritten in storage, and
//! [`history_frame`] is the one place that turns a stored message into what a session
//! may see of it.

use crate::edge::identity;
use crate::protocol::client_frame::Hello;
use crate::protocol::close::Close;
use crate::protocol::error_kind::ErrorKind;
use crate::protocol::requests::Moderation;
use crate::protocol::server_frame::{Frame, ServerFrame};
use crate::protocol::user::Role;
use crate::protocol::version::Version;
use crate::room::action::{Audience, Effect};
use crate::room::session::{ConnId, Verified};
use crate::room::storage::{AuditEntry, Restriction, Storage, StoredMessage};
use crate::room::{chat_frame, Room};
use serde_json::{Map, Value};

/// What a session of `version` may see of a stored message: its chat frame; for a
/// tombstone `{"deleted": seq}` to v2 and nothing to v1. Never the text of a tombstone
/// (it is blank in storage anyway). Every path that sends history goes through here.
pub(crate) fn history_frame(m: &StoredMessage, version: Version) -> Option<Frame> {
    match (m.deleted, version) {
        (false, _) => Some(chat_frame(m)),
        (true, Version::V2) => Some(
            ServerFrame::Deleted {
                deleted: m.seq,
                cid: None,
            }
            .encode(),
        ),
        (true, Version::V1) => None,
    }
}

/// A hello refused by identity: the error to send and the close that follows.
pub(crate) type Refusal = (ErrorKind, Close);

/// Which deadline of a [`Restriction`] a kick or a mute sets.
#[derive(Debug, Clone, Copy)]
enum Field {
    Kicked,
    Muted,
}

impl Field {
    fn get(self, r: &Restriction) -> u64 {
        match self {
            Field::Kicked => r.kicked_until,
            Field::Muted => r.muted_until,
        }
    }

    fn set(self, r: &mut Restriction, until: u64) {
        match self {
            Field::Kicked => r.kicked_until = until,
            Field::Muted => r.muted_until = until,
        }
    }
}

/// The row key of a client address's kick and mute, in the table of the users'. A user
/// id has no control characters ([`is_user_id`]), so no user's row can be an
/// address's.
pub(crate) fn address_row(addr: &str) -> String {
    format!("\u{1}addr {addr}")
}

/// The address keys stored with a user's row. Unreadable text (never written by us)
/// binds none.
fn stored_addrs(r: &Restriction) -> Vec<String> {
    r.addrs
        .as_deref()
        .and_then(|a| serde_json::from_str(a).ok())
        .unwrap_or_default()
}

/// A name as compared for impersonation: without the characters that draw nothing
/// (`A\u{200B}na` looks like `Ana`), surrounding white space or case.
fn fold(name: &str) -> String {
    name.chars()
        .filter(|&c| !crate::protocol::names::is_default_ignorable(c))
        .collect::<String>()
        .trim()
        .to_lowercase()
}

/// The deadline `secs` from now, or 0 (none) for 0 seconds.
fn until(now_ms: u64, secs: u64) -> u64 {
    if secs == 0 {
        0
    } else {
        now_ms.saturating_add(secs.saturating_mul(1000))
    }
}

impl<S: Storage> Room<S> {
    /// Decides who a hello is: `Ok(None)` for an anonymous session (identity off, or
    /// no token where none is required), `Ok(Some((display name, identity)))` for a
    /// valid token of a user who is not kicked. A token that is present is verified or
    /// refused, never ignored, whenever the room has a secret.
    pub(crate) fn admit(
        &mut self,
        hello: &Hello,
        now_ms: u64,
    ) -> Result<Option<(String, Verified)>, Refusal> {
        let required = || Err((ErrorKind::TokenRequired, Close::BadToken));
        let Some(auth) = &self.auth else {
            // No secret: identity is off and a token means nothing. (A backend refuses
            // to start with `auth_required` and no secret; this is only a safety net.)
            return if self.config.auth_required {
                required()
            } else {
                Ok(None)
            };
        };
        let Some(token) = &hello.token else {
            return if self.config.auth_required {
                required()
            } else {
                Ok(None)
            };
        };
        let id = identity::verify(token, &auth.secret, &auth.room, now_ms, &self.config)
            .map_err(|e| (e, Close::BadToken))?;
        // A service token publishes over HTTP (`publish.rs`) and is no join token: a
        // session never gets the service role, nor any other from such a token.
        if id.role == Some(Role::Service) {
            return Err((ErrorKind::ServiceTokenInHello, Close::BadToken));
        }
        let stored = self
            .storage
            .restriction(&id.user)
            .map_err(|_| (ErrorKind::Internal, Close::Internal))?;
        if stored.kicked_until > now_ms {
            return Err((ErrorKind::StillKicked, Close::Kicked));
        }
        let muted_until = if stored.muted_until > now_ms {
            stored.muted_until
        } else {
            0
        };
        let verified = Verified {
            user: id.user,
            role: id.role,
            muted_until,
        };
        Ok(Some((id.name, verified)))
    }

    /// A moderator frame arrived (its rate-limit token is already paid).
    pub(crate) fn moderate(
        &mut self,
        conn: ConnId,
        request: Result<Moderation, ErrorKind>,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let moderator = self
            .sessions
            .get(&conn)
            .and_then(|s| s.verified.as_ref())
            .filter(|v| v.is_moderator())
            .map(|v| v.user.clone());
        let Some(moderator) = moderator else {
            return self.send_error(out, conn, ErrorKind::NotModerator);
        };
        let request = match request {
            Ok(r) => r,
            Err(e) => return self.send_error(out, conn, e),
        };
        let done = match &request {
            Moderation::Delete { seq } => self.delete_message(*seq, out),
            Moderation::Kick { user, secs } => self.kick_user(user, *secs, now_ms, out),
            Moderation::Mute { user, secs } => self.mute_user(user, *secs, now_ms, out),
        };
        match done {
            Ok(()) => self.audit(&moderator, &request, now_ms, out),
            Err(e) => self.send_error(out, conn, e),
        }
    }

    fn delete_message(&mut self, seq: u64, out: &mut Vec<Effect>) -> Result<(), ErrorKind> {
        match self.storage.delete_message(seq, self.last_seq) {
            Ok(true) => {
                out.push(Effect::Commit);
                out.push(Effect::Broadcast {
                    frame: ServerFrame::Deleted {
                        deleted: seq,
                        cid: None,
                    }
                    .encode(),
                    audience: Audience::V2Members,
                });
                Ok(())
            }
            Ok(false) => Err(ErrorKind::NoSuchMessage),
            Err(_) => Err(ErrorKind::ModerationNotStored),
        }
    }

    fn kick_user(
        &mut self,
        user: &str,
        secs: u64,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ErrorKind> {
        self.restrict(user, Field::Kicked, until(now_ms, secs), now_ms)?;
        // Stored before the sessions go: a kick that a crash forgets closes nobody.
        out.push(Effect::Commit);
        for conn in self.sessions_of(user) {
            // Not an answer, even to a moderator who kicks its own user id.
            let frame = self.error_frame(conn, ErrorKind::Kicked);
            out.push(Effect::Send { to: conn, frame });
            self.close(conn, Close::Kicked, now_ms, out);
        }
        Ok(())
    }

    fn mute_user(
        &mut self,
        user: &str,
        secs: u64,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) -> Result<(), ErrorKind> {
        let (r, addrs) = self.restrict(user, Field::Muted, until(now_ms, secs), now_ms)?;
        out.push(Effect::Commit);
        for conn in self.sessions_of(user) {
            if let Some(v) = self
                .sessions
                .get_mut(&conn)
                .and_then(|s| s.verified.as_mut())
            {
                v.muted_until = r.muted_until;
                out.push(Effect::Save { conn });
            }
        }
        // Every session from a bound address is muted (or unmuted) with the user.
        for (addr, muted_until) in addrs {
            for s in self.sessions.values_mut() {
                let moderator = s.verified.as_ref().is_some_and(|v| v.is_moderator());
                if s.addr == addr && !moderator && s.addr_muted_until != muted_until {
                    s.addr_muted_until = muted_until;
                    out.push(Effect::Save { conn: s.id });
                }
            }
        }
        Ok(())
    }

    /// The open sessions of a verified user.
    fn sessions_of(&self, user: &str) -> Vec<ConnId> {
        self.sessions
            .values()
            .filter(|s| s.verified.as_ref().is_some_and(|v| v.user == user))
            .map(|s| s.id)
            .collect()
    }

    /// Sets a user's stored kick or mute (`field`) to `until` (0 lifts it), and with
    /// `moderation_binds_address` the same on the addresses bound to the user: those
    /// stored with its row (bound by an earlier kick or mute) and those of its sessions
    /// in the room now. An address keeps the later of its own deadline and the new one,
    /// so a shorter kick or mute of another user from it does not shorten it; a lift
    /// clears it.
    ///
    /// Every row that is new (nothing in force before) holds one of at most
    /// `max_restricted_users` places: expired rows are pruned first, and when the new
    /// rows do not all fit, nothing is changed and the moderation is refused.
    ///
    /// Returns the user's new row and each bound address with its new mute deadline.
    fn restrict(
        &mut self,
        user: &str,
        field: Field,
        until: u64,
        now_ms: u64,
    ) -> Result<(Restriction, Vec<(String, u64)>), ErrorKind> {
        let failed = |_| ErrorKind::ModerationNotStored;
        let old = self.storage.restriction(user).map_err(failed)?;
        let mut addrs = Vec::new();
        if self.config.moderation_binds_address {
            // The addresses of a row that is over are stale: a new kick or mute binds
            // only where the user is now.
            if !old.is_over(now_ms) {
                addrs = stored_addrs(&old);
            }
            addrs.extend(
                self.sessions
                    .values()
                    .filter(|s| s.verified.as_ref().is_some_and(|v| v.user == user))
                    .map(|s| s.addr.clone()),
            );
            addrs.sort();
            addrs.dedup();
        }
        let mut new = old.clone();
        field.set(&mut new, until);
        new.addrs = if addrs.is_empty() {
            None
        } else {
            serde_json::to_string(&addrs).ok()
        };
        let mut rows = vec![(user.to_owned(), old, new)];
        for addr in &addrs {
            let key = address_row(addr);
            let old = self.storage.restriction(&key).map_err(failed)?;
            let mut new = old.clone();
            let kept = if until == 0 {
                0
            } else {
                field.get(&old).max(until)
            };
            field.set(&mut new, kept);
            rows.push((key, old, new));
        }
        let mut fresh = 0u64;
        for (_, old, new) in &mut rows {
            if new.is_over(now_ms) {
                // Nothing in force: no row at all (a lift, or a kick without `secs`).
                *new = Restriction::default();
            } else if old.is_over(now_ms) {
                fresh += 1;
            }
        }
        if fresh > 0 {
            let held = self.storage.prune_restrictions(now_ms).map_err(failed)?;
            if held.saturating_add(fresh) > self.config.max_restricted_users as u64 {
                return Err(ErrorKind::TooManyRestricted);
            }
        }
        for (key, _, new) in &rows {
            self.storage.set_restriction(key, new).map_err(failed)?;
        }
        let mut rows = rows.into_iter();
        let user_row = rows.next().map(|(_, _, new)| new).unwrap_or_default();
        let bound = addrs
            .into_iter()
            .zip(rows)
            .map(|(addr, (_, _, new))| (addr, new.muted_until))
            .collect();
        Ok((user_row, bound))
    }

    /// The kick and mute of the session's client address that a hello must honour:
    /// `Ok(muted_until)` (0 for none), or the refusal of a kicked address. Nothing
    /// applies to a moderator, with `moderation_binds_address` off, or without identity
    /// (no one can moderate then).
    pub(crate) fn address_restriction(
        &mut self,
        conn: ConnId,
        verified: Option<&Verified>,
        now_ms: u64,
    ) -> Result<u64, Refusal> {
        if !self.config.moderation_binds_address
            || self.auth.is_none()
            || verified.is_some_and(Verified::is_moderator)
        {
            return Ok(0);
        }
        let Some(addr) = self.sessions.get(&conn).map(|s| address_row(&s.addr)) else {
            return Ok(0);
        };
        let r = self
            .storage
            .restriction(&addr)
            .map_err(|_| (ErrorKind::Internal, Close::Internal))?;
        if r.kicked_until > now_ms {
            return Err((ErrorKind::StillKicked, Close::Kicked));
        }
        Ok(if r.muted_until > now_ms {
            r.muted_until
        } else {
            0
        })
    }

    /// True if `name`, the name of an anonymous hello, is the name or the user id of a
    /// verified member in the room, compared without regard to case, surrounding white
    /// space or invisible characters: an anonymous session may not pass itself off as
    /// one.
    pub(crate) fn is_name_of_verified(&self, name: &str) -> bool {
        let wanted = fold(name);
        self.sessions
            .values()
            .any(|s| match (&s.name, &s.verified) {
                (Some(n), Some(v)) => fold(n) == wanted || fold(&v.user) == wanted,
                _ => false,
            })
    }

    /// Stores the action in the audit table and has the backend log it as one JSON
    /// line. The action is done by now: a failure to store its record loses only the
    /// row (the log line still goes out), so it is not reported to the moderator.
    fn audit(&mut self, moderator: &str, request: &Moderation, now_ms: u64, out: &mut Vec<Effect>) {
        let (user, seq, secs) = match request {
            Moderation::Delete { seq } => (None, Some(*seq), None),
            Moderation::Kick { user, secs } | Moderation::Mute { user, secs } => {
                (Some(user.clone()), None, Some(*secs))
            }
        };
        let entry = AuditEntry {
            at_ms: now_ms,
            moderator: moderator.to_owned(),
            action: request.action().to_owned(),
            user,
            seq,
            secs,
        };
        let _ = self
            .storage
            .append_audit(&entry, self.config.audit_retention);
        let room = self.auth.as_ref().map_or("", |a| a.room.as_str());
        // Logged once the row is as durable as what it records.
        out.push(Effect::Commit);
        out.push(Effect::Audit {
            line: audit_line(room, &entry),
        });
    }
}

/// The structured log line of a moderator action: one JSON object,
/// `{"audit": action, "room", "moderator", "user"?, "seq"?, "secs"?, "at_ms"}`. `room`
/// is the room's log tag ([`crate::edge::log_tag_of`]): a named room's name, a private
/// room's `private:` tag, never its id, which is its only secret.
pub fn audit_line(room: &str, e: &AuditEntry) -> String {
    let mut line = Map::new();
    line.insert("audit".into(), e.action.clone().into());
    line.insert("room".into(), crate::edge::log_tag_of(room).into());
    line.insert("moderator".into(), e.moderator.clone().into());
    if let Some(user) = &e.user {
        line.insert("user".into(), user.clone().into());
    }
    if let Some(seq) = e.seq {
        line.insert("seq".into(), seq.into());
    }
    if let Some(secs) = e.secs {
        line.insert("secs".into(), secs.into());
    }
    line.insert("at_ms".into(), e.at_ms.into());
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audit_lines_are_json() {
        let e = AuditEntry {
            at_ms: 5,
            moderator: "m\"1".into(),
            action: "kick".into(),
            user: Some("u9".into()),
            seq: None,
            secs: Some(300),
        };
        let v: Value = serde_json::from_str(&audit_line("lobby", &e)).unwrap();
        assert_eq!(
            v,
            json!({"audit": "kick", "room": "lobby", "moderator": "m\"1", "user": "u9", "secs": 300, "at_ms": 5})
        );
        // A private room is named by its tag only.
        let id = "0123456789abcdef".repeat(4);
        let line = audit_line(&id, &e);
        assert!(!line.contains(&id), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["room"], "private:a8ae6e6e");
    }
}
