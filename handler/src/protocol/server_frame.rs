//! Encoding what the server sends. Every server frame is one [`ServerFrame`] variant,
//! encoded once into a shared [`Frame`]: a broadcast hands the same bytes to every
//! recipient. The one message that is not a frame of its own, `{"batch": […]}`, wraps
//! frames already encoded here, byte for byte (`batch.rs`).

use crate::protocol::error_kind::ErrorKind;
use crate::protocol::json_text;
use crate::protocol::user::Role;
use crate::protocol::version::Version;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;

/// An encoded server frame (JSON text), shared by every recipient of a broadcast.
pub type Frame = Arc<str>;

/// A frame the server sends. Each variant serializes to exactly the JSON object
/// `docs/protocol.md` gives, keys in the documented order (clients may compare bytes).
/// Adding a frame kind means adding a variant; the compiler then points at every
/// `match` that must handle it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ServerFrame<'a> {
    /// `{"error": sentence}`; to a v2 session `{"error": sentence, "code": label}`
    /// ([`ErrorKind::label`]), which clients match on.
    Error {
        error: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<&'a str>,
    },
    /// `{"joined": name}`: a member joined (or, at join, is already there).
    Joined { joined: &'a str },
    /// `{"quit": name}`
    Quit { quit: &'a str },
    /// `{"name", "message", "timestamp", "seq"}`: a stored chat message, then `"user"`
    /// for a verified sender and `"cid"` if the sender gave one (v1 clients ignore both).
    Chat {
        name: &'a str,
        message: &'a str,
        timestamp: u64,
        seq: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cid: Option<&'a str>,
        /// `service` on a server-side publish; absent otherwise.
        #[serde(skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        /// v2 edits: when the text was last edited (the frame carries the latest text).
        #[serde(skip_serializing_if = "Option::is_none")]
        edited_at: Option<u64>,
        /// v2 reactions: the counts, `{"👍": 2}`, when it has any (stored as JSON).
        #[serde(skip_serializing_if = "Option::is_none")]
        reactions: Option<RawJson<'a>>,
    },
    /// `{"ready": true, "epoch", "seq", "recovered"}`: the join is complete. A v2
    /// session's also carries `"v": 2`; a verified session's its `"user"` and `"role"`.
    Ready {
        ready: True,
        epoch: &'a str,
        seq: u64,
        recovered: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        v: Option<u8>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
    },
    /// v2: `{"deleted": seq}`, a moderator deleted message `seq` (live, or in a resumed
    /// gap). Its text is gone from the server. With `"cid"`, to its sender only: the
    /// answer to a retried chat frame whose original was deleted (see `retry.rs`).
    Deleted {
        deleted: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        cid: Option<&'a str>,
    },
    /// v2: `{"edited": {"seq", "message", "edited_at"}}`, the author of message `seq`
    /// edited it (live, or before a resume for a message the client already has).
    Edited { edited: EditedMessage<'a> },
    /// v2: `{"reactions": {"seq", "counts"}}`, message `seq`'s reaction counts changed
    /// (live, or before a resume for a message the client already has).
    Reactions { reactions: ReactionCounts<'a> },
    /// v2: `{"roster": [{"name"}, …]}`, the members already in the room, sent once at join
    /// instead of one `joined` each. Entries are objects so that later v2 features can
    /// add fields without breaking clients.
    Roster { roster: Vec<RosterEntry<'a>> },
    /// v2: `{"roster": [...], "count", "next"}`, a joiner's roster in a room with more
    /// other members than `roster_inline_max`: the first page (the longest-present
    /// members first), how many other members there are, and the cursor of the next
    /// page (see `room/roster.rs`).
    RosterPage {
        roster: Vec<RosterEntry<'a>>,
        count: u64,
        next: String,
    },
    /// v2: `{"members": {"page": [...], "count", "next"}}`, the answer to a member page
    /// request; `next` is `null` after the last page.
    Members { members: MemberPage<'a> },
    /// v2: `{"members": {"unlisted": name}}`, right after a `quit`: that member had not
    /// been listed to this session yet, and no page will list it (see `room/roster.rs`).
    Unlisted { members: UnlistedMember<'a> },
    /// v2: `{"typing": {"name", "user"?, "typer", "ttl_ms"}}`, a member started typing
    /// (see `room/typing.rs`).
    Typing { typing: Typer<'a> },
    /// v2: `{"typing_stopped": {"name", "user"?, "typer"}}`, that member stopped typing.
    TypingStopped { typing_stopped: Typer<'a> },
    /// v2: `{"history": [<chat frames ascending>], "before", "more"}`, a page of older
    /// messages. `history` holds only [`ServerFrame::Chat`] frames; `before` is the
    /// request's bound (the newest seq + 1 when it gave none); `more` says whether older
    /// messages are retained.
    History {
        history: Vec<ServerFrame<'a>>,
        before: u64,
        more: bool,
    },
}

/// One member in a [`ServerFrame::Roster`]: its name, and for a verified session its
/// user id and role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RosterEntry<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// The body of [`ServerFrame::Typing`] and [`ServerFrame::TypingStopped`]: who types.
/// `typer` tells members with the same name apart: the member's place in the room's
/// join order, unique among the members present.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Typer<'a> {
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    pub typer: u64,
    /// How long the client may show the typer without hearing again (`typing_ttl_ms`);
    /// only in `typing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// The body of [`ServerFrame::Members`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberPage<'a> {
    pub page: Vec<RosterEntry<'a>>,
    pub count: u64,
    /// `null` after the last page.
    pub next: Option<String>,
}

/// The body of [`ServerFrame::Edited`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EditedMessage<'a> {
    pub seq: u64,
    pub message: &'a str,
    pub edited_at: u64,
}

/// The body of [`ServerFrame::Reactions`]: `counts` is `{}` when none are left.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReactionCounts<'a> {
    pub seq: u64,
    pub counts: RawJson<'a>,
}

/// The body of [`ServerFrame::Unlisted`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnlistedMember<'a> {
    pub unlisted: &'a str,
}

/// JSON text already checked (stored reaction counts), written into a frame as it is.
#[derive(Debug, Clone, Copy)]
pub struct RawJson<'a>(pub &'a RawValue);

impl PartialEq for RawJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl Serialize for RawJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Serializes as JSON `true`: the `ready` key of [`ServerFrame::Ready`] has no other value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct True;

impl Serialize for True {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(true)
    }
}

impl ServerFrame<'_> {
    /// `{"error": sentence}` for a kind of error: the v1 frame, byte for byte.
    pub fn error(kind: ErrorKind) -> ServerFrame<'static> {
        ServerFrame::Error {
            error: kind.sentence(),
            code: None,
        }
    }

    /// The error frame a session of `version` gets: with its `code` in v2.
    pub fn error_for(kind: ErrorKind, version: Version) -> ServerFrame<'static> {
        ServerFrame::Error {
            error: kind.sentence(),
            code: (version != Version::V1).then_some(kind.label()),
        }
    }

    /// Encodes the frame once, for one recipient or many.
    pub fn encode(&self) -> Frame {
        // The frames sent per message are written directly (`json_text.rs`), and their
        // text is serde_json's own.
        if let Some(text) = json_text::write_frame(self, self.size_hint()) {
            return text.into();
        }
        // Written into a buffer sized for the frame: a chat frame outgrows the 128 bytes
        // `serde_json::to_string` starts with, and growing it costs a copy.
        let mut json = Vec::with_capacity(self.size_hint());
        // Serializing strings, integers and booleans cannot fail, and serde_json writes
        // UTF-8; fall back to a fixed frame rather than panic if it somehow did not.
        let encoded = serde_json::to_writer(&mut json, self)
            .ok()
            .and_then(|()| String::from_utf8(json).ok());
        match encoded {
            Some(s) => s.into(),
            None => Arc::from(r#"{"error":"Internal error; please reconnect later."}"#),
        }
    }

    /// About the encoded length: exact enough for the frames sent per message, and
    /// 128 bytes (what the buffer grows from) for the rest.
    fn size_hint(&self) -> usize {
        // Keys, punctuation, two numbers: what a chat frame adds to its strings.
        const CHAT: usize = 96;
        match self {
            ServerFrame::Chat {
                name,
                message,
                user,
                cid,
                role,
                edited_at,
                reactions,
                ..
            } => {
                let optional = user.map_or(0, |u| u.len() + 10)
                    + cid.map_or(0, |c| c.len() + 9)
                    + role.map_or(0, |r| r.as_str().len() + 10)
                    + edited_at.map_or(0, |_| 33)
                    + reactions.map_or(0, |r| r.0.get().len() + 13);
                CHAT + name.len() + message.len() + optional
            }
            ServerFrame::History { history, .. } => {
                history.iter().map(|f| f.size_hint() + 1).sum::<usize>() + 64
            }
            _ => 128,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_exact_json() {
        let enc = |f: ServerFrame| f.encode().to_string();
        assert_eq!(
            enc(ServerFrame::Error {
                error: "a\"b",
                code: None
            }),
            r#"{"error":"a\"b"}"#
        );
        assert_eq!(
            enc(ServerFrame::error_for(ErrorKind::RateLimited, Version::V1)),
            r#"{"error":"Rate limited; slow down."}"#
        );
        assert_eq!(
            enc(ServerFrame::error_for(ErrorKind::RateLimited, Version::V2)),
            r#"{"error":"Rate limited; slow down.","code":"rate_limited"}"#
        );
        assert_eq!(
            enc(ServerFrame::error(ErrorKind::RateLimited)),
            r#"{"error":"Rate limited; slow down."}"#
        );
        assert_eq!(
            enc(ServerFrame::Joined { joined: "al" }),
            r#"{"joined":"al"}"#
        );
        assert_eq!(enc(ServerFrame::Quit { quit: "al" }), r#"{"quit":"al"}"#);
        assert_eq!(
            enc(ServerFrame::Chat {
                name: "a",
                message: "<b>",
                timestamp: 5,
                seq: 1,
                user: None,
                cid: None,
                role: None,
                edited_at: None,
                reactions: None,
            }),
            r#"{"name":"a","message":"<b>","timestamp":5,"seq":1}"#
        );
        let with_cid = ServerFrame::Chat {
            name: "a",
            message: "hi",
            timestamp: 5,
            seq: 2,
            user: Some("u1"),
            cid: Some("k-1"),
            role: None,
            edited_at: None,
            reactions: None,
        };
        assert_eq!(
            enc(with_cid.clone()),
            r#"{"name":"a","message":"hi","timestamp":5,"seq":2,"user":"u1","cid":"k-1"}"#
        );
        assert_eq!(
            enc(ServerFrame::History {
                history: vec![with_cid],
                before: 3,
                more: true
            }),
            r#"{"history":[{"name":"a","message":"hi","timestamp":5,"seq":2,"user":"u1","cid":"k-1"}],"before":3,"more":true}"#
        );
        assert_eq!(
            enc(ServerFrame::Chat {
                name: "a",
                message: "hi",
                timestamp: 5,
                seq: 2,
                user: None,
                cid: Some("k-1"),
                role: None,
                edited_at: Some(9),
                reactions: None,
            }),
            r#"{"name":"a","message":"hi","timestamp":5,"seq":2,"cid":"k-1","edited_at":9}"#
        );
        assert_eq!(
            enc(ServerFrame::Edited {
                edited: EditedMessage {
                    seq: 2,
                    message: "hi!",
                    edited_at: 9
                }
            }),
            r#"{"edited":{"seq":2,"message":"hi!","edited_at":9}}"#
        );
        assert_eq!(
            enc(ServerFrame::History {
                history: vec![],
                before: 0,
                more: false
            }),
            r#"{"history":[],"before":0,"more":false}"#
        );
        assert_eq!(
            enc(ServerFrame::Chat {
                name: "Ana",
                message: "hi",
                timestamp: 5,
                seq: 2,
                user: Some("u42"),
                cid: None,
                role: None,
                edited_at: None,
                reactions: None,
            }),
            r#"{"name":"Ana","message":"hi","timestamp":5,"seq":2,"user":"u42"}"#
        );
        assert_eq!(
            enc(ServerFrame::Deleted {
                deleted: 17,
                cid: None
            }),
            r#"{"deleted":17}"#
        );
        assert_eq!(
            enc(ServerFrame::Deleted {
                deleted: 17,
                cid: Some("c1")
            }),
            r#"{"deleted":17,"cid":"c1"}"#
        );
        assert_eq!(
            enc(ServerFrame::Ready {
                ready: True,
                epoch: "ep",
                seq: 0,
                recovered: false,
                v: None,
                user: None,
                role: None,
            }),
            r#"{"ready":true,"epoch":"ep","seq":0,"recovered":false}"#
        );
        assert_eq!(
            enc(ServerFrame::Ready {
                ready: True,
                epoch: "ep",
                seq: 3,
                recovered: true,
                v: Some(2),
                user: None,
                role: None,
            }),
            r#"{"ready":true,"epoch":"ep","seq":3,"recovered":true,"v":2}"#
        );
        assert_eq!(
            enc(ServerFrame::Ready {
                ready: True,
                epoch: "ep",
                seq: 3,
                recovered: false,
                v: None,
                user: Some("u1"),
                role: Some(Role::Moderator),
            }),
            r#"{"ready":true,"epoch":"ep","seq":3,"recovered":false,"user":"u1","role":"moderator"}"#
        );
        assert_eq!(
            enc(ServerFrame::Roster {
                roster: vec![
                    RosterEntry {
                        name: "a",
                        user: None,
                        role: None
                    },
                    RosterEntry {
                        name: "b\"",
                        user: Some("u2"),
                        role: Some(Role::Moderator)
                    }
                ]
            }),
            r#"{"roster":[{"name":"a"},{"name":"b\"","user":"u2","role":"moderator"}]}"#
        );
        assert_eq!(
            enc(ServerFrame::Roster { roster: vec![] }),
            r#"{"roster":[]}"#
        );
        let a = RosterEntry {
            name: "a",
            user: None,
            role: None,
        };
        assert_eq!(
            enc(ServerFrame::RosterPage {
                roster: vec![a.clone()],
                count: 7,
                next: "12".into()
            }),
            r#"{"roster":[{"name":"a"}],"count":7,"next":"12"}"#
        );
        assert_eq!(
            enc(ServerFrame::Members {
                members: MemberPage {
                    page: vec![a.clone()],
                    count: 7,
                    next: Some("13".into())
                }
            }),
            r#"{"members":{"page":[{"name":"a"}],"count":7,"next":"13"}}"#
        );
        assert_eq!(
            enc(ServerFrame::Members {
                members: MemberPage {
                    page: vec![],
                    count: 0,
                    next: None
                }
            }),
            r#"{"members":{"page":[],"count":0,"next":null}}"#
        );
        assert_eq!(
            enc(ServerFrame::Unlisted {
                members: UnlistedMember { unlisted: "a" }
            }),
            r#"{"members":{"unlisted":"a"}}"#
        );
    }

    #[test]
    fn the_internal_fallback_is_the_internal_error_sentence() {
        let fallback: serde_json::Value =
            serde_json::from_str(r#"{"error":"Internal error; please reconnect later."}"#).unwrap();
        assert_eq!(fallback["error"], ErrorKind::Internal.sentence());
    }
}
