//! Typing indicators (protocol v2).
//!
//! A v2 member sends `{"typing": true}` while it types and `{"typing": false}` when it
//! stops. The other v2 members get `{"typing": {"name", "user"?, "typer", "ttl_ms"}}`
//! when it starts and `{"typing_stopped": {"name", "user"?, "typer"}}` when it stops;
//! `typer` (the member's join-order rank, unique among the members present) tells
//! members with the same name apart. Nothing here is stored: not in history, not in a
//! backlog, not in a session's attachment.
//!
//! - **Coalesced**: a `true` while already typing moves the typer's expiry and
//!   broadcasts nothing, unless its `typing` frame was last sent `typing_ttl_ms / 2` ago
//!   or more: then the same frame goes again. So a typer that keeps refreshing is
//!   announced at least once per `typing_ttl_ms`, which lets clients expire a typer they
//!   hear nothing more about (the server may have lost it) without dropping one that is
//!   still typing; and a room's typing frames stay bounded by `typing_max` typers × two
//!   per `typing_ttl_ms`, however often clients refresh.
//! - **Expiry**: a typer not refreshed within `typing_ttl_ms` is stopped by
//!   [`crate::Room::on_tick`] (its deadline is part of [`crate::Room::next_flush`]: the
//!   state is in memory, so it is timed like a pending batch, never by a durable alarm).
//! - **Ended by the typer's message and by its leaving**: `typing_stopped` goes out
//!   just before the chat frame or the quit, so a client needs no other rule to drop
//!   a typer.
//! - **A room about to be dropped** ([`crate::Room::flush`]: hibernation, shutdown)
//!   stops its typers first. A room lost without that (a crash) tells nobody: clients
//!   expire a typer themselves `ttl_ms` after its last `typing`.
//! - **Bounded**: at most `typing_max` typers per room; one more is not announced
//!   (its later refreshes are, once there is room). A v2 joiner gets the current typers
//!   after its `ready`, so at most `typing_max` frames.
//! - **Rate**: each connection has a typing bucket (`typing_burst`, `typing_per_sec`),
//!   in memory, apart from the frame bucket. Past it a typing frame costs a frame token
//!   and, if that is there, gets the error `typing_rate_limited`; a flood thus ends in
//!   `rate_limited` and the usual close like any other.
//! - **Muted** members' typing is ignored (no broadcast, no error): someone who may not
//!   speak is not shown as about to.

use crate::protocol::error_kind::ErrorKind;
use crate::protocol::server_frame::{Frame, ServerFrame, Typer};
use crate::protocol::version::Version;
use crate::room::action::{Audience, Effect};
use crate::room::ratelimit::Bucket;
use crate::room::session::{ConnId, Session};
use crate::room::storage::Storage;
use crate::room::Room;
use std::collections::BTreeMap;

/// The room's typing state. In memory only (see the module comment).
#[derive(Debug, Default)]
pub(crate) struct Typing {
    /// Who is typing now, at most `typing_max`.
    typers: BTreeMap<ConnId, Announced>,
    /// The typing bucket of each connection that sent a typing frame; dropped when the
    /// connection goes.
    buckets: BTreeMap<ConnId, Bucket>,
}

/// One typer: when it expires, and its two frames, encoded once at its start (its
/// `typing` frame is also what a joiner gets).
#[derive(Debug)]
struct Announced {
    expires_at: u64,
    /// When its `typing` frame was last broadcast.
    announced_at: u64,
    started: Frame,
    stopped: Frame,
}

impl Typing {
    /// When the earliest typer expires; `None` when nobody types.
    pub(crate) fn next_expiry(&self) -> Option<u64> {
        // At most `typing_max` entries: a walk is fine.
        self.typers.values().map(|t| t.expires_at).min()
    }

    /// True when nobody types: a room rebuilt now would show the same.
    pub(crate) fn is_idle(&self) -> bool {
        self.typers.is_empty()
    }
}

/// A session's [`Typer`] body.
fn typer(session: &Session, ttl_ms: Option<u64>) -> Option<Typer<'_>> {
    Some(Typer {
        name: session.name.as_deref()?,
        user: session.verified.as_ref().map(|v| v.user.as_str()),
        typer: session.rank,
        ttl_ms,
    })
}

fn stopped_effect(conn: ConnId, frame: Frame) -> Effect {
    Effect::BroadcastOthers {
        frame,
        audience: Audience::V2Members,
        except: conn,
    }
}

impl<S: Storage> Room<S> {
    /// A typing frame from `conn`. `charged` says whether it already cost a frame token
    /// (it came the general way, not as a plain typing frame).
    pub(crate) fn typing(
        &mut self,
        conn: ConnId,
        on: bool,
        charged: bool,
        now_ms: u64,
        out: &mut Vec<Effect>,
    ) {
        let Some(session) = self.sessions.get(&conn) else {
            return;
        };
        if session.version != Version::V2 {
            // What a v1 session got for this frame before typing existed.
            return self.send_error(out, conn, ErrorKind::WrongShape);
        }
        let (burst, per_sec) = (self.config.typing_burst, self.config.typing_per_sec);
        let allowed = self
            .typing
            .buckets
            .entry(conn)
            .or_insert_with(|| Bucket::full(burst, now_ms))
            .try_take(burst, per_sec, now_ms);
        if !allowed {
            if charged || self.take_token(conn, now_ms, out, None) {
                self.send_error(out, conn, ErrorKind::TypingRateLimited);
            }
            return;
        }
        if !on {
            return self.typing_ended(conn, out);
        }
        let muted = session
            .verified
            .as_ref()
            .is_some_and(|v| v.muted_until > now_ms)
            || session.addr_muted_until > now_ms;
        if muted {
            return;
        }
        let expires_at = now_ms.saturating_add(self.config.typing_ttl_ms);
        let ttl = self.config.typing_ttl_ms;
        if let Some(t) = self.typing.typers.get_mut(&conn) {
            // Coalesced: the expiry moves; the frame goes again only every ttl / 2.
            t.expires_at = expires_at;
            if now_ms >= t.announced_at.saturating_add(ttl / 2) {
                t.announced_at = now_ms;
                out.push(Effect::BroadcastOthers {
                    frame: t.started.clone(),
                    audience: Audience::V2Members,
                    except: conn,
                });
            }
            return;
        }
        if self.typing.typers.len() >= self.config.typing_max {
            return;
        }
        let (Some(start), Some(stop)) = (
            typer(session, Some(self.config.typing_ttl_ms)),
            typer(session, None),
        ) else {
            return;
        };
        let started = ServerFrame::Typing { typing: start }.encode();
        let stopped = ServerFrame::TypingStopped {
            typing_stopped: stop,
        }
        .encode();
        self.typing.typers.insert(
            conn,
            Announced {
                expires_at,
                announced_at: now_ms,
                started: started.clone(),
                stopped,
            },
        );
        out.push(Effect::BroadcastOthers {
            frame: started,
            audience: Audience::V2Members,
            except: conn,
        });
    }

    /// `conn` stopped typing (it said so, sent a message or is leaving): its
    /// `typing_stopped`, if it was typing.
    pub(crate) fn typing_ended(&mut self, conn: ConnId, out: &mut Vec<Effect>) {
        if let Some(t) = self.typing.typers.remove(&conn) {
            out.push(stopped_effect(conn, t.stopped));
        }
    }

    /// `conn` left: its typing ends (before its quit) and its bucket goes.
    pub(crate) fn typing_left(&mut self, conn: ConnId, out: &mut Vec<Effect>) {
        self.typing_ended(conn, out);
        self.typing.buckets.remove(&conn);
    }

    /// The typers whose time is up by `now_ms`, stopped in connection order.
    pub(crate) fn typing_expired(&mut self, now_ms: u64, out: &mut Vec<Effect>) {
        let due: Vec<ConnId> = self
            .typing
            .typers
            .iter()
            .filter(|(_, t)| t.expires_at <= now_ms)
            .map(|(c, _)| *c)
            .collect();
        for conn in due {
            self.typing_ended(conn, out);
        }
    }

    /// Every typer stopped: the room is about to be dropped with its memory.
    pub(crate) fn typing_all_stopped(&mut self, out: &mut Vec<Effect>) {
        let typers = std::mem::take(&mut self.typing.typers);
        out.extend(
            typers
                .into_iter()
                .map(|(conn, t)| stopped_effect(conn, t.stopped)),
        );
    }

    /// The current typers' `typing` frames for a v2 joiner (at most `typing_max`).
    pub(crate) fn typing_for_joiner(&self, conn: ConnId, out: &mut Vec<Effect>) {
        out.extend(
            self.typing
                .typers
                .iter()
                .filter(|(c, _)| **c != conn)
                .map(|(_, t)| Effect::Send {
                    to: conn,
                    frame: t.started.clone(),
                }),
        );
    }
}
